"""Tests for sublim_jax.data: real MNIST and Fashion-MNIST, synthetic IDX sets, every error,
downloads, folders.

Nothing here touches the network or /work/shared: an autouse fixture makes any URL open fail,
points the cache at tmp_path and clears $SUBLIM_DATA; downloads are served by a fake opener.
"""

import dataclasses
import gzip
import hashlib
import io
import os
import re
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from sublim_jax.io import data

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
N_TRAIN, N_TEST = 12, 5  # synthetic dataset sizes
MIRROR_A, MIRROR_B = "https://a.example/mnist/", "https://b.example/mnist/"
MIRRORS = (MIRROR_A, MIRROR_B)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    def no_network(url):
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(data, "_open_url", no_network)
    for name, known in data.KNOWN.items():
        monkeypatch.setitem(data.KNOWN, name, dataclasses.replace(known, mirrors=MIRRORS))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return data.load_mnist(mnist_dir)


def _idx(magic: int, arr: np.ndarray) -> bytes:
    header = np.array([magic, *arr.shape], dtype=">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def _synthetic(seed: int = 0) -> dict[str, bytes]:
    """Uncompressed IDX bytes of a tiny 28x28 10-class dataset (Fashion-MNIST-like)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        out[f"{split}-images-idx3-ubyte"] = _idx(2051, x)
        out[f"{split}-labels-idx1-ubyte"] = _idx(2049, y)
    return out


def _write(folder: Path, files: dict[str, bytes], *, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, raw in files.items():
        path = folder / (f"{stem}.gz" if gz else stem)
        path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return folder


def _parse(raw: bytes, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(shape)


# --- real MNIST --------------------------------------------------------------------------------


def test_real_mnist_shapes_dtypes_and_label_counts(mnist, mnist_dir):
    assert mnist.name == "mnist" and mnist.folder == Path(mnist_dir)
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.x_test.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.int32
    assert np.bincount(mnist.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == TEST_COUNTS
    assert (mnist.x_train.min(), mnist.x_train.max()) == (0, 255)
    assert dict(mnist.sha256) == data.MNIST_SHA256


def test_plain_copies_load_identically(mnist, mnist_dir, tmp_path):
    for stem in data.FILES:
        with gzip.open(Path(mnist_dir) / f"{stem}.gz") as src:
            (tmp_path / stem).write_bytes(src.read())
    plain = data.load_mnist(tmp_path)
    assert plain.name == "mnist" and plain.folder == tmp_path
    np.testing.assert_array_equal(plain.x_train, mnist.x_train)
    np.testing.assert_array_equal(plain.y_test, mnist.y_test)


def test_normalize_maps_pixels_to_minus_one_one():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    out = data.normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[-1.0, -0.6, 1.0]], dtype=np.float32))
    with pytest.raises(TypeError, match="uint8"):
        data.normalize(out)


# --- other IDX datasets and verification ---------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_idx_loads_as_other_dataset(tmp_path, gz):
    files = _synthetic()
    ds = data.load("idx", _write(tmp_path / "fashion", files, gz=gz))
    assert ds.name == "idx" and ds.x_train.shape == (N_TRAIN, 28, 28)
    assert ds.y_test.shape == (N_TEST,) and ds.y_test.dtype == np.int32
    np.testing.assert_array_equal(
        ds.x_test, _parse(files["t10k-images-idx3-ubyte"], 16, (5, 28, 28))
    )
    np.testing.assert_array_equal(ds.y_train, _parse(files["train-labels-idx1-ubyte"], 8, (12,)))
    assert ds.sha256["t10k-labels-idx1-ubyte"] == hashlib.sha256(files[data.FILES[3]]).hexdigest()


def test_plain_file_preferred_over_gz(tmp_path):
    folder = _write(tmp_path, _synthetic(), gz=False)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"garbage, never read")
    assert data.load("idx", folder).x_train.shape == (N_TRAIN, 28, 28)


def test_known_dataset_from_any_folder_names_file_and_both_checksums(tmp_path):
    files = _synthetic()
    folder = _write(tmp_path, files)
    with pytest.raises(data.ChecksumError) as err:
        data.load_mnist(folder)
    stem = "train-images-idx3-ubyte"
    actual = hashlib.sha256(files[stem]).hexdigest()
    msg = str(err.value)
    for part in (str(folder / f"{stem}.gz"), data.MNIST_SHA256[stem], actual, "re-download"):
        assert part in msg
    assert "--dataset idx" in msg and "\n" not in msg


def test_one_changed_label_is_a_checksum_error(mnist_dir, tmp_path):
    for stem in data.FILES:
        shutil.copy(Path(mnist_dir) / f"{stem}.gz", tmp_path)
    raw = bytearray(gzip.decompress((tmp_path / f"{data.FILES[1]}.gz").read_bytes()))
    raw[8 + 1234] = (raw[8 + 1234] + 1) % 10
    (tmp_path / f"{data.FILES[1]}.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.ChecksumError, match=re.escape(f"{data.FILES[1]}.gz: sha256")):
        data.load_mnist(tmp_path)
    ds = data.load("idx", tmp_path)  # the same folder as an unverified IDX set
    assert ds.name == "idx" and ds.sha256[data.FILES[1]] == hashlib.sha256(raw).hexdigest()


def test_fashion_mnist_is_verified_and_not_mnist(fashion_dir, mnist_dir):
    ds = data.load("fashion-mnist", fashion_dir)
    assert ds.name == "fashion-mnist" and dict(ds.sha256) == data.KNOWN["fashion-mnist"].sha256
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    # the files of the other known dataset are recognised by their digests
    with pytest.raises(
        data.ChecksumError, match=r"MNIST files .* not Fashion-MNIST: pass --dataset mnist"
    ):
        data.load("fashion-mnist", mnist_dir)
    with pytest.raises(
        data.ChecksumError, match=r"Fashion-MNIST files .* pass --dataset fashion-mnist"
    ):
        data.load("mnist", fashion_dir)


def test_parent_folder_resolves_to_the_dataset_subfolder(fashion_dir):
    parent = Path(fashion_dir).parent
    assert data.resolve_data_dir(parent, "fashion-mnist") == Path(fashion_dir)
    assert data.resolve_data_dir(parent / "fashion-mnist", "mnist") == Path(fashion_dir)


def test_cache_folder_always_verifies(tmp_path):
    _write(tmp_path / "xdg" / "sublim_jax" / "mnist", _synthetic())
    with pytest.raises(data.ChecksumError, match="train-images-idx3-ubyte"):
        data.load_mnist()
    with pytest.raises(data.DataError, match="--dataset idx reads a folder of your own"):
        data.load("idx")
    with pytest.raises(data.DataError, match="unknown dataset 'cifar'"):
        data.load("cifar", tmp_path)


def test_missing_file_lists_where_it_looked(tmp_path):
    folder = _write(tmp_path, _synthetic())
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError) as err:
        data.load_mnist(folder)
    msg = str(err.value)
    assert str(folder / "t10k-labels-idx1-ubyte.gz") in msg and "train-images" not in msg
    assert "--data-dir" in msg and "SUBLIM_DATA" in msg and "download" in msg


# --- malformed files ----------------------------------------------------------------------------


def _cut_gzip(files):
    return {"train-labels-idx1-ubyte.gz": gzip.compress(files["train-labels-idx1-ubyte"])[:-9]}


def _flip_gzip(files):
    raw = bytearray(gzip.compress(files["t10k-images-idx3-ubyte"]))
    raw[len(raw) // 2] ^= 0xFF
    return {"t10k-images-idx3-ubyte.gz": bytes(raw)}


def _header(stem, magic, shape, payload):
    return {stem: _idx(magic, np.zeros(shape, np.uint8))[: 4 + 4 * len(shape)] + payload}


CORRUPTIONS = {
    "truncated gzip": (_cut_gzip, "gzip"),
    "corrupt gzip": (_flip_gzip, "gzip"),
    "not gzip": (lambda f: {"t10k-labels-idx1-ubyte.gz": b"plain text"}, "gzip"),
    "wrong magic": (lambda f: {"train-labels-idx1-ubyte": _idx(2051, np.zeros(12))}, "2049"),
    "wrong dims": (
        lambda f: {"t10k-images-idx3-ubyte": _idx(2051, np.zeros((5, 28, 27)))},
        "28x27",
    ),
    "count mismatch": (lambda f: {"t10k-labels-idx1-ubyte": _idx(2049, np.zeros(4))}, "4 labels"),
    "label range": (lambda f: {"train-labels-idx1-ubyte": _idx(2049, np.arange(12))}, "label 10"),
    "truncated payload": (
        lambda f: _header("train-labels-idx1-ubyte", 2049, (12,), b"\0" * 11),
        "truncated",
    ),
    "trailing bytes": (
        lambda f: {"t10k-labels-idx1-ubyte": f["t10k-labels-idx1-ubyte"] + b"\0"},
        "trailing",
    ),
    "short header": (lambda f: {"t10k-images-idx3-ubyte": b"\0\0\x08\x03"}, "header"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_malformed_file_raises_naming_it(tmp_path, case):
    files = _synthetic()
    corrupt, phrase = CORRUPTIONS[case]
    replacement = corrupt(files)
    (name,) = replacement
    stem = name.removesuffix(".gz")
    folder = _write(tmp_path, {k: v for k, v in files.items() if k != stem}, gz=False)
    (folder / name).write_bytes(replacement[name])
    with pytest.raises(data.DataError) as err:
        data.load("idx", folder)
    assert str(folder / name) in str(err.value) and phrase in str(err.value)


# --- downloads (fake opener) -------------------------------------------------------------------


class FakeWeb:
    """Serves gz bytes per mirror; a mirror mapped to an exception raises it on every open."""

    def __init__(self, mirrors: dict[str, dict[str, bytes] | Exception]):
        self.mirrors, self.opened = mirrors, []

    def __call__(self, url: str) -> io.BytesIO:
        self.opened.append(url)
        mirror, name = url.rsplit("/", 1)
        served = self.mirrors[mirror + "/"]
        if isinstance(served, Exception):
            raise served
        return io.BytesIO(served[name])


@pytest.fixture
def web(monkeypatch):
    """Synthetic files posing as MNIST (their checksums patched in) and a way to serve them."""
    files = _synthetic()
    sums = {stem: hashlib.sha256(raw).hexdigest() for stem, raw in files.items()}
    known = dataclasses.replace(data.KNOWN["mnist"], sha256=sums)
    monkeypatch.setitem(data.KNOWN, "mnist", known)
    good = {f"{stem}.gz": gzip.compress(raw) for stem, raw in files.items()}

    def install(a, b):
        fake = FakeWeb({MIRROR_A: a, MIRROR_B: b})
        monkeypatch.setattr(data, "_open_url", fake)
        return fake

    return good, install


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "xdg" / "sublim_jax" / "mnist"


def test_download_real_mnist_bytes_into_cache(mnist_dir, tmp_path, monkeypatch):
    served = {f"{s}.gz": (Path(mnist_dir) / f"{s}.gz").read_bytes() for s in data.FILES}
    fake = FakeWeb({MIRROR_A: served, MIRROR_B: urllib.error.URLError("unused")})
    monkeypatch.setattr(data, "_open_url", fake)
    messages = []
    ds = data.load_mnist(progress=messages.append)
    assert ds.name == "mnist" and ds.folder == _cache(tmp_path)
    assert np.bincount(ds.y_test).tolist() == TEST_COUNTS
    assert fake.opened == [f"{MIRROR_A}{s}.gz" for s in data.FILES]
    assert sorted(os.listdir(_cache(tmp_path))) == sorted(f"{s}.gz" for s in data.FILES)
    assert len(messages) == 8 and messages[0] == f"downloading {MIRROR_A}{data.FILES[0]}.gz"


def test_download_falls_through_failing_mirror(web, tmp_path):
    good, install = web
    fake = install(urllib.error.URLError("no route to host"), good)
    assert data.load_mnist().name == "mnist"
    assert len(fake.opened) == 8 and fake.opened[:2] == [
        f"{MIRROR_A}{data.FILES[0]}.gz",
        f"{MIRROR_B}{data.FILES[0]}.gz",
    ]
    assert sorted(os.listdir(_cache(tmp_path))) == sorted(good)


def test_download_skips_corrupt_mirror_and_fills_only_missing(web, tmp_path):
    good, install = web
    cache = _cache(tmp_path)
    cache.mkdir(parents=True)
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(good["t10k-labels-idx1-ubyte.gz"])
    corrupt = {name: gz[: len(gz) // 2] for name, gz in good.items()}  # truncated gzip
    fake = install(corrupt, good)
    assert data.load_mnist().name == "mnist"
    assert len(fake.opened) == 6 and all("t10k-labels" not in url for url in fake.opened)
    assert sorted(os.listdir(cache)) == sorted(good)


@pytest.mark.parametrize("bad", ["wrong content", "truncated"])
def test_download_all_mirrors_bad_raises_and_leaves_no_file(web, tmp_path, bad):
    good, install = web
    other = {f"{s}.gz": gzip.compress(raw) for s, raw in _synthetic(seed=1).items()}
    corrupt = {n: gz[:20] for n, gz in good.items()} if bad == "truncated" else other
    install(urllib.error.HTTPError(MIRROR_A, 503, "down", None, None), corrupt)
    with pytest.raises(data.DataError) as err:
        data.load_mnist()
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and MIRROR_A in msg and MIRROR_B in msg
    assert os.listdir(_cache(tmp_path)) == []


def test_no_download_when_disabled_or_outside_cache(web, tmp_path):
    good, install = web
    fake = install(good, good)
    with pytest.raises(data.DataError, match="downloading is off"):
        data.load_mnist(download=False)
    with pytest.raises(data.DataError, match="not found"):
        data.load_mnist(tmp_path / "elsewhere")
    assert fake.opened == []
    assert data.load_mnist(tmp_path / "elsewhere", download=True).name == "mnist"


# --- folder resolution --------------------------------------------------------------------------


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    assert data.resolve_data_dir() == _cache(tmp_path)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "sublim_jax" / "mnist"


def test_env_var_folder_is_verified_for_known_and_read_as_idx(tmp_path, monkeypatch):
    folder = _write(tmp_path / "fashion", _synthetic())
    monkeypatch.setenv(data.ENV_VAR, str(folder))
    with pytest.raises(data.ChecksumError, match=re.escape(str(folder))):
        data.load_mnist()
    ds = data.load("idx")
    assert ds.name == "idx" and ds.folder == folder and len(ds.x_train) == N_TRAIN
    shutil.rmtree(folder)
    with pytest.raises(data.DataError, match=re.escape(str(folder))):
        data.load("idx")
