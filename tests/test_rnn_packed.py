"""PackedSequence in and out of scratchlab.rnn.{RNN, LSTM, GRU}, against torch.nn and against each sequence run alone.

Each case packs a padded batch with random lengths (always including a length-1 sequence, and a batch of equal
lengths), runs torch.nn's layer and ours with the same weights on it, and compares the packed outputs, the
final states (in the caller's batch order), and the gradients of the input, the initial states and every
parameter: float32 to 1e-5 and float64 to 1e-10, as the padded tests. Both impls, and for the fast path each
kernel (the packed AVX-512 kernel, the LSTM's library kernel, the Python loops) on the same batches. A second
reference needs no torch.nn: every sequence of a packed batch gives what it gives run alone, unpadded, so the
reverse direction starts at each sequence's own last step.
"""

import random

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from scratchlab import rnn
from scratchlab.rnn import fast
from scratchlab.rnn._gemm import use_onednn

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
I, H = 4, 20  # hidden 20: the packed kernel's last group of 16 units is padded
NAMES = ["RNN", "LSTM", "GRU"]
LENGTHS = [[5, 1, 3, 5, 2, 4, 1], [3, 3, 3], [1], [1, 1], [7, 2]]


def random_lengths(seed: int, batch: int = 9, longest: int = 8) -> list[int]:
    rng = random.Random(seed)
    return [1] + [rng.randint(1, longest) for _ in range(batch - 1)]


def run(module, x, lengths, hx, *, batch_first, enforce_sorted):
    """Pack, run, backward of a fixed projection of the packed output plus the squares of the final states; returns
    the output PackedSequence, the final states, and the gradients of x, the initial states and the parameters."""
    module.zero_grad()
    x = x.detach().requires_grad_()
    hx = tuple(h.detach().requires_grad_() for h in hx) if hx else ()
    lengths = torch.tensor(lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    state = None if not hx else (hx if len(hx) == 2 else hx[0])
    out, states = module(packed, state)
    states = states if isinstance(states, tuple) else (states,)
    probe = torch.linspace(-1, 1, out.data.numel(), dtype=x.dtype).view_as(out.data)
    ((out.data * probe).sum() + sum((s * s).sum() for s in states)).backward()
    grads = [x.grad, *(h.grad for h in hx), *(p.grad for p in module.parameters())]
    return out, states, grads


def compare(name, dtype, lengths, impl="fast", batch_first=False, enforce_sorted=False, given_state=True,
            **kw):
    torch.manual_seed(0)
    kw = {"num_layers": 2, "bidirectional": True, **kw}
    theirs = getattr(torch.nn, name)(I, H, batch_first=batch_first, dtype=dtype, **kw)
    mine = getattr(rnn, name)(I, H, batch_first=batch_first, dtype=dtype, impl=impl, **kw)
    mine.load_state_dict(theirs.state_dict())
    theirs.eval(), mine.eval()                              # dropout (if any) off in both
    if enforce_sorted:
        lengths = sorted(lengths, reverse=True)
    B, T = len(lengths), max(lengths)  # noqa: N806
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype)
    D = 2 if kw["bidirectional"] else 1  # noqa: N806
    hx = [torch.randn(kw["num_layers"] * D, B, H, dtype=dtype) for _ in range(2 if name == "LSTM" else 1)] \
        if given_state else []
    (o1, s1, g1), (o2, s2, g2) = (run(m, x, lengths, hx, batch_first=batch_first, enforce_sorted=enforce_sorted)
                                  for m in (mine, theirs))
    assert isinstance(o1, PackedSequence)
    assert torch.equal(o1.batch_sizes, o2.batch_sizes)
    for a, b in ((o1.sorted_indices, o2.sorted_indices), (o1.unsorted_indices, o2.unsorted_indices)):
        assert (a is None and b is None) or torch.equal(a, b)
    what = f"{name} {impl} {dtype} lengths={lengths}"
    pairs = [(o1.data, o2.data, "output"), *((a, b, "final state") for a, b in zip(s1, s2, strict=True)),
             *((a, b, "gradient") for a, b in zip(g1, g2, strict=True))]
    for a, b, label in pairs:
        torch.testing.assert_close(a, b, atol=TOL[dtype], rtol=0, msg=lambda m, label=label: f"{what} {label}: {m}")


@pytest.fixture(params=["default", "library", "python"])
def kernel(request, monkeypatch):
    """Which fast-path kernel runs: the default choice (the packed kernel for float32 where the extension has it),
    the LSTM's library kernel (per-step oneDNN / at::mm products; GRU and RNN then run the Python loops), or the
    Python loops (CUDA's path)."""
    if request.param == "library":
        monkeypatch.setattr(fast, "_step_kernel", lambda ops, x, H: int(use_onednn(x)))  # noqa: ARG005
    elif request.param == "python":
        monkeypatch.setattr(fast, "_compiled", lambda x: None)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_packed_equals_torch_with_every_kernel(name, dtype, kernel):
    for lengths in LENGTHS + [random_lengths(seed) for seed in range(2)]:
        compare(name, dtype, lengths)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_packed_reference_impl_equals_torch(name, dtype):
    for lengths in LENGTHS + [random_lengths(seed) for seed in range(2)]:
        compare(name, dtype, lengths, impl="reference")


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kw", [
    {"enforce_sorted": True},
    {"batch_first": True},
    {"given_state": False},
    {"num_layers": 1, "bidirectional": False},
    {"num_layers": 3, "bidirectional": False},
    {"bias": False},
    {"num_layers": 2, "dropout": 0.5},                     # eval mode in torch's and ours alike: no dropout
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_packed_options_equal_torch(name, impl, kw):
    kw = {"bidirectional": True, **kw}
    for lengths in (random_lengths(3), [4, 4, 4, 4]):
        compare(name, torch.float64, lengths, impl=impl, **kw)


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_each_packed_sequence_equals_it_run_alone(name, impl):
    """Independent of torch.nn: row b of the padded output equals the layer on x[b, :len_b] alone (both directions,
    so the reverse one starts at each sequence's own last step), zeros after it; h_n[:, b] equals its h_n."""
    torch.manual_seed(0)
    m = getattr(rnn, name)(I, H, num_layers=2, bidirectional=True, batch_first=True, dtype=torch.float64, impl=impl)
    lengths = [3, 7, 1, 5]
    x = torch.randn(4, 7, I, dtype=torch.float64)
    with torch.no_grad():
        out, states = m(pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False))
        padded, got_lengths = pad_packed_sequence(out, batch_first=True)
        assert got_lengths.tolist() == lengths
        states = states if isinstance(states, tuple) else (states,)
        for b, n in enumerate(lengths):
            alone, alone_states = m(x[b:b + 1, :n])
            alone_states = alone_states if isinstance(alone_states, tuple) else (alone_states,)
            torch.testing.assert_close(padded[b, :n], alone[0], atol=1e-12, rtol=0)
            assert (padded[b, n:] == 0).all()
            for s, a in zip(states, alone_states, strict=True):
                torch.testing.assert_close(s[:, b], a[:, 0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_packed_fast_path_on_a_long_ragged_batch_matches_float64(name):
    """40 sequences of lengths 1-60: the fast path in float32 (the packed kernel) against the readable path in
    float64, every value within 2e-5 of its tensor's largest (float32's rounding over sums of ~1000 rows; two
    correct float32 implementations differ by about 1e-5 there)."""
    torch.manual_seed(0)
    lengths = random_lengths(7, batch=40, longest=60)
    m = getattr(rnn, name)(I, 32, num_layers=2, bidirectional=True)
    ref = getattr(rnn, name)(I, 32, num_layers=2, bidirectional=True, dtype=torch.float64, impl="reference")
    ref.load_state_dict({k: v.double() for k, v in m.state_dict().items()})
    x = torch.randn(60, 40, I, dtype=torch.float64)
    results = []
    for module, xi in ((m, x.float()), (ref, x)):
        out, states, grads = run(module, xi, lengths, (), batch_first=False, enforce_sorted=False)
        results.append([out.data, *states, *grads])
    for a, b in zip(*results, strict=True):
        assert (a.double() - b).abs().max() <= 2e-5 * b.abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_packed_input_errors(name):
    m = getattr(rnn, name)(I, H)
    with pytest.raises(RuntimeError, match=f"Expected {I}, got {I + 1}"):
        m(pack_padded_sequence(torch.randn(3, 2, I + 1), torch.tensor([3, 2])))
    bad = torch.randn(1, 3, H)                              # the batch is 2
    with pytest.raises(RuntimeError, match=r"Expected hidden(\[0\])? size \(1, 2, 20\), got \[1, 3, 20\]"):
        m(pack_padded_sequence(torch.randn(3, 2, I), torch.tensor([3, 2])), (bad, bad) if name == "LSTM" else bad)
