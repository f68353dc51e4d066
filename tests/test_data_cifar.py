"""CIFAR-10 python archive: fixture archives in the official layout (pickled batches inside a tar.gz),
served from a loopback HTTP server; broken, truncated and malicious variants are refused with clear errors."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from datafiles import cifar_archive, serve, sha256, write
from scratchlab.data import cifar, registry
from scratchlab.data.download import DownloadError
from scratchlab.data.idx import FormatError


@pytest.fixture
def served_archive(monkeypatch):
    """Point the registry's CIFAR-10 remote at a loopback server holding `archive`."""
    stack = []

    def start(archive: bytes, digest: str | None = None):
        ctx = serve({"/cifar-10-python.tar.gz": archive})
        url = ctx.__enter__()
        stack.append(ctx)
        monkeypatch.setattr(registry, "CIFAR10_REMOTES", [registry.Remote(
            "cifar-10-python.tar.gz", f"{url}/cifar-10-python.tar.gz", digest or sha256(archive))])

    yield start
    for ctx in stack:
        ctx.__exit__(None, None, None)


def test_download_extract_load(served_archive, tmp_path):
    archive, truth = cifar_archive(n_per_batch=3)
    served_archive(archive)
    for split in ("train", "test"):
        ds = registry.load("cifar10", split)
        assert ds.images.shape == ((15 if split == "train" else 3), 32, 32, 3) and ds.images.dtype == np.uint8
        np.testing.assert_array_equal(ds.images, truth[split][0])
        np.testing.assert_array_equal(ds.labels, truth[split][1])
        assert ds.classes[0] == "airplane"
        # the first load downloads; the second finds the archive (and the extracted folder) in the cache
        assert ("downloaded to" if split == "train" else str(tmp_path / "cache" / "cifar10")) in ds.source
    folder = tmp_path / "cache" / "cifar10"
    assert sorted(p.name for p in folder.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_channel_layout_is_official():
    """data rows are 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane."""
    images = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    images[0, 0, 1, 2] = 7  # blue, row 0, column 1
    batch = pickle.loads(cifar.pickle_batch(images, [3]), encoding="bytes")
    assert batch[b"data"].shape == (1, 3072) and batch[b"data"][0, 2048 + 1] == 7


def test_checksum_mismatch_keeps_nothing(served_archive, tmp_path):
    archive, _ = cifar_archive()
    served_archive(archive, digest=sha256(b"something else"))
    with pytest.raises(DownloadError, match="SHA-256 mismatch for cifar-10-python.tar.gz"):
        registry.load("cifar10", "train")
    assert not any((tmp_path / "cache" / "cifar10").iterdir())


def test_truncated_archive(tmp_path):
    archive, _ = cifar_archive()
    path = write(tmp_path / "c.tar.gz", archive[: len(archive) // 2])
    with pytest.raises(FormatError, match=r"c.tar.gz: cannot be extracted: corrupt or truncated archive"):
        cifar.extract(path, tmp_path / "out")
    assert not (tmp_path / "out" / "cifar-10-batches-py").exists()
    assert os.listdir(tmp_path / "out") == []  # the temp folder is gone too


def test_path_traversal_member_refused(tmp_path):
    archive, _ = cifar_archive(members={"../escaped.txt": b"owned"})
    path = write(tmp_path / "evil.tar.gz", archive)
    with pytest.raises(FormatError, match=r"unsafe archive member refused"):
        cifar.extract(path, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "cifar-10-batches-py").exists()


def test_absolute_symlink_member_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(FormatError, match=r"unsafe archive member refused"):
        cifar.extract(write(tmp_path / "link.tar.gz", buf.getvalue()), tmp_path / "out")


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_malicious_pickle_refused(tmp_path):
    path = write(tmp_path / "data_batch_1", pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(FormatError, match=r"pickle asks for (posix|os)\.system; only numpy arrays"):
        cifar.read_batch(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_pickled_builtin_eval_refused(tmp_path):
    path = write(tmp_path / "b", pickle.dumps({b"labels": [eval]}, protocol=2))
    with pytest.raises(FormatError, match=r"(__builtin__|builtins)\.eval"):
        cifar.read_batch(path)


@pytest.mark.parametrize(("batch", "message"), [
    ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, r"'data' should be uint8 \(N, 3072\), found uint8 "
                                                                    r"\(2, 3071\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"found float32"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"'labels' should list 2 labels, found 1"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"'labels' should hold integers in 0..9, found 10"),
    ({b"labels": [0]}, r"'data' should be a numpy array, found NoneType"),
    ([1, 2], r"expected a dict, found list"),
])
def test_bad_batches_name_the_field(tmp_path, batch, message):
    path = write(tmp_path / "data_batch_1", pickle.dumps(batch, protocol=2))
    with pytest.raises(FormatError, match=message):
        cifar.read_batch(path)


def test_truncated_pickle(tmp_path):
    images = np.zeros((2, 32, 32, 3), np.uint8)
    path = write(tmp_path / "data_batch_1", cifar.pickle_batch(images, [0, 1])[:-100])
    with pytest.raises(FormatError, match=r"data_batch_1: not a readable pickle"):
        cifar.read_batch(path)


def test_missing_batch_file(tmp_path):
    archive, _ = cifar_archive(members={})
    folder = cifar.extract(write(tmp_path / "c.tar.gz", archive), tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FormatError, match=r"batch files \['data_batch_3'\] are missing"):
        cifar.read_cifar10(folder, "train")
