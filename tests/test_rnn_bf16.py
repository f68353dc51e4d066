"""The bf16 inference kernel (csrc/lstm.cpp, fast.lstm_forward_bf16): against its readable definition
(fast.lstm_bf16_reference, torch ops), against torch.nn.LSTM under CPU autocast, and the rule for when the layers
take it (layers._bf16_inference). Runs where the build has AVX512-BF16; `bf16_pairs` (the weight layout) everywhere
the compiled kernels load."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import scratchlab.rnn as srnn
from scratchlab.rnn import _cext, fast

OPS = _cext.ops()
needs_ops = pytest.mark.skipif(OPS is None, reason="no compiled kernels")
needs_bf16 = pytest.mark.skipif(OPS is None or not OPS.bf16_available(),
                                reason="this CPU or build has no AVX512-BF16 kernel")


def weights(I, H, seed, scale=0.3):  # noqa: N803
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return r(4 * H, I) * scale, r(4 * H, H) * scale, r(4 * H) * 0.1, r(4 * H) * 0.1


@needs_ops
@pytest.mark.parametrize("K", [1, 7, 16, 33])
def test_bf16_pairs_is_its_readable_definition(K):  # noqa: N803
    p = torch.randn(5, K, 16)
    got, want = OPS.bf16_pairs(p), fast.bf16_pairs_reference(p)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape == (5, (K + 1) // 2, 16, 2)
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


def _inputs(B, T, I, H, seed):  # noqa: N803
    g = torch.Generator().manual_seed(seed)
    x, h0, c0 = torch.randn(T * B, I, generator=g), torch.randn(B, H, generator=g), torch.randn(B, H, generator=g)
    return x, h0 * 0.5, c0 * 0.5


# Beyond a step's products and cell, float32 sums in another order move h by ~1e-7, which can flip the bf16 rounding
# of one of its values and then move later outputs by ~1e-4: each sequence's first step is held to the definition
# exactly (1e-6), the rest to bf16's resolution.
@needs_bf16
@pytest.mark.parametrize("B,T,I,H,reverse", [(5, 3, 7, 13, False), (7, 4, 10, 33, True), (13, 5, 9, 16, False),
                                             (64, 3, 128, 200, False)])  # H = 200: a partial group of units
def test_kernel_is_its_definition(B, T, I, H, reverse):  # noqa: N803
    x, h0, c0 = _inputs(B, T, I, H, B)
    w = weights(I, H, 1, scale=0.3 if H < 64 else 0.1)
    got = fast.lstm_forward_bf16(x, None, h0, c0, *w, reverse)
    want = fast.lstm_bf16_reference(x, None, h0, c0, *w, reverse)
    first = slice((T - 1) * B, T * B) if reverse else slice(0, B)
    torch.testing.assert_close(got[0][first], want[0][first], rtol=0, atol=1e-6)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-3)


def _spy(monkeypatch):
    calls = []
    real = fast.lstm_forward_bf16
    monkeypatch.setattr(fast, "lstm_forward_bf16", lambda *a: calls.append(1) or real(*a))
    return calls


@needs_bf16
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True}, {"batch_first": True, "bias": False}])
@pytest.mark.parametrize("packed", [False, True])
def test_lstm_under_autocast_matches_torch_and_runs_the_bf16_kernel(monkeypatch, kw, packed):
    calls = _spy(monkeypatch)
    torch.manual_seed(0)
    ref = torch.nn.LSTM(10, 24, **kw).eval()
    ours = srnn.LSTM(10, 24, **kw).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 7, 10) if kw.get("batch_first") else torch.randn(7, 5, 10)
    if packed:
        x = pack_padded_sequence(x, torch.tensor([7, 5, 5, 3, 1]), batch_first=kw.get("batch_first", False))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (a, (ha, ca)), (b, (hb, cb)) = ours(x), ref(x)
    if packed:
        a, b = a.data, b.data
    # torch.nn.LSTM returns bf16 under CPU autocast, float32 (of bf16 precision) given a PackedSequence
    want = torch.float32 if packed else torch.bfloat16
    assert a.dtype == b.dtype == ha.dtype == hb.dtype == ca.dtype == cb.dtype == want
    assert len(calls) == ours.num_layers * (2 if ours.bidirectional else 1)
    for u, v in ((a, b), (ha, hb), (ca, cb)):
        torch.testing.assert_close(u.float(), v.float(), rtol=0, atol=1.6e-2)


@needs_bf16
def test_training_and_float32_keep_the_float32_kernels(monkeypatch):
    calls = _spy(monkeypatch)
    ours = srnn.LSTM(10, 24)
    x = torch.randn(7, 5, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = ours(x)                                     # parameters need gradients: a backward may follow
    out.float().sum().backward()
    with torch.no_grad():
        ours(x)                                              # no autocast: float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        srnn.LSTM(10, 24, impl="reference")(x)               # the readable path stays readable
    assert calls == []


@needs_bf16
def test_packed_weights_are_rebuilt_when_the_weights_change():
    torch.manual_seed(0)
    ref, ours = torch.nn.LSTM(6, 20).eval(), srnn.LSTM(6, 20).eval()
    x = torch.randn(4, 3, 6)

    def both():
        ours.load_state_dict(ref.state_dict())
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return ours(x)[0].float(), ref(x)[0].float()

    torch.testing.assert_close(*both(), rtol=0, atol=1.6e-2)
    with torch.no_grad():                                    # in place (the cache sees _version move) ...
        ref.weight_hh_l0.mul_(-2.0)
        ref.bias_ih_l0.add_(0.5)
    torch.testing.assert_close(*both(), rtol=0, atol=1.6e-2)
    ours.weight_hh_l0 = torch.nn.Parameter(ours.weight_hh_l0.detach() * 0)   # ... and a new tensor
    ref.weight_hh_l0 = torch.nn.Parameter(ref.weight_hh_l0.detach() * 0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ours(x)[0].float(), ref(x)[0].float()
    torch.testing.assert_close(a, b, rtol=0, atol=1.6e-2)


@needs_bf16
def test_packed_weights_leave_with_their_module():
    import gc

    m = srnn.LSTM(6, 20).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m(torch.randn(4, 3, 6))
    key = id(m.weight_ih_l0)
    assert key in fast._BF16_PACKED
    del m
    gc.collect()
    assert key not in fast._BF16_PACKED
