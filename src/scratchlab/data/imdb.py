"""Sentiment corpora: the official aclImdb archive, the four-file layout, and a text,label CSV.

Three layouts of a folder, all read into a `TextSet` (texts, labels 0 = negative / 1 = positive):

    aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt   the official archive (Maas et al., 2011): one review a file,
                                                       ratings 7-10 positive, 1-4 negative
    {train,test}_{pos,neg}.txt                         four files, one review a line
    {train,test}.csv                                   a header naming `text` and `label` (0/1 or neg/pos), any corpus

The archive is fetched from its official address with a SHA-256 check and extracted by `archive.extract_tar`:
regular files and folders only, every name inside the target (absolute names and `..` are refused, not rewritten).
A malformed file is a `FormatError` naming the file and line, and so is a split without reviews of both classes;
a leading UTF-8 byte-order mark (Excel's CSV export) is accepted. Validation is a seeded 25% of train.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchlab.data.archive import extract_tar
from scratchlab.data.download import cache_dir, download
from scratchlab.data.idx import FormatError

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
# Published digest of aclImdb_v1.tar.gz (84,125,825 bytes), the same in several independent loaders
# (e.g. Julia's MLDatasets and GoMLX's imdb package).
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
CLASSES = ["neg", "pos"]
SPLITS = ("train", "test")
_LABELS = {"0": 0, "1": 1, "neg": 0, "pos": 1, "negative": 0, "positive": 1}
_REVIEW_FILE = re.compile(r"^(\d+)_(\d+)\.txt$")


@dataclass
class TextSet:
    texts: list[str]
    labels: np.ndarray  # int64 (N,), 0 = negative, 1 = positive
    classes: list[str]
    source: str         # where it came from, said in every report

    def __post_init__(self):
        if len(self.texts) != len(self.labels):
            raise FormatError(f"{self.source}: {len(self.texts)} texts but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray, what: str) -> TextSet:
        return TextSet([self.texts[i] for i in idx], self.labels[idx], self.classes, f"{self.source}, {what}")


def split_validation(train: TextSet, fraction: float = 0.25, seed: int = 0) -> tuple[TextSet, TextSet]:
    """(train, validation): a seeded random `fraction` of train held out. Same seed, same split."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction: expected between 0 and 1, got {fraction}")
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = round(len(train) * fraction)
    return (train.subset(np.sort(order[n_val:]), f"train minus {fraction:.0%} validation (seed {seed})"),
            train.subset(np.sort(order[:n_val]), f"{fraction:.0%} validation (seed {seed})"))


# ---------------------------------------------------------------- readers


def _decode(path: Path, data: bytes, line: int = 1) -> str:
    """UTF-8 (a leading byte-order mark, as Excel and Notepad write, is dropped); `data` begins at `line`."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line += data.count(b"\n", 0, e.start)
        raise FormatError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _both_classes(where: str, labels: list[int]) -> np.ndarray:
    """Labels as int64, refused unless both classes occur (an empty or one-class corpus cannot be trained on)."""
    labels = np.array(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(CLASSES))
    if counts.min() == 0:
        raise FormatError(f"{where}: {counts[0]} neg and {counts[1]} pos reviews; expected at least one of each")
    return labels


def read_aclimdb(root: str | Path, split: str) -> TextSet:
    """root = the `aclImdb` folder. Files are read in id order, negatives first, so the order is fixed."""
    root = Path(root)
    texts, labels = [], []
    for label, cls in enumerate(CLASSES):
        folder = root / split / cls
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing; an aclImdb tree has {split}/pos and {split}/neg")
        found = []
        for path in folder.iterdir():
            m = _REVIEW_FILE.match(path.name)
            if not m:
                raise FormatError(f"{path}: expected a review file named <id>_<rating>.txt")
            rating = int(m.group(2))
            if not (7 <= rating <= 10 if cls == "pos" else 1 <= rating <= 4):
                raise FormatError(f"{path}: rating {rating} in {cls}/, expected {'7-10' if cls == 'pos' else '1-4'}")
            found.append((int(m.group(1)), path))
        for _, path in sorted(found):
            text = _decode(path, path.read_bytes()).strip()
            if not text:
                raise FormatError(f"{path}:1: empty review")
            texts.append(text)
            labels.append(label)
    return TextSet(texts, _both_classes(f"{root / split}/{{neg,pos}}/", labels), CLASSES,
                   f"aclImdb {split} from {root}")


def read_lines(path: str | Path, label: int) -> tuple[list[str], list[int]]:
    """One review a line; a blank line before the end is an error (it would shift every later review)."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline
    texts = []
    for lineno, raw in enumerate(lines, 1):
        text = _decode(path, raw, lineno).strip()
        if not text:
            raise FormatError(f"{path}:{lineno}: empty line; expected one review per line")
        texts.append(text)
    return texts, [label] * len(texts)


def read_four_files(folder: str | Path, split: str) -> TextSet:
    folder = Path(folder)
    texts, labels = [], []
    for label, cls in enumerate(CLASSES):
        t, lab = read_lines(folder / f"{split}_{cls}.txt", label)
        texts += t
        labels += lab
    return TextSet(texts, _both_classes(f"{folder / split}_{{neg,pos}}.txt", labels), CLASSES,
                   f"four-file {split} from {folder}")


def read_csv(path: str | Path) -> TextSet:
    """A CSV whose header names `text` and `label` (other columns ignored); labels 0/1, neg/pos, negative/positive."""
    path = Path(path)
    texts, labels = [], []
    reader = csv.reader(io.StringIO(_decode(path, path.read_bytes()), newline=""))
    try:
        header = next(reader, None)
        if header is None or "text" not in header or "label" not in header:
            raise FormatError(f"{path}:1: expected a header with columns text and label, found {header}")
        ti, li = header.index("text"), header.index("label")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if len(row) != len(header):
                raise FormatError(f"{where}: expected {len(header)} fields, found {len(row)}")
            label = row[li].strip().lower()
            if label not in _LABELS:
                raise FormatError(f"{where}: label {row[li]!r}, expected one of 0, 1, neg, pos, "
                                  "negative, positive")
            if not row[ti].strip():
                raise FormatError(f"{where}: empty text")
            texts.append(row[ti])
            labels.append(_LABELS[label])
    except csv.Error as e:
        raise FormatError(f"{path}:{reader.line_num}: {e}") from None
    return TextSet(texts, _both_classes(str(path), labels), CLASSES, f"CSV {path}")


def layout(folder: str | Path) -> tuple[str, Path] | None:
    """Which layout `folder` holds ("aclimdb", "four-file" or "csv") and the path to read, or None."""
    folder = Path(folder)
    for root in (folder / "aclImdb", folder):
        if all((root / s / c).is_dir() for s in SPLITS for c in CLASSES):
            return "aclimdb", root
    if all((folder / f"{s}_{c}.txt").is_file() for s in SPLITS for c in CLASSES):
        return "four-file", folder
    if all((folder / f"{s}.csv").is_file() for s in SPLITS):
        return "csv", folder
    return None


def read_corpus(folder: str | Path, split: str) -> TextSet:
    found = layout(folder)
    if found is None:
        raise FileNotFoundError(f"{folder}: no sentiment corpus here; expected aclImdb/{{train,test}}/{{pos,neg}}/, "
                                "{train,test}_{pos,neg}.txt or {train,test}.csv")
    kind, path = found
    if kind == "aclimdb":
        return read_aclimdb(path, split)
    if kind == "four-file":
        return read_four_files(path, split)
    return read_csv(path / f"{split}.csv")


# ---------------------------------------------------------------- writers (fixtures, synthetic corpora, exports)


def write_aclimdb(root: str | Path, sets: dict[str, TextSet], seed: int = 0) -> Path:
    """Write {"train": ..., "test": ...} as root/aclImdb/...; ratings drawn from 7-10 (pos) or 1-4 (neg)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "aclImdb"
    for split, data in sets.items():
        for cls in CLASSES:
            (base / split / cls).mkdir(parents=True, exist_ok=True)
        for i, (text, label) in enumerate(zip(data.texts, data.labels, strict=True)):
            rating = rng.integers(7, 11) if label == 1 else rng.integers(1, 5)
            (base / split / CLASSES[label] / f"{i}_{rating}.txt").write_text(text, encoding="utf-8")
    return base


def write_four_files(folder: str | Path, sets: dict[str, TextSet]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, data in sets.items():
        for label, cls in enumerate(CLASSES):
            lines = [" ".join(t.split()) for t, y in zip(data.texts, data.labels, strict=True) if y == label]
            (folder / f"{split}_{cls}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def write_csv(path: str | Path, data: TextSet) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, CLASSES[y]) for t, y in zip(data.texts, data.labels, strict=True))
    return path


# ---------------------------------------------------------------- the official archive


def search_folders(data_dir: str | Path | None = None) -> list[Path]:
    """Where a corpus is looked for: `data_dir`, then $SCRATCHLAB_DATA/imdb, then the cache."""
    folders = [Path(data_dir)] if data_dir else []
    if os.environ.get("SCRATCHLAB_DATA"):
        folders.append(Path(os.environ["SCRATCHLAB_DATA"]) / "imdb")
    return folders + [cache_dir() / "imdb"]


def find(data_dir: str | Path | None = None) -> Path | None:
    """The first folder of `search_folders` that holds a corpus in one of the three layouts."""
    return next((f for f in search_folders(data_dir) if layout(f) is not None), None)


def fetch(url: str | None = None, sha256: str | None = None, *, progress: bool = True) -> Path:
    """Download the official archive (IMDB_URL, IMDB_SHA256) into the cache, extract it safely; returns the folder."""
    folder = cache_dir() / "imdb"
    if layout(folder) is None:
        if (folder / "aclImdb").exists():
            raise FormatError(f"{folder / 'aclImdb'}: incomplete (no train/ and test/ with pos/ and neg/); "
                              "delete it and fetch again")
        archive = download(url or IMDB_URL, folder / "aclImdb_v1.tar.gz", sha256 or IMDB_SHA256, progress=progress)
        staging = extract_tar(archive, folder / f".extract{os.getpid()}")
        try:
            if not (staging / "aclImdb").is_dir():
                raise FormatError(f"{archive}: expected a top-level aclImdb/ folder, found "
                                  f"{sorted(p.name for p in staging.iterdir())}")
            os.replace(staging / "aclImdb", folder / "aclImdb")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_split(split: str = "train", allow_download: bool = True, data_dir: str | Path | None = None) -> TextSet:
    """A split of IMDB (or the corpus in `data_dir`), downloading the official archive when nothing is found."""
    folder = find(data_dir)
    if folder is None:
        if not allow_download:
            looked = ", ".join(str(f) for f in search_folders(data_dir))
            raise FileNotFoundError(f"imdb: no corpus in {looked}; `scratchlab data fetch imdb` downloads it")
        folder = fetch()
    return read_corpus(folder, split)
