"""LSTM(proj_size=P) and torch.autocast against torch.nn.

proj_size: torch.nn.LSTM's names, shapes, order and init (weight_hr_l{k} (P, H) after the biases, h of size P, c of
size H), state dicts both ways, outputs, final states and every gradient (float32 1e-5, float64 1e-10), padded and
packed, with both impls (which both run the readable path: the fast kernels have no projection).

autocast: under torch.autocast("cpu", dtype=torch.bfloat16) the layers return what torch.nn's return (dtypes of the
output and the states), and their values and gradients lie within bf16's tolerance of torch.nn's: 2e-2 of each
tensor's largest value, about 5 bf16 roundings (2^-8). Inside, ours computes in the weights' float32 (measured:
0.5-1% of torch.nn's bf16 results, which are themselves 0.1-0.7% from float32).
"""

import math

import pytest
import torch
from scipy import stats
from torch.nn.utils.rnn import pack_padded_sequence

from scratchlab import rnn

# torch.nn.LSTM's own warning when it falls back from oneDNN for projections
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
L, N, I, H, P = 5, 3, 4, 6, 3


def results_and_grads(module, x, states):
    module.zero_grad()
    x = x.detach().requires_grad_() if isinstance(x, torch.Tensor) else x
    states = tuple(s.detach().requires_grad_() for s in states) if states else None
    out, (h, c) = module(x, states)
    data = out.data if hasattr(out, "batch_sizes") else out
    g = torch.Generator().manual_seed(1)
    ((data * torch.randn(data.shape, generator=g, dtype=data.dtype)).sum() + h.square().sum() + c.sum()).backward()
    grads = [s.grad for s in states] if states else []
    if isinstance(x, torch.Tensor):
        grads.append(x.grad)
    return [data, h, c, *grads, *(p.grad for p in module.parameters())]


def proj_pair(dtype, impl="fast", **kw):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(I, H, proj_size=P, dtype=dtype, **kw)
    ours = rnn.LSTM(I, H, proj_size=P, dtype=dtype, impl=impl, **kw)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True}, {"batch_first": True, "num_layers": 2},
                                {"bias": False}], ids=["default", "2-layer-bidirectional", "batch_first", "no-bias"])
def test_proj_equals_torch(kw, impl, dtype):
    ours, theirs = proj_pair(dtype, impl, **kw)
    d = (2 if kw.get("bidirectional") else 1) * kw.get("num_layers", 1)
    x = torch.randn((N, L, I) if kw.get("batch_first") else (L, N, I), dtype=dtype)
    states = (torch.randn(d, N, P, dtype=dtype), torch.randn(d, N, H, dtype=dtype))
    got, want = results_and_grads(ours, x, states), results_and_grads(theirs, x, states)
    assert got[1].shape == (d, N, P) and got[2].shape == (d, N, H)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_proj_packed_and_unbatched_equal_torch(impl):
    ours, theirs = proj_pair(torch.float64, impl, num_layers=2, bidirectional=True)
    x = torch.randn(L, N, I, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([2, 5, 1]), enforce_sorted=False)
    states = (torch.randn(4, N, P, dtype=torch.float64), torch.randn(4, N, H, dtype=torch.float64))
    for a, b in zip(results_and_grads(ours, packed, states), results_and_grads(theirs, packed, states), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    with torch.no_grad():
        (o1, (h1, c1)), (o2, (h2, c2)) = ours(x[:, 0]), theirs(x[:, 0])
    for a, b in ((o1, o2), (h1, h2), (c1, c2)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_proj_names_shapes_init_and_state_dicts_match_torch():
    torch.manual_seed(0)
    ours, theirs = rnn.LSTM(10, 64, 2, bidirectional=True, proj_size=16), \
        torch.nn.LSTM(10, 64, 2, bidirectional=True, proj_size=16)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    bound = 1 / math.sqrt(64)
    values = torch.cat([p.detach().flatten() for p in ours.parameters()])
    assert values.abs().max() <= bound
    assert stats.kstest(values.numpy(), stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-3
    theirs.load_state_dict(ours.state_dict())               # both ways
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(L, N, 10)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-5, rtol=0)
    assert "proj_size=16" in repr(ours)


def test_proj_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        rnn.LSTM(I, H, proj_size=H)
    with pytest.raises(ValueError, match="proj_size should be a positive integer or zero"):
        rnn.LSTM(I, H, proj_size=-1)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
        rnn.GRU(I, H, proj_size=2)
    m = rnn.LSTM(I, H, proj_size=P)
    bad = (torch.randn(1, N, H), torch.randn(1, N, H))      # h must be P wide
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(1, 3, 3\), got \[1, 3, 6\]"):
        m(torch.randn(L, N, I), bad)


# ---------------------------------------------------------------- autocast
def autocast_run(module, x):
    module.zero_grad()
    x = x.detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, states = module(x)
    states = states if isinstance(states, tuple) else (states,)
    (out.float().square().sum() + sum(s.float().sum() for s in states)).backward()
    return [out, *states, x.grad, *(p.grad for p in module.parameters())]


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_autocast_bfloat16_matches_torch(name, impl):
    if name == "LSTM" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("torch.nn.LSTM under bf16 autocast runs oneDNN's bf16 kernel, which this CPU lacks (no AVX512-BF16 "
                    "or AMX): torch raises, so there is no reference here")
    torch.manual_seed(0)
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": True}
    theirs = getattr(torch.nn, name)(8, 16, **kw)
    ours = getattr(rnn, name)(8, 16, impl=impl, **kw)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 10, 8)
    got, want = autocast_run(ours, x), autocast_run(theirs, x)
    assert [t.dtype for t in got] == [t.dtype for t in want]
    for a, b in zip(got, want, strict=True):
        assert (a.float() - b.float()).abs().max() <= 2e-2 * b.float().abs().max()


def test_autocast_accepts_bfloat16_input_and_compiles():
    """A bf16 input (what an autocast layer before the LSTM hands on) is accepted under autocast, as torch.nn does,
    and refused without it; the compiled layer under autocast equals eager."""
    torch.manual_seed(0)
    m = rnn.LSTM(8, 16, batch_first=True)
    x = torch.randn(4, 10, 8).bfloat16()
    with pytest.raises(ValueError, match=r"input dtype \(torch.bfloat16\) does not match weight dtype"):
        m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eager = m(x)[0]
        compiled = torch.compile(m, backend="aot_eager", fullgraph=True)(x)[0]
    assert eager.dtype == compiled.dtype == torch.bfloat16
    assert torch.equal(eager, compiled)
