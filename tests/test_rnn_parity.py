"""scratchlab.rnn against torch.nn: same weights (via load_state_dict), same outputs, states and gradients.

Each case is one line through a helper (as tinygrad's helper_test_op): it builds torch's module and ours, copies
torch's weights into ours, runs both on the same input and initial states, and compares the forward results and the
gradients of a random projection of every output w.r.t. the input, the initial states and every parameter.
"""

import math

import pytest
import torch
from scipy import stats

from scratchlab import rnn

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
L, N, I, H = 5, 3, 4, 6  # small on purpose: parity does not depend on size


def close(ours, theirs, dtype, what):
    torch.testing.assert_close(ours, theirs, atol=TOL[dtype], rtol=0, msg=lambda m: f"{what}: {m}")


def flatten(result):
    """(output, h_n) / (output, (h_n, c_n)) / h / (h, c) -> a flat tuple of tensors."""
    if isinstance(result, torch.Tensor):
        return (result,)
    return tuple(t for r in result for t in flatten(r))


def run_and_grad(module, x, states, probe):
    """Forward, then backward of sum(probe_k * result_k); returns results and gradients (x, states, params)."""
    x = x.clone().requires_grad_()
    states = tuple(s.clone().requires_grad_() for s in states) if states else None
    hx = None if states is None else (states if len(states) == 2 else states[0])
    results = flatten(module(x, hx))
    sum((r * p).sum() for r, p in zip(results, probe, strict=True)).backward()
    grads = {"input": x.grad}
    for k, s in enumerate(states or ()):
        grads[f"state{k}"] = s.grad
    grads.update({n: p.grad for n, p in module.named_parameters()})
    return results, grads


def helper_test(name, x_shape, state_shape, dtype=torch.float32, given_state=True, **kw):
    """Build torch.nn.<name> and rnn.<name> with torch's weights; compare results and all gradients."""
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(I, H, dtype=dtype, **kw)
    ours = getattr(rnn, name)(I, H, dtype=dtype, **kw)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, p.shape) for n, p in theirs.named_parameters()]
    ours.load_state_dict(theirs.state_dict())
    theirs.eval(), ours.eval()  # dropout (if any) is off in eval mode for both

    x = torch.randn(x_shape, dtype=dtype)
    n_states = 2 if name.startswith("LSTM") else 1
    states = tuple(torch.randn(state_shape, dtype=dtype) for _ in range(n_states)) if given_state else None
    with torch.no_grad():
        probe = [torch.randn(r.shape, dtype=dtype) for r in flatten(theirs(x, None))]
    r_ours, g_ours = run_and_grad(ours, x, states, probe)
    r_theirs, g_theirs = run_and_grad(theirs, x, states, probe)
    for k, (a, b) in enumerate(zip(r_ours, r_theirs, strict=True)):
        close(a, b, dtype, f"{name} result #{k}")
    assert g_ours.keys() == g_theirs.keys()
    for key in g_theirs:
        close(g_ours[key], g_theirs[key], dtype, f"{name} grad {key}")


def helper_layer(name, dtype=torch.float32, batched=True, given_state=True, **kw):
    d = 2 if kw.get("bidirectional") else 1
    x_shape = ((N, L, I) if kw.get("batch_first") else (L, N, I)) if batched else (L, I)
    state_shape = (kw.get("num_layers", 1) * d, N, H) if batched else (kw.get("num_layers", 1) * d, H)
    helper_test(name, x_shape, state_shape, dtype, given_state, **kw)


def helper_cell(name, dtype=torch.float32, batched=True, given_state=True, **kw):
    helper_test(name, (N, I) if batched else (I,), (N, H) if batched else (H,), dtype, given_state, **kw)


CASES = [
    {},
    {"num_layers": 2},
    {"num_layers": 3},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True},
    {"batch_first": True, "num_layers": 2, "bidirectional": True},
    {"bias": False},
    {"num_layers": 2, "dropout": 0.5},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_layer_parity(name, kw, dtype):
    helper_layer(name, dtype, **kw)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_layer_parity_unbatched(name):
    helper_layer(name, torch.float64, batched=False, num_layers=2, bidirectional=True)
    helper_layer(name, torch.float32, batched=False)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_layer_parity_without_initial_state(name):
    helper_layer(name, torch.float64, given_state=False, num_layers=2)
    helper_layer(name, torch.float32, batched=False, given_state=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_rnn_relu_parity(dtype):
    helper_layer("RNN", dtype, nonlinearity="relu", num_layers=2, bidirectional=True)


# ---------------------------------------------------------------- cells
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kw", [{}, {"bias": False}], ids=["bias", "nobias"])
@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_parity(name, kw, dtype):
    helper_cell(name, dtype, **kw)
    helper_cell(name, dtype, batched=False, **kw)
    helper_cell(name, dtype, given_state=False, **kw)


def test_rnn_cell_relu_parity():
    helper_cell("RNNCell", torch.float64, nonlinearity="relu")


# ---------------------------------------------------------------- dropout in training
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_dropout_between_layers_only_in_training(name):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(I, H, num_layers=2, dropout=1.0)
    ours = getattr(rnn, name)(I, H, num_layers=2, dropout=1.0)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(L, N, I)
    # p = 1 zeroes layer 1's output in training: both must then agree exactly, and differ from eval mode
    out_train, _ = ours.train()(x)
    torch.testing.assert_close(out_train, theirs.train()(x)[0], atol=1e-6, rtol=0)
    assert not torch.allclose(out_train, ours.eval()(x)[0])
    # dropout never touches the last layer's output: no exact zeros appear with p = 0.5
    half = getattr(rnn, name)(I, H, num_layers=2, dropout=0.5).train()
    assert (half(x)[0] != 0).all()


# ---------------------------------------------------------------- state dicts, init, names
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_state_dict_loads_into_torch(name):
    torch.manual_seed(0)
    ours = getattr(rnn, name)(I, H, num_layers=2, bidirectional=True)
    theirs = getattr(torch.nn, name)(I, H, num_layers=2, bidirectional=True)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(L, N, I)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_names_shapes_and_init_match_torch(name):
    hidden = 64
    torch.manual_seed(0)
    ours, theirs = getattr(rnn, name)(10, hidden), getattr(torch.nn, name)(10, hidden)
    if not name.endswith("Cell"):
        ours, theirs = getattr(rnn, name)(10, hidden, 2, bidirectional=True), \
            getattr(torch.nn, name)(10, hidden, 2, bidirectional=True)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    bound = 1 / math.sqrt(hidden)
    values = torch.cat([p.detach().flatten() for p in ours.parameters()])
    assert values.abs().max() <= bound
    # U(-bound, bound): Kolmogorov-Smirnov against the uniform distribution (tens of thousands of draws)
    assert stats.kstest(values.numpy(), stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-3


def test_device_and_dtype_kwargs():
    m = rnn.LSTM(I, H, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert rnn.GRUCell(I, H, dtype=torch.float64).weight_hh.dtype == torch.float64


# ---------------------------------------------------------------- errors say expected vs got
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_layer_errors(name):
    m = getattr(rnn, name)(I, H, num_layers=2)
    with pytest.raises(RuntimeError, match=f"Expected {I}, got {I + 1}"):
        m(torch.randn(L, N, I + 1))
    with pytest.raises(ValueError, match="Expected input to be 2D or 3D, got 4D"):
        m(torch.randn(1, L, N, I))
    bad = torch.randn(1, N, H)
    hx = (bad, bad) if name == "LSTM" else bad
    with pytest.raises(RuntimeError, match=r"Expected hidden(\[0\])? size \(2, 3, 6\), got \[1, 3, 6\]"):
        m(torch.randn(L, N, I), hx)
    flat = torch.randn(2, N, H)
    with pytest.raises(RuntimeError, match="unbatched 2-D input, hx should also be 2-D but got 3-D"):
        m(torch.randn(L, I), (flat, flat) if name == "LSTM" else flat)
    for impl in ("fast", "reference"):                   # torch: "Expected sequence length to be larger than 0"
        m.impl = impl
        empty = rf"sequence length to be larger than 0, got input of shape \(0, {N}, {I}\)"
        with pytest.raises(RuntimeError, match=empty):
            m(torch.randn(0, N, I))


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cell_errors(name):
    m = getattr(rnn, name)(I, H)
    with pytest.raises(RuntimeError, match=f"Expected {I}, got {I + 2}"):
        m(torch.randn(N, I + 2))
    with pytest.raises(ValueError, match="Expected input to be 1D or 2D, got 3D"):
        m(torch.randn(1, N, I))
    bad = torch.randn(N, H + 1)
    with pytest.raises(RuntimeError, match=r"size \(3, 6\), got \[3, 7\]"):
        m(torch.randn(N, I), (bad, bad) if name == "LSTMCell" else bad)
    if name == "LSTMCell":
        with pytest.raises(TypeError, match=r"expected hx to be a tuple \(h, c\), got Tensor"):
            m(torch.randn(N, I), torch.randn(N, H))
