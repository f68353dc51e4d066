"""Synthetic sequence data. References: hand-built examples, Python's int arithmetic and string formatting."""

import doctest

import numpy as np
import pytest

from scratchlab.data import synthetic as S


@pytest.mark.parametrize("length", [2, 3, 5, 10, 11, 50])
def test_every_sample_is_a_palindrome_and_the_target_is_the_first_digit(length):
    digits = S.palindromes(2000, length, 7)
    assert digits.shape == (2000, length) and digits.dtype == np.int64
    assert (digits == digits[:, ::-1]).all()
    assert digits.min() >= 0 and digits.max() <= 9
    ds = S.PalindromeDataset(length, "value")
    x, y = ds.split(digits)
    assert (y == digits[:, 0]).all() and (x[:, 0, 0] == digits[:, 0]).all()


def test_left_half_is_uniform_random_digits():
    left = S.palindromes(20000, 16, 1)[:, :8]
    counts = np.bincount(left.ravel(), minlength=10) / left.size
    assert np.abs(counts - 0.1).max() < 0.01  # 160,000 draws: the standard error is ~0.001
    assert len({tuple(r) for r in left}) > 19900  # 10**8 possible halves: repeats are rare


def test_encodings_against_hand_built_examples():
    digits = np.array([[3, 1, 4, 1, 3], [0, 9, 9, 9, 0]])
    x, y = S.PalindromeDataset(5, "one-hot").split(digits)
    expected = np.zeros((2, 4, 10), dtype=np.float32)
    for n, row in enumerate([[3, 1, 4, 1], [0, 9, 9, 9]]):
        for t, d in enumerate(row):
            expected[n, t, d] = 1.0
    assert x.dtype == np.float32 and np.array_equal(x, expected)
    assert y.tolist() == [3, 0]
    x, y = S.PalindromeDataset(5, "value").split(digits)
    assert x.shape == (2, 4, 1) and x[:, :, 0].tolist() == [[3, 1, 4, 1], [0, 9, 9, 9]]
    assert S.PalindromeDataset(5, "value").input_size == 1 and S.PalindromeDataset(5).input_size == 10


def test_palindrome_shapes_for_even_and_odd_lengths():
    assert S.palindromes(1, 4, 0)[0].tolist() == [8, 6, 6, 8]  # ceil(4/2) = 2 random digits, mirrored
    assert S.palindromes(1, 5, 0)[0].tolist() == [8, 6, 5, 6, 8]  # 3 random digits, middle one not repeated


def test_seeded_and_independent_streams():
    ds = S.PalindromeDataset(10)
    a, b = ds.batch(64, S.batch_rng(3, 5)), ds.batch(64, S.batch_rng(3, 5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = ds.batch(64, S.batch_rng(3, 6))
    assert not np.array_equal(a[0], c[0])
    assert np.array_equal(ds.test_set(100, 9)[0], ds.test_set(100, 9)[0])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="length must be >= 2"):
        S.palindromes(1, 1, 0)
    with pytest.raises(ValueError, match="encoding must be"):
        S.encode_digits(np.zeros((1, 2), dtype=np.int64), "binary")
    with pytest.raises(ValueError, match="bits must be in 1..62"):
        S.addition_batch(1, 63, 0)
    with pytest.raises(ValueError, match=r"not in the vocabulary 'ab'"):
        S.CharVocab("ab").encode("abc")


@pytest.mark.parametrize("bits", [1, 3, 8, 32])
def test_addition_batches_decode_to_python_sums(bits):
    x, y, ab = S.addition_batch(500, bits, 2)
    assert x.shape == (500, bits + 1, 2) and y.shape == (500, bits + 1)
    for (a, b), xs, ys in zip(ab.tolist(), x.astype(int), y, strict=True):
        lsb_first = lambda v: format(v, f"0{bits + 1}b")[::-1]  # noqa: E731
        assert "".join(map(str, xs[:, 0])) == lsb_first(a)
        assert "".join(map(str, xs[:, 1])) == lsb_first(b)
        assert "".join(map(str, ys)) == lsb_first(a + b)


def test_hand_built_addition_example():
    # 6 + 3 = 9: LSB first, 3 bits + 1 carry step
    assert S.to_bits(np.array([6, 3, 9]), 4).tolist() == [[0, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]]
    assert S.from_bits(np.array([[1, 0, 0, 1], [0, 0, 0, 0]])).tolist() == [9, 0]
    big = 2**40 + 12345
    assert S.from_bits(S.to_bits(np.array([big]), 45)).tolist() == [big]


def test_all_pairs_is_exhaustive():
    pairs = S.all_pairs(3)
    assert len(pairs) == 64 and len({tuple(p) for p in pairs.tolist()}) == 64
    assert pairs.min() == 0 and pairs.max() == 7


def test_sentence_task():
    vocab, x, y = S.next_char_task("hello")
    assert vocab.chars == "ehlo"
    assert vocab.decode(x) == "hell" and vocab.decode(y) == "ello"
    assert vocab.decode(vocab.encode("hole")) == "hole"


def test_docstring_examples():
    result = doctest.testmod(S)
    assert result.attempted >= 7 and result.failed == 0
