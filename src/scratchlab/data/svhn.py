"""SVHN, the Street View House Numbers (Netzer et al. 2011), cropped-digits format: train_32x32.mat, test_32x32.mat.

Each file is a MATLAB v5 .mat (read with `scipy.io.loadmat`) holding

    X   uint8 (32, 32, 3, N)   height, width, RGB, example: the example index is LAST
    y   uint8 (N, 1)           labels 1..10, where 10 means the digit 0

`read_svhn_mat` returns images (N, 32, 32, 3) uint8 and labels (N,) int64 in 0..9 (10 -> 0), and raises
`FormatError` naming the file, the field and expected vs found for anything else. The official files are
downloaded with their SHA-256 (the digests TensorFlow Datasets records in url_checksums/svhn_cropped.txt).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scratchlab.data.idx import FormatError, check_integers

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
# (url, sha256, bytes) of the official files
OFFICIAL = {
    "train_32x32.mat": ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                        "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8", 182040794),
    "test_32x32.mat": ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                       "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b", 64275384),
}


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 in 0..9 from an SVHN cropped-digits .mat file."""
    import scipy.io

    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, ... for damaged files
        raise FormatError(f"{path}: cannot be read as a MATLAB .mat file ({type(e).__name__}: {e})") from None
    for field in ("X", "y"):
        if field not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise FormatError(f"{path}: field {field!r} missing; expected 'X' and 'y', found {found}")
    X, y = mat["X"], mat["y"]
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3):
        raise FormatError(f"{path}: field 'X' has shape {X.shape}, expected (32, 32, 3, N)")
    if X.dtype != np.uint8:
        raise FormatError(f"{path}: field 'X' has dtype {X.dtype}, expected uint8")
    n = X.shape[3]
    if n == 0:
        raise FormatError(f"{path}: field 'X' holds 0 images (shape {X.shape}); expected at least one")
    if y.shape not in ((n, 1), (n,)):
        raise FormatError(f"{path}: field 'y' has shape {y.shape}, expected ({n}, 1) for the {n} images in 'X'")
    labels = check_integers(y.reshape(-1), f"{path}: field 'y' (10 = digit 0)", 1, 10).astype(np.int64)
    labels[labels == 10] = 0
    images = np.ascontiguousarray(X.transpose(3, 0, 1, 2))  # (32, 32, 3, N) -> (N, 32, 32, 3)
    return images, labels
