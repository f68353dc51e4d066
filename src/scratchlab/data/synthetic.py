"""Synthetic sequence tasks: palindromes, binary addition, and a sentence to memorise. All seeded.

Every generator takes a `numpy.random.Generator` (or a seed) and nothing else random, so a batch is a pure
function of its seed: `batch_rng(seed, step)` gives step `step` of a run its own stream, which makes a
resumed run draw exactly the batches the uninterrupted run would have drawn.

Palindromes (the course's PalindromeDataset). A palindrome of length T: the left half, ceil(T/2) uniform
random digits, then its mirror image (without the middle digit when T is odd). The input is the first T-1
digits, the target the last digit, which equals the first: the network has to carry one digit across T-1
steps of distractors. T = 5:

    digits  3 1 4 1 3      input 3 1 4 1 (one-hot (4, 10) or raw values (4, 1))     target 3

Binary addition, least significant bit first, one extra step for the final carry. 6 + 3 = 9 on 3 bits:

    a = 6   0 1 1 0        x[:, 0] = a's bits, x[:, 1] = b's bits      (T = bits + 1 = 4 steps, 2 inputs)
    b = 3   1 1 0 0
    sum 9   1 0 0 1        y = the sum's bits, one per step

The sentence task: a string to reproduce character by character. "hello" with vocabulary "ehlo":

    ids  1 0 2 2 3         input ids[:-1] = 1 0 2 2     target ids[1:] = 0 2 2 3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Encoding = Literal["one-hot", "value"]
N_DIGITS = 10


def batch_rng(seed: int, step: int) -> np.random.Generator:
    """An independent random stream for (run seed, step): same seed and step, same batch."""
    return np.random.default_rng([int(seed) % 2**63, int(step)])


def _rng(rng: np.random.Generator | int) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ---------------------------------------------------------------------------------------------- palindromes

def palindromes(n: int, length: int, rng: np.random.Generator | int) -> np.ndarray:
    """`n` palindromes of `length` digits, int64 (n, length): ceil(T/2) uniform digits, then mirrored.

    >>> palindromes(2, 5, 0).tolist()
    [[8, 6, 5, 6, 8], [2, 3, 0, 3, 2]]
    """
    if length < 2:
        raise ValueError(f"palindrome length must be >= 2 (an input and a target), got {length}")
    left = _rng(rng).integers(0, N_DIGITS, size=(n, (length + 1) // 2))
    right = left[:, ::-1] if length % 2 == 0 else left[:, -2::-1]
    return np.concatenate([left, right], axis=1).astype(np.int64)


def encode_digits(digits: np.ndarray, encoding: Encoding = "one-hot") -> np.ndarray:
    """Digits (N, L) -> float32 inputs: one-hot (N, L, 10), or the raw digit value (N, L, 1) as in the course.

    >>> encode_digits(np.array([[3, 0]]), "value").tolist()
    [[[3.0], [0.0]]]
    >>> encode_digits(np.array([[3]]))[0, 0].tolist()
    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    if encoding == "one-hot":
        return np.eye(N_DIGITS, dtype=np.float32)[digits]
    if encoding == "value":
        return digits.astype(np.float32)[..., None]
    raise ValueError(f"encoding must be 'one-hot' or 'value', got {encoding!r}")


@dataclass
class PalindromeDataset:
    """Palindrome batches of length T: inputs (N, T-1, D) float32, targets (N,) int64 (the last digit).

    D is 10 for one-hot inputs and 1 for raw digit values. A batch is drawn from the generator it is given;
    `test_set(n, seed)` is a fixed, seeded set (use a seed other than the training one).

    >>> x, y = PalindromeDataset(5, "value").batch(1, 0)
    >>> x[0, :, 0].tolist(), y.tolist()
    ([8.0, 6.0, 5.0, 6.0], [8])
    """

    length: int
    encoding: Encoding = "one-hot"

    @property
    def input_size(self) -> int:
        return N_DIGITS if self.encoding == "one-hot" else 1

    def split(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full palindromes (N, T) -> (encoded first T-1 digits, last digit)."""
        return encode_digits(digits[:, :-1], self.encoding), digits[:, -1].copy()

    def batch(self, n: int, rng: np.random.Generator | int) -> tuple[np.ndarray, np.ndarray]:
        return self.split(palindromes(n, self.length, rng))

    def test_set(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return self.batch(n, np.random.default_rng(seed))


# ---------------------------------------------------------------------------------------------- binary addition

def to_bits(values: np.ndarray, steps: int) -> np.ndarray:
    """Non-negative ints (N,) -> bits (N, steps), least significant first.

    >>> to_bits(np.array([6]), 4).tolist()
    [[0, 1, 1, 0]]
    """
    values = np.asarray(values, dtype=np.uint64)
    shifts = np.arange(steps, dtype=np.uint64)
    return ((values[:, None] >> shifts) & np.uint64(1)).astype(np.int64)


def from_bits(bits: np.ndarray) -> np.ndarray:
    """Bits (N, steps), least significant first -> Python ints (object array: exact beyond 64 bits).

    >>> from_bits(np.array([[1, 0, 0, 1]])).tolist()
    [9]
    """
    weights = np.array([1 << i for i in range(bits.shape[1])], dtype=object)
    return (bits.astype(object) * weights).sum(axis=1)


def addition_batch(n: int, bits: int, rng: np.random.Generator | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` random additions of `bits`-bit numbers (uniform in [0, 2**bits)), LSB first, bits + 1 steps.

    Returns x float32 (n, bits + 1, 2) (a's and b's bits), y int64 (n, bits + 1) (the sum's bits) and the
    operands int64 (n, 2). Needs bits <= 62 so that sums fit in int64.

    >>> x, y, ab = addition_batch(1, 3, 0)
    >>> ab.tolist(), x[0].T.tolist(), y.tolist()
    ([[6, 5]], [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]], [[1, 1, 0, 1]])
    """
    if not 1 <= bits <= 62:
        raise ValueError(f"bits must be in 1..62, got {bits}")
    ab = _rng(rng).integers(0, 2**bits, size=(n, 2), dtype=np.int64)
    steps = bits + 1  # the last step reads zeros and writes the final carry
    x = np.stack([to_bits(ab[:, 0], steps), to_bits(ab[:, 1], steps)], axis=-1).astype(np.float32)
    y = to_bits(ab.sum(axis=1), steps)
    return x, y, ab


def all_pairs(bits: int) -> np.ndarray:
    """Every pair (a, b) of `bits`-bit numbers, int64 (4**bits, 2): the exhaustive test set."""
    a, b = np.meshgrid(np.arange(2**bits), np.arange(2**bits), indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------- sentence

@dataclass
class CharVocab:
    """Characters <-> ids; the vocabulary is the text's sorted distinct characters.

    >>> v = CharVocab.of("hello"); v.chars, v.encode("hello").tolist()
    ('ehlo', [1, 0, 2, 2, 3])
    """

    chars: str

    @classmethod
    def of(cls, text: str) -> CharVocab:
        if not text:
            raise ValueError("the text to memorise is empty")
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        missing = sorted(set(text) - set(index))
        if missing:
            raise ValueError(f"characters {missing} are not in the vocabulary {self.chars!r}")
        return np.array([index[c] for c in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def next_char_task(text: str) -> tuple[CharVocab, np.ndarray, np.ndarray]:
    """The sentence task: (vocab, input ids (L-1,), target ids (L-1,)); target t is the character after input t."""
    vocab = CharVocab.of(text)
    ids = vocab.encode(text)
    if len(ids) < 2:
        raise ValueError(f"the text to memorise needs at least 2 characters, got {text!r}")
    return vocab, ids[:-1], ids[1:]
