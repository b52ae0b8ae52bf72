"""MNIST and other 28×28 10-class IDX datasets: find, download, verify, parse (numpy only).

Dimensions: N examples, H = W = 28 pixels.

Folder: the ``data_dir`` argument, else ``$SUBLIM_DATA``, else the user cache
(``$XDG_CACHE_HOME/sublim_jax/mnist`` or ``~/.cache/sublim_jax/mnist``); see `resolve_data_dir`.
Each of the four files may be gzipped (``.gz``) or plain; the plain one wins when both exist.

Checksums: the sha256 of every file's *uncompressed* bytes is compared with canonical MNIST's.
All four match → ``Dataset.name == "mnist"``. Otherwise the files are loaded as another 28×28
10-class IDX dataset (``name == "idx"``, e.g. Fashion-MNIST) after structural checks, unless
verification is on, in which case a mismatch raises `ChecksumError`. Verification is on for
``verify=True`` and, by default (``verify=None``), for the cache folder and whenever the call
downloads: MNIST that came from the internet is always checked.

Downloads fill only missing files, by default only in the cache folder (``download=True`` allows
any folder, ``download=False`` never). Each mirror in `MIRRORS` is tried in turn; a file is written
to a temporary name and renamed into place only after its checksum matches.
"""

import dataclasses
import gzip
import hashlib
import http.client
import math
import os
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_SHA256 = {  # sha256 of the uncompressed files (shared/data/README.md)
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
ENV_VAR = "SUBLIM_DATA"
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
HW = 28
NUM_CLASSES = 10
TIMEOUT_S = 60.0
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)  # BadGzipFile is an OSError: catch first
_NET_ERRORS = (OSError, http.client.HTTPException, ValueError, EOFError, zlib.error)
_FIX = "delete it and re-download it (or replace it with a good copy)"

Progress = Callable[[str], None]


class DataError(Exception):
    """A data file is missing, unreadable or malformed; the message names it and says what to do."""


class ChecksumError(DataError):
    """A file's uncompressed sha256 differs from canonical MNIST's."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images ``x_NxHxW`` (uint8, 0..255) and labels ``y_N`` (int32, 0..9) of both splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str  # "mnist" if all four checksums match canonical MNIST, else "idx"
    source: str  # the folder the files were read from
    sha256: Mapping[str, str]  # file name (without .gz) -> sha256 of its uncompressed bytes


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sublim_jax/mnist``, or ``~/.cache/sublim_jax/mnist``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return (root / "sublim_jax" / "mnist").resolve()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder to read: ``data_dir`` if given, else ``$SUBLIM_DATA``, else the cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve()
    env = os.environ.get(ENV_VAR, "")
    return Path(env).expanduser().resolve() if env else default_cache_dir()


def normalize(x_uint8: np.ndarray) -> np.ndarray:
    """Pixels 0..255 → float32 in [-1, 1] as ``x / 255 · 2 − 1`` (the paper's MNIST scaling)."""
    if x_uint8.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {x_uint8.dtype}")
    return x_uint8.astype(np.float32) / np.float32(255) * np.float32(2) - np.float32(1)


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool | None = None,
    verify: bool | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Load the four IDX files from `resolve_data_dir` (see the module docstring for the rules).

    ``download``: None downloads missing files only into the cache folder; True into any folder;
    False never. ``verify``: True requires canonical MNIST checksums; False never checks them
    against MNIST (the name still reports a match); None verifies for the cache folder and
    after a download. ``progress`` receives one-line status messages.
    """
    folder = resolve_data_dir(data_dir)
    in_cache = folder == default_cache_dir()
    missing = [stem for stem in FILES if _find(folder, stem) is None]
    fetch = in_cache if download is None else download
    if missing and not fetch:
        raise DataError(_missing_message(folder, missing, download is False))
    for stem in missing:
        _download(stem, folder, progress)
    check = (in_cache or bool(missing)) if verify is None else verify
    return _load_folder(folder, check)


def _find(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _missing_message(folder: Path, missing: list[str], download_off: bool) -> str:
    looked = "; ".join(f"{folder / stem} or {folder / stem}.gz" for stem in missing)
    why = " (downloading is off)" if download_off else ""
    return (
        f"MNIST files not found{why}: looked for {looked}. Point --data-dir or ${ENV_VAR} at a "
        "folder holding the four IDX files (gzipped or not), or leave both unset to download "
        f"MNIST (when online) into the cache folder {default_cache_dir()}."
    )


def _load_folder(folder: Path, verify: bool) -> Dataset:
    paths = {stem: _find(folder, stem) or folder / stem for stem in FILES}
    arrays, digests = {}, {}
    for stem, path in paths.items():
        raw = _read(path)
        arrays[stem] = _parse_idx(raw, path, labels="labels" in stem)
        digests[stem] = hashlib.sha256(raw).hexdigest()
        if verify and digests[stem] != MNIST_SHA256[stem]:
            raise ChecksumError(_checksum_message(path, MNIST_SHA256[stem], digests[stem]))
    x_train, y_train, x_test, y_test = (arrays[stem] for stem in FILES)
    _check_counts(x_train, y_train, *(paths[stem] for stem in FILES[:2]))
    _check_counts(x_test, y_test, *(paths[stem] for stem in FILES[2:]))
    name = "mnist" if digests == MNIST_SHA256 else "idx"
    return Dataset(x_train, y_train, x_test, y_test, name, str(folder), digests)


def _checksum_message(path: Path, expected: str, actual: str) -> str:
    return (
        f"{path}: sha256 of the uncompressed bytes is {actual}, expected {expected} (canonical "
        f"MNIST). If this should be MNIST, {_FIX}; to load another 28x28 10-class IDX dataset "
        "from a folder of your own, pass --data-dir without verification (verify=False)."
    )


def _read(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except _GZIP_ERRORS as err:
        raise DataError(f"{path}: truncated or corrupt gzip ({err}); {_FIX}.") from err
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err}); check its permissions.") from err


def _parse_idx(raw: bytes, path: Path, *, labels: bool) -> np.ndarray:
    """Checks an IDX file's header against its payload; uint8 images or int32 labels."""
    magic, ndim, kind = (LABEL_MAGIC, 1, "labels") if labels else (IMAGE_MAGIC, 3, "images")
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes, shorter than the IDX header; {_FIX}.")
    got, *dims = np.frombuffer(raw, ">u4", count=1 + ndim).tolist()
    if got != magic:
        raise DataError(f"{path}: magic number {got}, expected {magic} (IDX {kind}); {_FIX}.")
    if dims[1:] != [HW, HW][: ndim - 1]:
        shape = "x".join(map(str, dims[1:]))
        raise DataError(f"{path}: images are {shape}, expected {HW}x{HW}; use a 28x28 dataset.")
    expected = header + math.prod(dims)
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{path}: {state}: {len(raw)} bytes, header says {expected}; {_FIX}.")
    arr = np.frombuffer(raw, np.uint8, offset=header).reshape(dims)
    return _check_labels(arr, path) if labels else arr.copy()


def _check_labels(y_N: np.ndarray, path: Path) -> np.ndarray:
    bad = np.flatnonzero(y_N >= NUM_CLASSES)
    if bad.size:
        raise DataError(
            f"{path}: label {y_N[bad[0]]} at index {bad[0]} is out of range 0..{NUM_CLASSES - 1} "
            f"({bad.size} such labels); use a 10-class dataset or {_FIX}."
        )
    return y_N.astype(np.int32)


def _check_counts(x_NxHxW: np.ndarray, y_N: np.ndarray, x_path: Path, y_path: Path) -> None:
    if len(x_NxHxW) != len(y_N):
        raise DataError(
            f"{x_path} has {len(x_NxHxW)} images but {y_path} has {len(y_N)} labels (count "
            f"mismatch): the two files come from different datasets; {_FIX}."
        )


def _open_url(url: str) -> BinaryIO:
    """Open ``url`` for reading (the one network call; tests replace it)."""
    return urllib.request.urlopen(url, timeout=TIMEOUT_S)


def _download(stem: str, folder: Path, progress: Progress | None) -> None:
    """Fetch ``stem.gz`` into ``folder`` from the first mirror that serves verified bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in MIRRORS:
        url = f"{mirror}{stem}.gz"
        _say(progress, f"downloading {url}")
        try:
            _fetch_verified(url, folder / f"{stem}.gz", MNIST_SHA256[stem])
        except (*_NET_ERRORS, DataError) as err:
            failures.append(f"{url}: {err}")
            _say(progress, f"failed: {err}")
            continue
        _say(progress, f"saved {folder / stem}.gz")
        return
    raise DataError(
        f"could not download {stem}.gz into {folder}: " + "; ".join(failures) + ". If offline, "
        f"copy the four MNIST files there or point --data-dir or ${ENV_VAR} at them."
    )


def _fetch_verified(url: str, dest: Path, sha256: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _open_url(url) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        with gzip.open(tmp, "rb") as unzipped:
            actual = hashlib.file_digest(unzipped, "sha256").hexdigest()
        if actual != sha256:
            raise ChecksumError(f"served bytes with sha256 {actual}, expected {sha256}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
