from importlib import metadata as _metadata
from pathlib import Path as _Path


def _source_version() -> str:
    """The version in the checkout's ``pyproject.toml``, for a run from source (``PYTHONPATH=.``)
    where the package is not installed and has no metadata."""
    import tomllib

    pyproject = _Path(__file__).resolve().parent.parent / "pyproject.toml"
    return tomllib.loads(pyproject.read_text())["project"]["version"]


try:
    __version__ = _metadata.version("sublim-jax")
except _metadata.PackageNotFoundError:
    __version__ = _source_version()
