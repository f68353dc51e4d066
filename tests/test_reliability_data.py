"""The data layer under hostile and careless input (issue 11). Each case states what the reader must answer: the
exact error (file, field, expected vs found) or the exact data. Fixtures are written in the official formats
(tests/datafiles.py); downloads come from a loopback server."""

import gzip
import os
import pickle
import subprocess
import tarfile
import time
import tracemalloc

import numpy as np
import pytest
import scipy.io

from datafiles import cifar_archive, serve, sha256, symlink_chain_tar, tar_of, write
from scratchlab.data import cifar, imdb, registry, svhn
from scratchlab.data.archive import extract_tar
from scratchlab.data.download import DownloadError, download
from scratchlab.data.idx import FormatError, read_idx, write_idx

# ---------------------------------------------------------------- 1: tar members and local archives


def test_symlink_chain_past_path_max_is_refused(tmp_path):
    """The chain that gets past the `data` filter of Python 3.11.7 and writes tmp_path/newfile."""
    dest = tmp_path / "out"
    archive = write(tmp_path / "chain.tar", symlink_chain_tar(tmp_path / f".out.partial{os.getpid()}"))
    with pytest.raises(FormatError, match=r"chain.tar: unsafe archive member refused: 'a' is a symbolic link to "
                                          r"'d+'; expected only regular files and folders"):
        extract_tar(archive, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.tar"]  # no newfile, no out/, no temp folder


@pytest.mark.parametrize(("member", "kind"), [
    (("aclImdb/link", (tarfile.SYMTYPE, "README")), "a symbolic link to 'README'"),  # inside the target: the
    (("aclImdb/copy", (tarfile.LNKTYPE, "aclImdb/README")), "a hard link to 'aclImdb/README'"),  # filter allows
    (("aclImdb/tty", (tarfile.CHRTYPE, "")), "a character device"),
    (("aclImdb/disk", (tarfile.BLKTYPE, "")), "a block device"),
    (("aclImdb/pipe", (tarfile.FIFOTYPE, "")), "a fifo"),
])
def test_links_and_special_members_are_refused(tmp_path, member, kind):
    archive = write(tmp_path / "a.tar", tar_of([("aclImdb/README", b"ok"), member]))
    with pytest.raises(FormatError, match=f"a.tar: unsafe archive member refused: '{member[0]}' is {kind}; "
                                          "expected only regular files and folders"):
        extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_local_cifar_archive_is_checked_against_the_official_digest(tmp_path, monkeypatch):
    archive, truth = cifar_archive(n_per_batch=2)
    write(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz", archive)
    monkeypatch.setenv("SCRATCHLAB_DATA", str(tmp_path / "data"))
    official = registry.CIFAR10_REMOTES[0].sha256
    with pytest.raises(FormatError, match=f"cifar-10-python.tar.gz: SHA-256 is {sha256(archive)}, expected "
                                          f"{official} \\(the official file's\\); not extracting it"):
        registry.load("cifar10", "train", allow_download=False)
    assert sorted(p.name for p in (tmp_path / "data" / "cifar10").iterdir()) == ["cifar-10-python.tar.gz"]
    # the same archive with its own digest as the known one loads
    monkeypatch.setattr(registry, "CIFAR10_REMOTES", [registry.Remote("cifar-10-python.tar.gz", "", sha256(archive))])
    np.testing.assert_array_equal(registry.load("cifar10", "test", allow_download=False).labels, truth["test"][1])


# ---------------------------------------------------------------- 8: labels and pixels must be integers in range


def mnist_folder(tmp_path, monkeypatch, images, labels):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("SCRATCHLAB_DATA", str(tmp_path / "data"))


GRAY = np.zeros((3, 28, 28), np.uint8)


@pytest.mark.parametrize(("images", "labels", "message"), [
    (GRAY, np.array([-1, 0, 1], np.int8), r"labels-idx1-ubyte.gz: labels should hold integers in 0..9, found -1 "
                                          r"\(1 such\)"),
    (GRAY, np.array([np.nan, 0, 1], np.float32), r"labels-idx1-ubyte.gz: labels should hold integers in 0..9, "
                                                 r"found dtype float32 \(first value nan\)"),
    (GRAY, np.array([2.7, 0, 1], np.float32), r"found dtype float32 \(first value 2.7\)"),
    (np.stack([np.full((28, 28), v, np.float32) for v in (300, -1, 0)]), np.arange(3, dtype=np.uint8),
     r"images-idx3-ubyte.gz: pixels should hold integers in 0..255, found dtype float32 \(first value 300.0\)"),
    (np.stack([np.full((28, 28), v, np.int16) for v in (300, -1, 0)]), np.arange(3, dtype=np.uint8),
     r"images-idx3-ubyte.gz: pixels should hold integers in 0..255, found 300 \(1568 such\)"),
])
def test_idx_labels_and_pixels_out_of_range(tmp_path, monkeypatch, images, labels, message):
    mnist_folder(tmp_path, monkeypatch, images, labels)
    with pytest.raises(FormatError, match=message):
        registry.load("mnist", "train", allow_download=False)


@pytest.mark.parametrize(("labels", "found"), [
    ([None, 1], "None"),
    ([2**70, 1], "1180591620717411303424"),
    ([0.5, 1.7], r"dtype float64 \(first value 0.5\)"),
])
def test_cifar_labels_that_are_not_integers_in_range(tmp_path, labels, found):
    path = write(tmp_path / "data_batch_1", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels},
                                                         protocol=2))
    with pytest.raises(FormatError, match=f"data_batch_1: field 'labels' should hold integers in 0..9, found {found}"):
        cifar.read_batch(path)


def test_svhn_float_labels_are_refused(tmp_path):
    scipy.io.savemat(tmp_path / "t.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1.5], [10.7]])})
    with pytest.raises(FormatError, match=r"t.mat: field 'y' \(10 = digit 0\) should hold integers in 1..10, found "
                                          r"dtype float64 \(first value 1.5\)"):
        svhn.read_svhn_mat(tmp_path / "t.mat")


# ---------------------------------------------------------------- 9: empty and one-class datasets


def test_empty_idx_set_is_refused(tmp_path, monkeypatch):
    mnist_folder(tmp_path, monkeypatch, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(FormatError, match=r"train-labels-idx1-ubyte.gz: 0 labels \(dimensions \(0,\)\); expected "
                                          "at least one example"):
        registry.load("mnist", "train", allow_download=False)


def test_empty_cifar_batch_and_svhn_file_are_refused(tmp_path):
    path = write(tmp_path / "data_batch_1", pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}))
    with pytest.raises(FormatError, match="data_batch_1: field 'data' holds 0 images; expected at least one"):
        cifar.read_batch(path)
    scipy.io.savemat(tmp_path / "t.mat", {"X": np.zeros((32, 32, 3, 0), np.uint8), "y": np.zeros((0, 1), np.uint8)})
    with pytest.raises(FormatError, match=r"t.mat: field 'X' holds 0 images \(shape \(32, 32, 3, 0\)\); expected"):
        svhn.read_svhn_mat(tmp_path / "t.mat")


def write_corpus(folder, kind, pos, neg):
    """`kind` layout with the texts `pos` and `neg` in both splits."""
    data = imdb.TextSet(neg + pos, np.array([0] * len(neg) + [1] * len(pos), np.int64), imdb.CLASSES, "fixture")
    sets = dict.fromkeys(imdb.SPLITS, data)
    if kind == "aclimdb":
        imdb.write_aclimdb(folder, sets)
        for s in imdb.SPLITS:
            for c in imdb.CLASSES:
                (folder / "aclImdb" / s / c).mkdir(parents=True, exist_ok=True)
    elif kind == "four-file":
        imdb.write_four_files(folder, sets)
    else:
        for s in imdb.SPLITS:
            imdb.write_csv(folder / f"{s}.csv", data)


@pytest.mark.parametrize(("kind", "where"), [
    ("aclimdb", r"aclImdb/train/\{neg,pos\}/"), ("four-file", r"train_\{neg,pos\}.txt"), ("csv", "train.csv")])
@pytest.mark.parametrize(("pos", "neg", "counts"), [([], [], "0 neg and 0 pos"),
                                                     (["great", "fine"], [], "0 neg and 2 pos")])
def test_empty_and_one_class_corpora_are_refused(tmp_path, kind, where, pos, neg, counts):
    write_corpus(tmp_path, kind, pos, neg)
    assert imdb.layout(tmp_path)[0] == kind
    with pytest.raises(FormatError, match=f"{where}: {counts} reviews; expected at least one of each"):
        imdb.read_corpus(tmp_path, "train")


# ---------------------------------------------------------------- 12: the IDX reader streams and counts exactly


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """Header (1, 28, 28), then 100 MiB of zeros (100 KB gzipped): refused having read 785 bytes of data."""
    header = bytes([0, 0, 0x08, 3]) + (1).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    bomb = write(tmp_path / "bomb-idx3-ubyte.gz", gzip.compress(header + bytes(100 << 20), compresslevel=1))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"bomb-idx3-ubyte.gz: dimensions \(1, 28, 28\) of uint8 need 784 data "
                                              r"bytes, found more \(trailing bytes\)"):
            read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak >> 20} MiB"  # the whole stream would be 100 MiB (200 MiB before)


def test_dimensions_whose_product_overflows_int64(tmp_path):
    path = write(tmp_path / "huge-idx4-ubyte", bytes([0, 0, 0x08, 4]) + (2**16).to_bytes(4, "big") * 4 + b"\0" * 10)
    with pytest.raises(FormatError, match=r"huge-idx4-ubyte: dimensions \(65536, 65536, 65536, 65536\) of uint8 need "
                                          r"18446744073709551616 data bytes, found 10 \(truncated\)"):
        read_idx(path)


# ---------------------------------------------------------------- 13: downloads: deadline, stale temp files, paths

BODY = b"0123456789" * 10


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_trickling_server_hits_the_total_timeout(tmp_path, monkeypatch, how):
    """100 bytes, one every 0.1 s (10 s in all), each well within the 5 s per-read timeout."""
    kwargs = {"total_timeout": 0.5} if how == "argument" else {}
    monkeypatch.setenv("SCRATCHLAB_DOWNLOAD_TIMEOUT", "0.5")
    with serve({"/f.bin": (BODY, len(BODY), 0.1)}) as url:
        start = time.monotonic()
        with pytest.raises(DownloadError, match=r"f.bin: not finished after 0.5 s \(total timeout\): \d of 100 "
                                                "bytes received"):
            download(f"{url}/f.bin", tmp_path / "d" / "f.bin", sha256(BODY), timeout=5, progress=False, **kwargs)
        assert time.monotonic() - start < 2.0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == []


def test_bad_download_timeout_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHLAB_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(DownloadError, match=r"SCRATCHLAB_DOWNLOAD_TIMEOUT: expected seconds, found 'soon'"):
        download("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", sha256(BODY), progress=False)


def test_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    folder = tmp_path / "d"
    stale, live, other = (write(folder / name, b"half") for name in (
        f".f.bin.part{dead.pid}", f".f.bin.part{os.getppid()}", f".g.bin.part{dead.pid}"))
    with serve({"/f.bin": BODY}) as url:
        download(f"{url}/f.bin", folder / "f.bin", sha256(BODY), progress=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["f.bin", live.name, other.name])
    assert not stale.exists() and live.read_bytes() == b"half"


def test_destination_under_a_file(tmp_path):
    write(tmp_path / "notdir", b"a file, not a folder")
    with pytest.raises(DownloadError, match=f"{tmp_path}/notdir/f.bin: cannot create its folder {tmp_path}/notdir "
                                            r"\(File exists: "):
        download("http://127.0.0.1:9/f.bin", tmp_path / "notdir" / "f.bin", sha256(BODY), progress=False)


# ---------------------------------------------------------------- 18: CSV (and line files) from Excel and Notepad


def test_csv_with_a_byte_order_mark(tmp_path):
    path = write(tmp_path / "bom.csv", "\ufefftext,label\ngood,pos\nbad,neg\n".encode())
    data = imdb.read_csv(path)
    assert data.texts == ["good", "bad"] and data.labels.tolist() == [1, 0]


def test_four_file_with_a_byte_order_mark(tmp_path):
    write_corpus(tmp_path, "four-file", ["great"], ["awful"])
    (tmp_path / "train_pos.txt").write_bytes("\ufeffgreat\n".encode())
    assert imdb.read_corpus(tmp_path, "train").texts == ["awful", "great"]


def test_csv_decode_error_names_its_line(tmp_path):
    rows = b"".join(b"review number %d,pos\n" % i for i in range(2000))
    path = write(tmp_path / "dec.csv", b"text,label\n" + rows + b"bad \xff,neg\n")
    with pytest.raises(FormatError, match=rf"dec.csv:2002: not UTF-8 text \(invalid start byte at byte "
                                          rf"{11 + len(rows) + 4}\)"):
        imdb.read_csv(path)
