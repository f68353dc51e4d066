"""The hand-set binary adder against Python's integer addition (exhaustively on 8-bit pairs) and a hand trace."""

import random

import pytest
import torch

from scratchlab.cli import main
from scratchlab.rnn import BinaryAdderRNN


def test_all_pairs_of_8_bit_numbers():
    adder = BinaryAdderRNN()
    a, b = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    a, b = a.flatten(), b.flatten()
    shifts = torch.arange(9)  # 8 bits + the extra step for the final carry
    bits = torch.stack([(a[:, None] >> shifts) & 1, (b[:, None] >> shifts) & 1], dim=2)  # (65536, 9, 2)
    y, hidden = adder(bits)
    total = (y.long() << shifts).sum(dim=1)
    assert torch.equal(total, a + b), f"{(total != a + b).sum()} of 65536 sums wrong"
    assert hidden.shape == (65536, 9, 3)


def test_add_on_ints_of_any_width():
    adder = BinaryAdderRNN()
    rng = random.Random(0)
    pairs = [(0, 0), (1, 1), (255, 255), (2**40 - 1, 1), (0, 12345)]
    pairs += [(rng.getrandbits(rng.randint(1, 64)), rng.getrandbits(rng.randint(1, 64))) for _ in range(100)]
    for a, b in pairs:
        assert adder.add(a, b) == a + b, (a, b)


def test_hidden_states_by_hand():
    # 39 + 50 = 89: a = 100111, b = 110010, least significant bit first, one extra step.
    # column: a b carry -> s = a+b+carry -> h = ([s>=1], [s>=2], [s=3]), y = s mod 2
    expected = [
        (1, 0, [1, 0, 0], 1),  # s = 1
        (1, 1, [1, 1, 0], 0),  # s = 2, carry out
        (1, 0, [1, 1, 0], 0),  # s = 1 + 1 carry = 2, carry out
        (0, 0, [1, 0, 0], 1),  # s = 0 + 1 carry = 1
        (0, 1, [1, 0, 0], 1),  # s = 1
        (1, 1, [1, 1, 0], 0),  # s = 2, carry out
        (0, 0, [1, 0, 0], 1),  # extra step: s = carry = 1
    ]
    trace = BinaryAdderRNN().trace(39, 50)
    assert [(r["a"], r["b"], r["h"], r["y"]) for r in trace] == expected
    assert [r["step"] for r in trace] == list(range(7))
    # 3 + 3 = 6 exercises the "s = 3" unit: column 1 is 1 + 1 + carry 1
    assert [r["h"] for r in BinaryAdderRNN().trace(3, 3)] == [[1, 1, 0], [1, 1, 1], [1, 0, 0]]


def test_cli_add(capsys):
    assert main(["add", "100111", "110010"]) == 0
    assert capsys.readouterr().out == "1011001\n"


def test_cli_add_trace(capsys):
    assert main(["add", "11", "11", "--trace"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "110"
    rows = [r for r in map(str.split, lines[:-1]) if len(r) == 8 and r[0].isdigit()]
    # step a b carry h1 h2 h3 y
    assert rows == [["0", "1", "1", "0", "1", "1", "0", "0"], ["1", "1", "1", "1", "1", "1", "1", "1"],
                    ["2", "0", "0", "1", "1", "0", "0", "1"]]


def test_bad_input():
    adder = BinaryAdderRNN()
    with pytest.raises(ValueError, match="non-negative ints"):
        adder.add(-1, 2)
    with pytest.raises(ValueError, match=r"\(L, 2\) or \(N, L, 2\), got \[4, 3\]"):
        adder(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="0 or 1"):
        adder(torch.full((4, 2), 2))
    assert main(["add", "102", "1"]) == 1
