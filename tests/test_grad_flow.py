"""grad-flow: ||dL/dh_t|| from scratchlab.rnn's layers against torch autograd through torch.nn's layers (same
weights), a tanh RNN's against backpropagation through time written out by hand in NumPy, and the plan's summary."""

import numpy as np
import pytest
import torch

from scratchlab import rnn
from scratchlab.experiments.grad_flow import hidden_grad_norms
from scratchlab.runner import run_experiment

PAIRS = [(rnn.RNN, torch.nn.RNN), (rnn.LSTM, torch.nn.LSTM), (rnn.GRU, torch.nn.GRU)]


def _batch(n=5, steps=9, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, steps, d, generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["rnn", "lstm", "gru"])
def test_norms_match_torch_nn(ours, theirs):
    torch.manual_seed(0)
    mine, ref, head = ours(3, 6, batch_first=True), theirs(3, 6, batch_first=True), torch.nn.Linear(6, 4)
    ref.load_state_dict(mine.state_dict())
    x, y = _batch()
    got, want = hidden_grad_norms(mine, head, x, y), hidden_grad_norms(ref, head, x, y)
    assert got.shape == (9,) and np.all(want > 0)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)  # float64


def test_rnn_norms_match_bptt_by_hand():
    """h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), L = CE(V h_T + c, y) summed over the batch:
    dL/dh_T = V^T (softmax - onehot), dL/dh_t = W_hh^T ((1 - h_{t+1}^2) * dL/dh_{t+1})."""
    torch.manual_seed(1)
    layer, head = rnn.RNN(3, 6, batch_first=True), torch.nn.Linear(6, 4)
    x, y = _batch(seed=1)
    p = {k: v.detach().double().numpy() for k, v in layer.state_dict().items()}
    w, b = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    xs, n, steps = x.double().numpy(), x.shape[0], x.shape[1]
    hs, h = [], np.zeros((n, 6))
    for t in range(steps):
        h = np.tanh(xs[:, t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T + p["bias_hh_l0"])
        hs.append(h)
    logits = hs[-1] @ w.T + b
    soft = np.exp(logits - logits.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    g = (soft - np.eye(4)[y.numpy()]) @ w  # dL/dh_T, (N, H)
    norms = [np.linalg.norm(g, axis=1).mean()]
    for t in range(steps - 2, -1, -1):
        g = (g * (1 - hs[t + 1] ** 2)) @ p["weight_hh_l0"]
        norms.append(np.linalg.norm(g, axis=1).mean())
    np.testing.assert_allclose(hidden_grad_norms(layer, head, x, y), norms[::-1], rtol=1e-9)


def test_plan_summary_has_the_ratios(tmp_path):
    run, s = run_experiment("grad-flow", {"models": ("lstm",), "length": 12, "steps": 10}, quick=True,
                            out=tmp_path / "gf", progress=False, executor="serial")
    assert s["failed"] == 0 and s["runs"] == 2
    for m in ("lstm",):
        for when in ("init", "trained"):
            v = s[f"grad_ratio_{m}_{when}"]
            assert v > 0 and s[f"grad_log10_ratio_{m}_{when}"] == pytest.approx(np.log10(
                [r["metrics"][f"grad_ratio_{when}"]["values"] for r in s["variants"] if r["name"] == m][0]).mean())
    assert (run / "grad_norms.png").exists() and (run / "lstm" / "seed1" / "grad_norms.json").exists()
