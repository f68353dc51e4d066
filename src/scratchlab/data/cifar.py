"""CIFAR-10, python version: cifar-10-python.tar.gz -> cifar-10-batches-py/{data_batch_1..5, test_batch,
batches.meta}, each a pickled dict (written by Python 2, so keys are bytes once loaded):

    b"data"       uint8 ndarray (10000, 3072): per image 1024 red, then 1024 green, then 1024 blue, row-major 32x32
    b"labels"     list of 10000 ints in 0..9
    b"batch_label", b"filenames"   bytes, list of bytes

Pickle can run arbitrary code, so batches go through `SafeUnpickler`: it admits only what these files need
(dicts, lists, bytes, strings, numbers, and numpy arrays rebuilt by numpy's own reconstructor) and names any other
global it meets. The archive is checked against the official SHA-256 and extracted by `archive.extract_tar` (no
absolute paths, no `..`, no links, no device files) into a temp folder that is renamed into place only when
complete.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np

from scratchlab.data.archive import extract_tar
from scratchlab.data.idx import FormatError, check_integers

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCHES = ["test_batch"]

_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, wherever this numpy version keeps it
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,   # how the official (numpy 1.x era) files name it
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # how numpy 2 names it
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,        # protocol-2 pickles of bytes made by Python 3
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for data only: any global outside `_ALLOWED` (os.system, builtins.eval, ...) is refused."""

    def __init__(self, file, name: str):
        super().__init__(file, encoding="bytes")
        self.name = name

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise FormatError(f"{self.name}: pickle asks for {module}.{name}; only numpy arrays, bytes, strings, "
                          "numbers, lists and dicts are allowed in a CIFAR batch")


def load_pickle(path: str | Path):
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, str(path)).load()
    except FormatError:
        raise
    except Exception as e:  # truncated or corrupt pickle: EOFError, UnpicklingError, ValueError, ...
        raise FormatError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def _key(d: dict, name: str):
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    return None


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images uint8 (N, 32, 32, 3) and labels int64 (N,), with every field checked."""
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise FormatError(f"{path}: expected a dict, found {type(batch).__name__}")
    data, labels = _key(batch, "data"), _key(batch, "labels")
    if not isinstance(data, np.ndarray):
        raise FormatError(f"{path}: field 'data' should be a numpy array, found {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise FormatError(f"{path}: field 'data' should be uint8 (N, 3072), found {data.dtype} {data.shape}")
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        raise FormatError(f"{path}: field 'labels' should list {len(data)} labels, found "
                          f"{len(labels) if isinstance(labels, list | np.ndarray) else type(labels).__name__}")
    if len(data) == 0:
        raise FormatError(f"{path}: field 'data' holds 0 images; expected at least one")
    labels = check_integers(labels, f"{path}: field 'labels'", 0, 9).astype(np.int64)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    return np.ascontiguousarray(images), labels


def extract(archive: str | Path, target: str | Path, sha256: str | None = None) -> Path:
    """Safely extract `archive` into `target`/FOLDER (atomic: the folder appears complete or not at all); with
    `sha256`, only an archive of that digest."""
    archive, target = Path(archive), Path(target)
    final = target / FOLDER
    if final.is_dir():
        return final
    staging = extract_tar(archive, target / f".extract{os.getpid()}", sha256)
    try:
        if not (staging / FOLDER).is_dir():
            raise FormatError(f"{archive}: has no {FOLDER}/ folder; found {sorted(p.name for p in staging.iterdir())}")
        os.replace(staging / FOLDER, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def read_cifar10(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(folder)
    names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise FormatError(f"{folder}: batch files {missing} are missing")
    parts = [read_batch(folder / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def pickle_batch(images: np.ndarray, labels, name: str = "batch") -> bytes:
    """The official batch format for `images` uint8 (N, 32, 32, 3): used to build test fixtures."""
    data = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2)).reshape(len(images), -1)
    batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data,
             b"filenames": [f"{name}_{i}.png".encode() for i in range(len(images))]}
    buf = io.BytesIO()
    pickle.dump(batch, buf, protocol=2)
    return buf.getvalue()
