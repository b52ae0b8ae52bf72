"""The only module that writes files: run directories, atomic JSON and JSON lines, versions."""

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """Dataclasses, numpy and JAX arrays and scalars, tuples and paths as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, str | bytes):
        return jsonable(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def current_umask() -> int:
    """The process's umask: read from ``/proc/self/status`` where Linux gives it (nothing is
    changed, so threads writing files meanwhile, e.g. Orbax's, are unaffected), else by setting
    it and putting it back."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str):
    """A file handle on a temporary file in the same folder; fsync and rename on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 → what open() would give
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a file atomically: a temporary file in the same folder, fsync, then a rename."""
    with atomic_file(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically (checkpoints, cached downloads)."""
    with atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON, atomically."""
    return write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Per-step metrics as JSON lines, atomically."""
    return write_text(path, "".join(json.dumps(jsonable(r)) + "\n" for r in rows))


def write_results(out: str | os.PathLike, kind: str, body: dict) -> Path:
    """``out/results.json``, atomically: the run's results with their ``kind`` first (the
    experiment that wrote them; ``sublim-jax plot`` dispatches on it). Every experiment writes
    its results through this function."""
    return write_json(Path(out) / "results.json", {"kind": kind, **body})


class ResumeError(ValueError):
    """``--out`` holds a run of a different config, or another run and neither ``--resume`` nor
    ``--force`` was given: reported on one line, nothing written."""


def claim_out(out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> Path:
    """The run folder ``out``, checked before anything is written: a finished or partial run in
    it is never replaced silently. A non-empty folder needs ``resume`` (continue the run there;
    `check_resume` then compares configs) or ``force`` (empty it first); a file is refused."""
    out = Path(out)
    if resume and force:
        raise ResumeError("--resume continues the run in --out and --force deletes it: pass one")
    if out.exists() and not out.is_dir():
        raise ResumeError(f"--out {out} is a file, not a folder")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and force:
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    elif held and not resume:
        what = "a run (config.json)" if "config.json" in held else f"{len(held)} files"
        raise ResumeError(
            f"--out {out} already holds {what}: pass --resume to continue it, --force to "
            "delete it and start again, or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_resume(out: str | os.PathLike, config: Any, resume: bool = True) -> None:
    """Refuse to resume into ``out`` when its ``config.json`` holds another config than
    ``config`` (a dataclass or its JSON form); names the fields that differ. A field of the
    dataclass that the saved config lacks (added since it was written) matches at its class
    default. Nothing is checked when ``resume`` is off or ``out`` holds no config yet."""
    path = Path(out) / "config.json"
    if not resume or not path.is_file():
        return
    saved, ours = read_json(path).get("config", {}), jsonable(config)
    if dataclasses.is_dataclass(config) and _all_defaulted(type(config)):
        defaults = jsonable(type(config)())
        saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    if saved != ours:
        diff = sorted(k for k, v in ours.items() if saved.get(k) != v)
        raise ResumeError(
            f"{path} holds a different config (fields {', '.join(diff)}); "
            "use the same flags to resume, or another --out"
        )


def _all_defaulted(cls: type) -> bool:
    missing = (dataclasses.MISSING,)
    return all(
        f.default not in missing or f.default_factory not in missing
        for f in dataclasses.fields(cls)
    )


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def cpu_model() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``; elsewhere what ``platform`` knows): speed
    ratios and XLA:CPU's bits depend on it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    """Software and hardware the numbers came from."""
    import jax

    import sublim_jax

    packages = ("jax", "jaxlib", "flax", "optax", "numpy")
    found = {"sublim-jax": sublim_jax.__version__}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        **found,
    }


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Arrays as an uncompressed ``.npz``, atomically."""
    with atomic_file(path, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def fingerprint(obj: Any) -> str:
    """sha256 of an object's JSON form: ties cached chunks to the config that made them."""
    return hashlib.sha256(json.dumps(jsonable(obj), sort_keys=True).encode()).hexdigest()


class ChunkStore:
    """Finished chunks of a run as ``DIR/name.npz``, each stamped with the run's fingerprint.

    ``load`` returns a chunk only when reading is on (``--resume``) and the stamp matches, so a
    chunk from another config is never reused.
    """

    def __init__(self, folder: str | os.PathLike, stamp: str, read: bool):
        self.folder, self.stamp, self.read = Path(folder), stamp, read

    def load(self, name: str) -> dict[str, np.ndarray] | None:
        path = self.folder / f"{name}.npz"
        if not (self.read and path.is_file()):
            return None
        with np.load(path) as z:
            if str(z["_fingerprint"]) != self.stamp:
                return None
            return {k: z[k] for k in z.files if k != "_fingerprint"}

    def save(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        write_npz(self.folder / f"{name}.npz", {**arrays, "_fingerprint": np.asarray(self.stamp)})


def drop_partial_line(path: str | os.PathLike) -> int:
    """Cut a JSON-lines file back to its last complete line (a crash can leave half a line);
    returns the number of bytes dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    return len(data) - keep


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Append whole JSON lines in one write, then flush and fsync (streamed, resumable output)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(jsonable(r)) + "\n" for r in rows)
    with open(path, "a") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The complete lines of a JSON-lines file (a trailing partial line is ignored)."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.endswith("\n") and line.strip()]
