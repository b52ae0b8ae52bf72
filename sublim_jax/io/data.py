"""MNIST, Fashion-MNIST and other 28×28 10-class IDX datasets: find, download, verify, parse.

Dimensions: N examples, H = W = 28 pixels.

Dataset identity is explicit: ``load(name, data_dir)`` with ``name`` in `DATASETS`.
- Known datasets (``"mnist"``, ``"fashion-mnist"``; `KNOWN`) are verified, always, by the sha256
  of each file's *uncompressed* bytes, wherever the files come from (argument, ``$SUBLIM_DATA``,
  cache, download). A mismatch raises `ChecksumError` naming the file, both digests and the fix.
- ``"idx"`` is any 28×28 10-class IDX set, checked for structure only (magic, shape, counts,
  label range); it is read from ``data_dir`` or ``$SUBLIM_DATA`` and never downloaded.

Folder: ``data_dir``, else ``$SUBLIM_DATA``, else the user cache
(``$XDG_CACHE_HOME/sublim_jax/NAME`` or ``~/.cache/sublim_jax/NAME``); a folder without the
files but with a subfolder named after the dataset (e.g. ``data/fashion-mnist``) is read from that
subfolder. Each file may be gzipped (``.gz``) or plain; the plain one wins when both exist.

Downloads fill only missing files of a known dataset, by default only in the cache folder
(``download=True`` allows any folder, ``download=False`` never). Each mirror is tried in turn;
a file is written to a temporary name and renamed into place only after its checksum matches.
"""

import dataclasses
import gzip
import hashlib
import http.client
import math
import os
import sys
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sublim_jax.io import results

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclasses.dataclass(frozen=True)
class Known:
    """A dataset whose four files are pinned by the sha256 of their uncompressed bytes."""

    title: str
    sha256: Mapping[str, str]
    mirrors: tuple[str, ...]


KNOWN = {
    "mnist": Known(
        "MNIST",
        {
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
    "fashion-mnist": Known(
        "Fashion-MNIST",
        {
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
        (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
    ),
}
DATASETS = (*KNOWN, "idx")
MNIST_SHA256 = KNOWN["mnist"].sha256
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
    """A file's uncompressed sha256 differs from the one pinned for its dataset."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Images ``x_NxHxW`` (uint8, 0..255) and labels ``y_N`` (int32, 0..9) of both splits.

    ``name`` and ``sha256`` identify the data in results; ``folder`` is only for messages (a
    machine path, never written into results).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str  # one of DATASETS
    sha256: Mapping[str, str]  # file name (without .gz) -> sha256 of its uncompressed bytes
    folder: Path

    def identity(self) -> dict:
        """What results record about the data: its name and the four digests, never a path."""
        return {"name": self.name, "sha256": dict(self.sha256)}


def default_cache_dir(name: str = "mnist") -> Path:
    """``$XDG_CACHE_HOME/sublim_jax/NAME``, or ``~/.cache/sublim_jax/NAME``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return (root / "sublim_jax" / name).resolve()


def resolve_data_dir(data_dir: str | os.PathLike | None = None, name: str = "mnist") -> Path:
    """The folder to read: ``data_dir`` if given, else ``$SUBLIM_DATA``, else NAME's cache."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser().resolve()
    elif os.environ.get(ENV_VAR, ""):
        folder = Path(os.environ[ENV_VAR]).expanduser().resolve()
    else:
        return default_cache_dir(name)
    sub = folder / name
    if _find(folder, FILES[0]) is None and sub.is_dir():
        return sub
    return folder


def normalize(x_uint8: np.ndarray) -> np.ndarray:
    """Pixels 0..255 → float32 in [-1, 1] as ``x / 255 · 2 − 1`` (the paper's MNIST scaling)."""
    if x_uint8.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {x_uint8.dtype}")
    return x_uint8.astype(np.float32) / np.float32(255) * np.float32(2) - np.float32(1)


def load(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool | None = None,
    progress: Progress | None = None,
) -> Dataset:
    """Load dataset ``name`` (see the module docstring for folders, checks and downloads).

    ``download``: None downloads missing files of a known dataset only into its cache folder;
    True into any folder; False never. ``progress`` receives one-line status messages.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "idx" and data_dir is None and not os.environ.get(ENV_VAR):
        raise DataError(
            f"--dataset idx reads a folder of your own: pass --data-dir DIR (or set ${ENV_VAR})"
        )
    folder = resolve_data_dir(data_dir, name)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder} is a file: the data folder holds the four IDX files")
    missing = [stem for stem in FILES if _find(folder, stem) is None]
    fetch = name in KNOWN and (folder == default_cache_dir(name) if download is None else download)
    if missing and not fetch:
        raise DataError(_missing_message(name, folder, missing, download is False))
    for stem in missing:
        _download(name, stem, folder, progress)
    return _load_folder(name, folder)


def load_flat(
    name: str, data_dir: str | os.PathLike | None
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Dataset ``name`` (verified when known; progress on stderr) and its training and test
    images as float32 in [−1, 1], flattened to 784 pixels."""
    ds = load(name, data_dir, progress=lambda m: print(m, file=sys.stderr))
    flat = lambda x: normalize(x).reshape(x.shape[0], -1)  # noqa: E731
    return ds, flat(ds.x_train), flat(ds.x_test)


def load_mnist(data_dir: str | os.PathLike | None = None, **kwargs) -> Dataset:
    """``load("mnist", data_dir, ...)``: canonical MNIST, verified."""
    return load("mnist", data_dir, **kwargs)


def _find(folder: Path, stem: str) -> Path | None:
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def _missing_message(name: str, folder: Path, missing: list[str], download_off: bool) -> str:
    looked = "; ".join(f"{folder / stem} or {folder / stem}.gz" for stem in missing)
    why = " (downloading is off)" if download_off else ""
    fix = f"Point --data-dir or ${ENV_VAR} at a folder holding the four IDX files (gzipped or not)"
    if name in KNOWN:
        fix += (
            f", or leave both unset to download {KNOWN[name].title} (when online) into the "
            f"cache folder {default_cache_dir(name)}"
        )
    return f"{name} files not found{why}: looked for {looked}. {fix}."


def _load_folder(name: str, folder: Path) -> Dataset:
    paths = {stem: _find(folder, stem) or folder / stem for stem in FILES}
    arrays, digests = {}, {}
    for stem, path in paths.items():
        raw = _read(path)
        digests[stem] = hashlib.sha256(raw).hexdigest()
        if name in KNOWN and digests[stem] != KNOWN[name].sha256[stem]:
            raise ChecksumError(_checksum_message(name, path, digests[stem]))
        arrays[stem] = _parse_idx(raw, path, labels="labels" in stem)
    x_train, y_train, x_test, y_test = (arrays[stem] for stem in FILES)
    _check_counts(x_train, y_train, *(paths[stem] for stem in FILES[:2]))
    _check_counts(x_test, y_test, *(paths[stem] for stem in FILES[2:]))
    return Dataset(x_train, y_train, x_test, y_test, name, digests, folder)


def _checksum_message(name: str, path: Path, actual: str) -> str:
    known = KNOWN[name]
    stem = path.name.removesuffix(".gz")
    expected = known.sha256[stem]
    other = next((n for n, k in KNOWN.items() if n != name and k.sha256.get(stem) == actual), None)
    if other is not None:  # the right file of another known dataset
        return (
            f"{path}: these are the {KNOWN[other].title} files (sha256 {actual}), not "
            f"{known.title}: pass --dataset {other}, or point --data-dir at {known.title}."
        )
    return (
        f"{path}: sha256 of the uncompressed bytes is {actual}, expected {expected} "
        f"({known.title}). The file is damaged or is not {known.title}: {_FIX}; to run on "
        "another 28x28 10-class IDX dataset, pass --dataset idx."
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


def _download(name: str, stem: str, folder: Path, progress: Progress | None) -> None:
    """Fetch ``stem.gz`` into ``folder`` from the first mirror that serves verified bytes."""
    failures = []
    for mirror in KNOWN[name].mirrors:
        url = f"{mirror}{stem}.gz"
        _say(progress, f"downloading {url}")
        try:
            _fetch_verified(url, folder / f"{stem}.gz", KNOWN[name].sha256[stem])
        except (*_NET_ERRORS, DataError) as err:
            failures.append(f"{url}: {err}")
            _say(progress, f"failed: {err}")
            continue
        _say(progress, f"saved {folder / stem}.gz")
        return
    raise DataError(
        f"could not download {stem}.gz into {folder}: " + "; ".join(failures) + ". If offline, "
        f"copy the four {KNOWN[name].title} files there or point --data-dir or ${ENV_VAR} at them."
    )


def _fetch_verified(url: str, dest: Path, sha256: str) -> None:
    """Download into a temporary file beside ``dest``; renamed into place only if verified."""
    with results.atomic_file(dest, "w+b") as out, _open_url(url) as response:
        digest, unzip = hashlib.sha256(), zlib.decompressobj(wbits=31)
        while chunk := response.read(1 << 20):
            out.write(chunk)
            digest.update(unzip.decompress(chunk))
        if not unzip.eof:
            raise DataError("truncated gzip")
        actual = digest.hexdigest()
        if actual != sha256:
            raise ChecksumError(f"served bytes with sha256 {actual}, expected {sha256}")


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
