"""IDX reader and the MNIST-style registry entries, on fixture files written in the official format:
good (gzip and raw), truncated, corrupted; downloads from a loopback server with the registry's checks."""

import gzip

import numpy as np
import pytest

from datafiles import serve, sha256, write
from scratchlab.data import registry
from scratchlab.data.idx import FormatError, read_idx, write_idx


def digits(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def official_header_bytes(images):
    """The IDX header spelled out by hand from the format description (not via write_idx)."""
    n, h, w = images.shape
    return bytes([0, 0, 0x08, 3]) + n.to_bytes(4, "big") + h.to_bytes(4, "big") + w.to_bytes(4, "big")


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_reads_official_layout_raw_and_gzip(tmp_path, name):
    images, _ = digits()
    raw = official_header_bytes(images) + images.tobytes()
    path = write(tmp_path / name, gzip.compress(raw) if name.endswith(".gz") else raw)
    np.testing.assert_array_equal(read_idx(path), images)
    assert write_idx(tmp_path / ("w-" + name), images).read_bytes()[:2] == path.read_bytes()[:2]


def test_roundtrip_other_types(tmp_path):
    for arr in (np.arange(-5, 5, dtype=np.int32), np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)):
        np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.idx", arr)), arr)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b[:-10], r"dimensions \(6, 28, 28\) of uint8 need 4704 data bytes, found 4694 \(truncated\)"),
    (lambda b: b + b"xx", r"need 4704 data bytes, found more \(trailing bytes\)"),
    (lambda b: b"\x01" + b[1:], r"magic number starts 0x01 0x00, expected 0x00 0x00"),
    (lambda b: b[:2] + b"\x42" + b[3:], r"magic number type byte 0x42 unknown"),
    (lambda b: b[:10], r"header needs 16 bytes for 3 dimensions, file has 10"),
    (lambda b: b[:2], r"2 bytes is too short for an IDX header"),
])
def test_bad_files_name_the_problem(tmp_path, mutate, message):
    images, _ = digits()
    path = write(tmp_path / "bad-idx3-ubyte", mutate(official_header_bytes(images) + images.tobytes()))
    with pytest.raises(FormatError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip(tmp_path):
    images, _ = digits()
    data = gzip.compress(official_header_bytes(images) + images.tobytes())
    path = write(tmp_path / "t-idx3-ubyte.gz", data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"t-idx3-ubyte.gz: gzip stream is corrupt or truncated"):
        read_idx(path)


def idx_set(folder, n_train=6, n_test=4, labels_max=9):
    train, train_y = digits(n_train, 1)
    test, test_y = digits(n_test, 2)
    train_y[0] = labels_max
    files = {"train-images-idx3-ubyte.gz": train, "train-labels-idx1-ubyte.gz": train_y,
             "t10k-images-idx3-ubyte.gz": test, "t10k-labels-idx1-ubyte.gz": test_y}
    folder.mkdir(parents=True)
    for name, arr in files.items():
        write_idx(folder / name, arr)
    return files


def test_registry_reads_scratchlab_data_folder(tmp_path, monkeypatch):
    files = idx_set(tmp_path / "data" / "mnist")
    monkeypatch.setenv("SCRATCHLAB_DATA", str(tmp_path / "data"))
    ds = registry.load("mnist", "test", allow_download=False)
    np.testing.assert_array_equal(ds.images, files["t10k-images-idx3-ubyte.gz"])
    assert ds.labels.dtype == np.int64 and ds.classes == [str(i) for i in range(10)]
    assert str(tmp_path / "data" / "mnist") in ds.source


def test_registry_checks_labels(tmp_path, monkeypatch):
    idx_set(tmp_path / "data" / "mnist", labels_max=12)
    monkeypatch.setenv("SCRATCHLAB_DATA", str(tmp_path / "data"))
    with pytest.raises(FormatError, match=r"labels-idx1-ubyte.gz: labels should hold integers in 0..9, found 12"):
        registry.load("mnist", "train", allow_download=False)


def test_registry_downloads_from_loopback_with_checks(tmp_path, monkeypatch):
    src = tmp_path / "served"
    files = idx_set(src)
    bodies = {name: (src / name).read_bytes() for name in files}
    with serve({f"/{n}": b for n, b in bodies.items()}) as url:
        remotes = [registry.Remote(n, f"{url}/{n}", sha256(b)) for n, b in bodies.items()]
        monkeypatch.setattr(registry, "MNIST_REMOTES", remotes)
        ds = registry.load("mnist", "train")
    np.testing.assert_array_equal(ds.labels, files["train-labels-idx1-ubyte.gz"])
    assert "downloaded to" in ds.source
    # a corrupted copy on the server: the digest catches it and nothing is kept
    bad = dict(bodies, **{"t10k-images-idx3-ubyte.gz": bodies["t10k-images-idx3-ubyte.gz"][:-3] + b"abc"})
    monkeypatch.setenv("SCRATCHLAB_CACHE", str(tmp_path / "cache2"))
    with serve({f"/{n}": b for n, b in bad.items()}) as url:
        remotes = [registry.Remote(n, f"{url}/{n}", sha256(bodies[n])) for n in bodies]
        monkeypatch.setattr(registry, "MNIST_REMOTES", remotes)
        with pytest.raises(Exception, match="SHA-256 mismatch for t10k-images-idx3-ubyte.gz"):
            registry.load("mnist", "test")
    assert not (tmp_path / "cache2" / "mnist" / "t10k-images-idx3-ubyte.gz").exists()


def test_official_remotes_are_complete():
    for remotes in (registry.FASHION_REMOTES, registry.MNIST_REMOTES, registry.CIFAR10_REMOTES):
        for r in remotes:
            assert r.url.endswith(r.filename) and len(r.sha256) == 64 and int(r.sha256, 16) >= 0
    assert {r.filename for r in registry.MNIST_REMOTES} == {f for pair in registry.IDX_FILES.values() for f in pair}


def test_mnist_5k_split_is_held_out():
    train, test = registry.load("mnist-5k", "train"), registry.load("mnist-5k", "test")
    assert len(train) == 4000 and len(test) == 1000
    assert np.bincount(test.labels, minlength=10).tolist() == [100] * 10
    seen = {img.tobytes() for img in train.images}
    assert sum(img.tobytes() in seen for img in test.images) <= 5  # MNIST has a few exact duplicates at most
