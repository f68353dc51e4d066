"""SVHN .mat reader and download on fixture files written in the official layout with scipy.io.savemat."""

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from scratchlab.data import registry
from scratchlab.data import svhn as svhn_format
from scratchlab.data.download import DownloadError
from scratchlab.data.idx import FormatError


def write_svhn(path, n=7, X=None, y=None, seed=0):
    """An SVHN-layout .mat: X uint8 (32, 32, 3, N), y uint8 (N, 1) with labels 1..10 (10 = digit 0)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8) if X is None else X
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(-1, 1) if y is None else y
    scipy.io.savemat(path, {"X": X, "y": y})
    return X, y


def test_reads_official_layout_and_maps_10_to_0(tmp_path):
    X, y = write_svhn(tmp_path / "t.mat", n=12)
    images, labels = svhn_format.read_svhn_mat(tmp_path / "t.mat")
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    for i in (0, 5, 11):
        np.testing.assert_array_equal(images[i], X[:, :, :, i])  # example index moved from last to first
    np.testing.assert_array_equal(labels, np.where(y[:, 0] == 10, 0, y[:, 0]))
    assert labels[9] == 0 and labels[0] == 1


def test_truncated_file(tmp_path):
    write_svhn(tmp_path / "t.mat", n=20)
    raw = (tmp_path / "t.mat").read_bytes()
    (tmp_path / "t.mat").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match=r"t\.mat: cannot be read as a MATLAB \.mat file"):
        svhn_format.read_svhn_mat(tmp_path / "t.mat")


def test_corrupted_file(tmp_path):
    (tmp_path / "t.mat").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(FormatError, match=r"t\.mat: cannot be read as a MATLAB \.mat file"):
        svhn_format.read_svhn_mat(tmp_path / "t.mat")


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((28, 28, 3, 4), np.uint8), None, r"field 'X' has shape \(28, 28, 3, 4\), expected \(32, 32, 3, N\)"),
    (np.zeros((32, 32, 3), np.uint8), None, r"field 'X' has shape \(32, 32, 3\), expected \(32, 32, 3, N\)"),
    (np.zeros((32, 32, 3, 4), np.float64), None, r"field 'X' has dtype float64, expected uint8"),
    (None, np.ones((3, 1), np.uint8), r"field 'y' has shape \(3, 1\), expected \(4, 1\) for the 4 images"),
    (None, np.array([[1], [0], [2], [3]], np.uint8), r"field 'y' .* integers in 1\.\.10, found 0"),
    (None, np.array([[1], [11], [2], [3]], np.uint8), r"field 'y' .* found 11 \(1 such\)"),
])
def test_wrong_shapes_and_labels_are_named(tmp_path, X, y, message):
    X = np.zeros((32, 32, 3, 4), np.uint8) if X is None else X
    write_svhn(tmp_path / "t.mat", X=X, y=np.ones((4, 1), np.uint8) if y is None else y)
    with pytest.raises(FormatError, match=message):
        svhn_format.read_svhn_mat(tmp_path / "t.mat")


def test_missing_field_is_named(tmp_path):
    scipy.io.savemat(tmp_path / "t.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "labels": np.ones((2, 1))})
    with pytest.raises(FormatError, match=r"field 'y' missing; expected 'X' and 'y', found \['X', 'labels'\]"):
        svhn_format.read_svhn_mat(tmp_path / "t.mat")


def test_registry_finds_files_under_scratchlab_data(tmp_path, monkeypatch):
    (tmp_path / "data" / "svhn").mkdir(parents=True)
    write_svhn(tmp_path / "data" / "svhn" / "test_32x32.mat", n=5)
    monkeypatch.setenv("SCRATCHLAB_DATA", str(tmp_path / "data"))
    data = registry.load("svhn", "test")
    assert len(data) == 5 and data.classes == [str(i) for i in range(10)]
    assert "svhn (test, 5 digits)" in data.source and str(tmp_path / "data" / "svhn") in data.source


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server on a free port serving tmp_path/served/."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def serve_as_official(monkeypatch, url, sha):
    monkeypatch.setitem(svhn_format.OFFICIAL, "test_32x32.mat", (f"{url}/test_32x32.mat", sha, 0))


def test_download_checks_sha256_then_reads(server, monkeypatch, tmp_path):
    root, url = server
    X, _ = write_svhn(root / "test_32x32.mat", n=9)
    serve_as_official(monkeypatch, url, hashlib.sha256((root / "test_32x32.mat").read_bytes()).hexdigest())
    data = registry.load("svhn", "test")
    cached = tmp_path / "cache" / "svhn" / "test_32x32.mat"
    assert cached.exists() and "downloaded to" in data.source
    np.testing.assert_array_equal(data.images[3], X[:, :, :, 3])


def test_download_with_wrong_sha256_keeps_nothing(server, monkeypatch, tmp_path):
    root, url = server
    write_svhn(root / "test_32x32.mat", n=3)
    serve_as_official(monkeypatch, url, "0" * 64)
    with pytest.raises(DownloadError, match="SHA-256 mismatch for test_32x32.mat"):
        registry.load("svhn", "test")
    assert not any(Path(tmp_path / "cache").rglob("*.mat*"))

