"""Plain-text corpora for language models, and their split into contiguous blocks.

    austen           Jane Austen's six novels, from Debian's r-cran-janeaustenr (offline; `make data` installs it):
                     an R lazy-load database read by scratchlab.data.rdata; lines joined by newlines, the novels in
                     publication order separated by blank lines (4,025,032 characters)
    tinyshakespeare  karpathy/char-rnn's data/tinyshakespeare/input.txt (1,115,394 bytes, SHA-256 checked;
                     downloaded into the cache once)
    text_file=PATH   any UTF-8 text file

Splits are contiguous blocks, not shuffled lines: train is the first 90% of the characters, validation the next 5%,
test the last 5% (`split_blocks`), so no validation sentence is also a training sentence and the state a model
carries across batches runs through real text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scratchlab.data.idx import FormatError
from scratchlab.data.registry import Remote, find_files

Name = Literal["austen", "tinyshakespeare"]
AUSTEN_SYSTEM = "/usr/lib/R/site-library/janeaustenr/data"  # where Debian's r-cran-janeaustenr puts its data
AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")
TINY_SHAKESPEARE = Remote(
    "input.txt", "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")
SPLIT = (0.90, 0.05, 0.05)  # train, validation, test: shares of the characters (or words), in that order


@dataclass
class Corpus:
    text: str
    source: str  # where it came from, said in the summary

    def __len__(self) -> int:
        return len(self.text)


def read_text_file(path: str | Path, what: str = "text_file") -> str:
    """A UTF-8 text file's contents; a missing, unreadable, non-UTF-8 or empty file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}={path}: no such file" if not path.exists() else f"{what}={path}: not a file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}={path}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") from None
    if not text.strip():
        raise ValueError(f"{what}={path}: the file is empty (a language model needs text to learn from)")
    return text


def austen(allow_download: bool = False) -> Corpus:
    from scratchlab.data import rdata

    try:
        (rdb, _), where = find_files("janeaustenr", ["Rdata.rdb", "Rdata.rdx"], [AUSTEN_SYSTEM], [], False)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}; install Debian's r-cran-janeaustenr (`make data`), or choose "
                                "corpus=tinyshakespeare or text_file=PATH") from None
    books = rdata.lazyload(rdb.parent)
    missing = [b for b in AUSTEN_NOVELS if b not in books]
    if missing:
        raise FormatError(f"{rdb}: no novels {missing} (found {sorted(books)})")
    text = "\n\n".join("\n".join(line or "" for line in books[b].values) for b in AUSTEN_NOVELS)
    return Corpus(text, f"Jane Austen's six novels ({', '.join(AUSTEN_NOVELS)}) from {where} (r-cran-janeaustenr)")


def tinyshakespeare(allow_download: bool = True) -> Corpus:
    (path,), where = find_files("tinyshakespeare", [TINY_SHAKESPEARE.filename], [], [TINY_SHAKESPEARE],
                                allow_download)
    return Corpus(read_text_file(path, "tinyshakespeare"), f"tiny-shakespeare (karpathy/char-rnn) from {where}")


def load_corpus(name: str, text_file: str = "", allow_download: bool = True) -> Corpus:
    """`text_file` when given, else the corpus `name`."""
    if text_file:
        return Corpus(read_text_file(text_file), f"text_file={text_file}")
    loaders = {"austen": austen, "tinyshakespeare": tinyshakespeare}
    if name not in loaders:
        raise ValueError(f"corpus must be one of {sorted(loaders)} (or give text_file=PATH), got {name!r}")
    return loaders[name](allow_download=allow_download)


def load_split(name: str, split: str, allow_download: bool = True) -> Corpus:
    """One contiguous block of corpus `name`: "train", "validation" or "test" (`scratchlab data fetch NAME`)."""
    names = ("train", "validation", "test")
    if split not in names:
        raise ValueError(f"split: expected one of {names}, got {split!r}")
    whole = load_corpus(name, allow_download=allow_download)
    a, b = split_blocks(len(whole))[names.index(split)]
    return Corpus(whole.text[a:b], f"{whole.source}, {split} block [{a:,}, {b:,}) of {len(whole):,} characters")


def split_blocks(n: int, shares: tuple[float, ...] = SPLIT) -> list[tuple[int, int]]:
    """[start, end) of each contiguous block of `n` items, in order, sized by `shares` (the last takes the rest).

    >>> split_blocks(100)
    [(0, 90), (90, 95), (95, 100)]
    """
    if abs(sum(shares) - 1) > 1e-9 or min(shares) <= 0:
        raise ValueError(f"split shares must be positive and sum to 1, got {shares}")
    bounds = [0]
    for s in shares[:-1]:
        bounds.append(bounds[-1] + int(round(n * s)))
    bounds.append(n)
    blocks = list(zip(bounds[:-1], bounds[1:], strict=True))
    if any(b - a < 2 for a, b in blocks):
        raise ValueError(f"{n} items are too few to split into blocks of shares {shares} (each needs >= 2)")
    return blocks


def describe_split(n: int, unit: str = "characters", shares: tuple[float, ...] = SPLIT) -> str:
    """The split in words, for the summary."""
    names = ("train", "validation", "test")
    parts = [f"{name} [{a:,}, {b:,}) ({b - a:,})" for name, (a, b) in zip(names, split_blocks(n, shares), strict=True)]
    return f"contiguous blocks of the {n:,} {unit}: " + ", ".join(parts)
