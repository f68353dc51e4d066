"""Text pipeline for sentiment classification: clean, tokenise, build a vocabulary, encode, pad.

    "<b>Great</b> film, 10/10!<br />Didn't expect it."
      clean     -> "great film didnt expect it"           lowercase, tags out, digits/punctuation out
      tokenise  -> ["great", "film", "didnt", "expect", "it"]
      options   -> stop words out (scikit-learn's ENGLISH_STOP_WORDS), Porter stems (nltk's PorterStemmer)
      encode    -> [57, 19, 1, 803, 12]                   <pad> = 0, <unk> = 1, words by frequency from 2
      pad       -> [0, 0, ..., 0, 57, 19, 1, 803, 12]     length 400, padding *before* the review

Padding goes before the review so a recurrent model's last step is the review's last word. Reviews longer
than `length` lose their beginning ("pre" truncation, as Keras' `pad_sequences`): the ends of reviews carry the
verdict ("... 8/10, recommended"). Both word lists come from installed packages; nothing is downloaded.
The vocabulary and the settings are saved as one JSON file beside the model, so `predict` encodes text
exactly as training did.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

PAD, UNK = 0, 1
SPECIALS = ["<pad>", "<unk>"]

_TAG = re.compile(r"<[^>]*>")
_APOSTROPHE = re.compile(r"['\u2019]")  # "didn't" -> "didnt": one word, not "didn" + "t"
_WORD = re.compile(r"[^\W\d_]+")  # runs of letters (any alphabet); digits, punctuation and "_" separate words


@dataclass
class TextSettings:
    """How text becomes ids. Saved with the vocabulary; changing one after training changes the model's input."""

    stop_words: bool = False  # drop scikit-learn's 318 English stop words (note: that list includes "not", "no")
    stem: bool = False        # reduce words to Porter stems ("movies" -> "movi")
    min_freq: int = 2         # a word seen fewer times in training text becomes <unk>
    max_size: int = 20000     # most ids, <pad> and <unk> included; the most frequent words win
    length: int = 400         # every review is padded or truncated to this many ids
    truncate: str = "pre"     # "pre": drop the beginning of long reviews; "post": drop the end

    def __post_init__(self):
        if self.min_freq < 1:
            raise ValueError(f"min_freq: expected >= 1, got {self.min_freq}")
        if self.max_size < len(SPECIALS):
            raise ValueError(f"max_size: expected >= {len(SPECIALS)} (<pad> and <unk>), got {self.max_size}")
        if self.length < 1:
            raise ValueError(f"length: expected >= 1, got {self.length}")
        if self.truncate not in ("pre", "post"):
            raise ValueError(f"truncate: expected 'pre' or 'post', got {self.truncate!r}")


def clean(text: str) -> str:
    """Lowercase, replace HTML tags by spaces, drop apostrophes, keep only runs of letters separated by spaces."""
    text = _APOSTROPHE.sub("", _TAG.sub(" ", text.lower()))
    return " ".join(_WORD.findall(text))


@cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@cache
def _stemmer():
    from nltk.stem.porter import PorterStemmer  # pure Python rules: no corpus download

    return PorterStemmer()


@cache
def _stem(word: str) -> str:
    return _stemmer().stem(word)


def tokenize(text: str, settings: TextSettings | None = None) -> list[str]:
    """Clean, split, then the optional stop-word removal and stemming."""
    settings = settings or TextSettings()
    words = clean(text).split()
    if settings.stop_words:
        stop = _stop_words()
        words = [w for w in words if w not in stop]
    if settings.stem:
        words = [_stem(w) for w in words]
    return words


def build_vocab(token_lists: Iterable[list[str]], min_freq: int, max_size: int) -> list[str]:
    """Words in id order: <pad>, <unk>, then words seen >= min_freq times, most frequent first (ties: a-z).

    At most `max_size` entries in all; the alphabetical tie-break makes the vocabulary independent of the
    order the reviews were read in.
    """
    counts = Counter(w for tokens in token_lists for w in tokens)
    kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return SPECIALS + kept[: max(0, max_size - len(SPECIALS))]


def pad(ids: list[list[int]], length: int, truncate: str = "pre") -> np.ndarray:
    """(N, length) int64: each row is zeros (<pad>) then the ids; too-long rows lose the start ("pre") or end."""
    out = np.full((len(ids), length), PAD, dtype=np.int64)
    for i, row in enumerate(ids):
        row = row[-length:] if truncate == "pre" else row[:length]
        if row:
            out[i, length - len(row):] = row
    return out


@dataclass
class Vocabulary:
    """Settings + words in id order; encodes raw text to padded id rows."""

    settings: TextSettings
    words: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        if self.words[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, found {self.words[:2]}")
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary has repeated words")

    @classmethod
    def fit(cls, texts: Iterable[str], settings: TextSettings | None = None) -> Vocabulary:
        """The vocabulary of training texts (never of validation or test text)."""
        settings = settings or TextSettings()
        words = build_vocab((tokenize(t, settings) for t in texts), settings.min_freq, settings.max_size)
        return cls(settings, words)

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, text: str) -> list[int]:
        """Unpadded ids of one text. A text with no words becomes [<unk>]: no row is all padding, so attention
        always has a position to look at."""
        ids = [self.index.get(w, UNK) for w in tokenize(text, self.settings)]
        return ids or [UNK]

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """(N, length) int64, left padded."""
        return pad([self.ids(t) for t in texts], self.settings.length, self.settings.truncate)

    def decode(self, row: Iterable[int]) -> list[str]:
        """Words of one id row, padding dropped (for figures and `predict`)."""
        return [self.words[i] for i in row if i != PAD]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"settings": asdict(self.settings), "words": self.words}))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(TextSettings(**data["settings"]), list(data["words"]))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no vocabulary here (written by training beside checkpoint.pt)") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a scratchlab vocabulary file ({type(e).__name__}: {e})") from None
