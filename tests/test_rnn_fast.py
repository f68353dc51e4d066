"""rnn.fast against independent references: torch.nn's layers (outputs, final states and the gradients of inputs,
initial states and parameters), torch.autograd.gradcheck in float64, and the layers' readable path.

torch.nn.LSTM/GRU/RNN are built bidirectional so that both run orders (reverse=False/True) are compared with the
weights torch itself uses for them; each direction of ours is one call of rnn.fast.*_direction.
"""

import pytest
import torch

from scratchlab import rnn
from scratchlab.rnn import fast, ops
from scratchlab.rnn._gemm import _addmm, sequence_linear, use_onednn

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
L, N, I, H = 6, 3, 4, 5
KINDS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def torch_module(kind, dtype, bias=True, i=I, h=H):
    torch.manual_seed(0)
    if kind == "lstm":
        return torch.nn.LSTM(i, h, bias=bias, bidirectional=True, dtype=dtype)
    if kind == "gru":
        return torch.nn.GRU(i, h, bias=bias, bidirectional=True, dtype=dtype)
    return torch.nn.RNN(i, h, bias=bias, bidirectional=True, nonlinearity=kind[4:], dtype=dtype)


def ours(kind, x, states, weights, reverse):
    """One direction of rnn.fast: returns (output, *final states)."""
    if kind == "lstm":
        return ops.lstm_direction(x, *states, *weights, reverse=reverse)
    if kind == "gru":
        return ops.gru_direction(x, *states, *weights, reverse=reverse)
    return ops.rnn_direction(x, *states, *weights, nonlinearity=kind[4:], reverse=reverse)


def compare_direction(kind, dtype, reverse, bias=True, sizes=(L, N, I, H), rtol=0.0):
    """One direction of ours against torch's, sizes (length, batch, input, hidden); TOL[dtype] absolute, plus rtol
    where the caller's sizes make values large enough for float32's rounding to exceed TOL on its own."""
    L, N, I, H = sizes  # noqa: N806 (the module's names, shadowed)
    m = torch_module(kind, dtype, bias, I, H)
    d, sfx = (1, "_reverse") if reverse else (0, "")
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    weights = [getattr(m, f"{n}_l0{sfx}") for n in names]
    x = torch.randn(L, N, I, dtype=dtype, requires_grad=True)
    n_states = 2 if kind == "lstm" else 1
    states = [torch.randn(2, N, H, dtype=dtype, requires_grad=True) for _ in range(n_states)]
    out, finals = m(x, tuple(states) if kind == "lstm" else states[0])
    finals = finals if kind == "lstm" else (finals,)
    theirs = [out[..., d * H:(d + 1) * H]] + [f[d] for f in finals]
    mine = ours(kind, x, [s[d] for s in states], weights + ([] if bias else [None, None]), reverse)
    probes = [torch.randn_like(t) for t in theirs]
    wrt = [x, *states, *weights]
    g_theirs = torch.autograd.grad(sum((t * p).sum() for t, p in zip(theirs, probes, strict=True)), wrt)
    g_mine = torch.autograd.grad(sum((t * p).sum() for t, p in zip(mine, probes, strict=True)), wrt)
    labels = ["output", "h_n", "c_n"][:len(theirs)] + ["d input"] + [f"d state{k}" for k in range(n_states)] + \
        [f"d {n}" for n in names]
    for a, b, what in zip(list(mine) + list(g_mine), theirs + list(g_theirs), labels, strict=True):
        torch.testing.assert_close(a, b, atol=TOL[dtype], rtol=rtol, msg=lambda msg, w=what: f"{kind} {w}: {msg}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_direction_equals_torch(kind, reverse, dtype):
    compare_direction(kind, dtype, reverse)


@pytest.mark.parametrize("kind", KINDS)
def test_direction_without_bias(kind):
    compare_direction(kind, torch.float64, reverse=False, bias=False)


@pytest.mark.skipif(not use_onednn(torch.zeros(1)), reason="oneDNN matmul not available in this torch build")
@pytest.mark.filterwarnings("ignore:TF32 acceleration")
@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_float32_without_the_packed_kernel_equals_torch(kind, onednn, monkeypatch):
    """float32 on CPU takes the compiled packed kernel where it exists (AVX-512). Where it does not, the LSTM takes
    its library kernel and the GRU and RNN the Python loops, with oneDNN's products, or torch.addmm's (CUDA's path
    too) when oneDNN is off: both are checked here with the packed kernel set aside."""
    monkeypatch.setattr(fast, "_step_kernel", lambda ops, x, H: int(use_onednn(x)))  # noqa: ARG005
    with torch.backends.mkldnn.flags(enabled=onednn):
        assert use_onednn(torch.zeros(1)) == onednn
        compare_direction(kind, torch.float32, reverse=True)


@pytest.mark.skipif(not use_onednn(torch.zeros(1)), reason="oneDNN matmul not available in this torch build")
@pytest.mark.parametrize("capability", ["AVX512", "AVX2"])
@pytest.mark.parametrize("kind", KINDS)
def test_products_after_the_loop_on_either_library_equal_torch(kind, capability, monkeypatch):
    """The weight gradients and dX after the step loops (hidden 5: no in-loop weight gradients) take oneDNN where
    torch's CPU capability is AVX-512 and torch.mm elsewhere (_gemm.sequence_linear): both give torch.nn's."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    linear = sequence_linear(torch.zeros(1))
    assert (linear is _addmm) == (capability == "AVX2")
    a, w, b = torch.randn(7, 3), torch.randn(4, 3), torch.randn(4)
    torch.testing.assert_close(linear(a, w, b), (a.double() @ w.double().t() + b.double()).float())
    compare_direction(kind, torch.float32, reverse=True)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind, reverse):
    torch.manual_seed(1)
    g = 4 if kind == "lstm" else 3 if kind == "gru" else 1
    shapes = [(3, 2, 3)] + [(2, 2)] * (2 if kind == "lstm" else 1) + [(g * 2, 3), (g * 2, 2), (g * 2,), (g * 2,)]
    args = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    if kind == "rnn_relu":  # keep pre-activations away from relu's kink, where finite differences are meaningless
        args[-1].data += 0.5

    def fn(*a):
        return ours(kind, a[0], a[1:-4], a[-4:], reverse)
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("kind", KINDS)
def test_only_final_state_used(kind):
    """Backward when the output sequence gets no gradient (autograd passes None for it)."""
    m = torch_module(kind, torch.float64)
    x = torch.randn(L, N, I, dtype=torch.float64, requires_grad=True)
    out, finals = m(x)
    h_ref = (finals[0] if kind == "lstm" else finals)[0]
    weights = [getattr(m, f"{n}_l0") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    zeros = [torch.zeros(N, H, dtype=torch.float64)] * (2 if kind == "lstm" else 1)
    h = ours(kind, x, zeros, weights, False)[1]
    g_ref = torch.autograd.grad(h_ref.sum(), [x, *weights])
    g = torch.autograd.grad(h.sum(), [x, *weights])
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_no_grad_forward_equals_grad_forward():
    """The inference path (no saved activations) computes the same numbers."""
    m = torch_module("lstm", torch.float32)
    x = torch.randn(L, N, I)
    weights = [getattr(m, f"{n}_l0") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    zeros = [torch.zeros(N, H)] * 2
    with_grad = ours("lstm", x, zeros, weights, False)
    assert with_grad[0].requires_grad
    with torch.no_grad():
        without = ours("lstm", x, zeros, weights, False)
    for a, b in zip(with_grad, without, strict=True):
        torch.testing.assert_close(a.detach(), b, atol=0, rtol=0)


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_layers_both_impls_equal_torch(name, impl):
    """Two layers, bidirectional, batch_first: the layer with either implementation against torch.nn."""
    torch.manual_seed(0)
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": True, "dtype": torch.float64}
    theirs = getattr(torch.nn, name)(I, H, **kw)
    mine = getattr(rnn, name)(I, H, impl=impl, **kw)
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(N, L, I, dtype=torch.float64)
    results = []
    for m in (mine, theirs):
        xi = x.clone().requires_grad_()
        out, finals = m(xi)
        finals = finals if name == "LSTM" else (finals,)
        (out.square().sum() + sum(f.sum() for f in finals)).backward()
        results.append([out, *finals, xi.grad, *(p.grad for p in m.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_layers_run_the_fast_path_by_default(monkeypatch):
    calls = []
    real = ops.DIRECTIONS["GRU"]
    monkeypatch.setitem(ops.DIRECTIONS, "GRU", lambda *a: calls.append(1) or real(*a))
    rnn.GRU(I, H)(torch.randn(L, N, I))
    assert calls == [1]
    with pytest.raises(ValueError, match="impl must be one of"):
        rnn.GRU(I, H, impl="cudnn")


def test_rnn_direction_rejects_unknown_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        ops.rnn_direction(torch.randn(L, N, I), torch.zeros(N, H), torch.randn(H, I), torch.randn(H, H),
                           nonlinearity="sigmoid")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_cuda_equals_cpu(name):
    torch.manual_seed(0)
    cpu = getattr(rnn, name)(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    gpu = getattr(rnn, name)(I, H, num_layers=2, bidirectional=True, dtype=torch.float64).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(L, N, I, dtype=torch.float64)
    out_cpu, out_gpu = cpu(x)[0], gpu(x.cuda())[0]
    out_cpu.sum().backward()
    out_gpu.sum().backward()
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, atol=1e-10, rtol=0)
    for p, q in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(q.grad.cpu(), p.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_runs_off_the_cpu_with_no_cpu_assumptions(name, monkeypatch):
    """Where no GPU is lent, the non-CPU path is checked on torch's `meta` device (shapes without data). A layer on
    meta tensors goes through the registered operators, whose fake implementations give the shapes; the Python step
    loops (CUDA's path) are then run on meta tensors directly: every buffer must come from the input's device (a CPU
    tensor mixed in raises), and the compiled CPU loops must not be asked. The numbers themselves are checked on CUDA
    by test_cuda_equals_cpu whenever a GPU is present."""
    m = getattr(rnn, name)(I, H, num_layers=2, bidirectional=True, batch_first=True).to("meta")
    x = torch.randn(N, L, I, device="meta", requires_grad=True)
    out, _ = m(x)
    out.sum().backward()
    assert out.device.type == "meta" and out.shape == (N, L, 2 * H)
    assert x.grad.shape == x.shape and all(p.grad.shape == p.shape and p.grad.is_meta for p in m.parameters())
    with torch.no_grad():
        assert m(x)[0].shape == (N, L, 2 * H)

    asked = []
    real = fast._compiled
    monkeypatch.setattr(fast, "_compiled", lambda x: asked.append(x.device.type) or real(x))
    g = {"LSTM": 4, "GRU": 3, "RNN": 1}[name]
    x2, h0 = torch.randn(L * N, I, device="meta"), torch.randn(N, H, device="meta")
    w = [torch.randn(g * H, I, device="meta"), torch.randn(g * H, H, device="meta")] + \
        [torch.randn(g * H, device="meta") for _ in range(2)]
    need = [True] * (7 if name == "LSTM" else 6)
    for bs in (None, torch.tensor([N] * (L - 1) + [1]), ):
        rows = L * N if bs is None else int(bs.sum())
        xr = x2[:rows]
        if name == "LSTM":
            out, h_n, c_n, G, C, TC = fast.lstm_forward(xr, bs, h0, h0, *w, reverse=True)  # noqa: N806
            grads = fast.lstm_backward(out, h_n, c_n, xr, bs, h0, h0, *w[:2], out, G, C, TC, True, need)
        elif name == "GRU":
            out, h_n, G, HN = fast.gru_forward(xr, bs, h0, *w, reverse=True)  # noqa: N806
            grads = fast.gru_backward(out, h_n, xr, bs, h0, *w[:2], out, G, HN, True, need)
        else:
            out, h_n = fast.rnn_forward(xr, bs, h0, *w, relu=False, reverse=True)
            grads = fast.rnn_backward(out, h_n, xr, bs, h0, *w[:2], out, False, True, need)
        assert out.shape == (rows, H) and h_n.shape == (N, H) and out.is_meta
        inputs = [xr, h0] + ([h0] if name == "LSTM" else []) + w
        assert [tuple(v.shape) for v in grads] == [tuple(v.shape) for v in inputs]
    assert asked and set(asked) == {"meta"}
    assert real(x) is None


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_saves_no_more_for_backward_than_torch(name):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(8, 16, num_layers=2, bidirectional=True)
    mine = getattr(rnn, name)(8, 16, num_layers=2, bidirectional=True)
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(30, 4, 8)
    assert fast.saved_bytes(mine, x) <= fast.saved_bytes(theirs, x)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_expanded_output_gradient(name):
    """out.sum().backward() hands the Function a stride-0 (expanded) gradient; it is read as is."""
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(I, H, dtype=torch.float64)
    mine = getattr(rnn, name)(I, H, dtype=torch.float64)
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(L, N, I, dtype=torch.float64)
    for m in (mine, theirs):
        m(x)[0].sum().backward()
    for p, q in zip(mine.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-10, rtol=0)
