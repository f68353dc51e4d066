"""The compiled LSTM step loops (rnn/csrc/ through rnn/_cext.py) against torch.nn.LSTM, and the fallback.

rnn.ops.lstm_direction (rnn.fast's LSTM) takes the compiled loops whenever they build; these tests make sure they
are the ones compared (with torch.nn.LSTM's outputs, final states and gradients, float32 to 1e-5 and float64 to
1e-10, both run orders, oneDNN's products and at::mm's), at a hidden size wide enough for the vectorised body of the
gate loops and not only its remainder, and that the Python loops still take over, with one warning, when the
extension cannot be built. Where the build has the packed AVX-512 kernel (float32), it is compared at sizes that
leave remainders in every tiling loop: batch rows past the last full 6-row tile, backward panels narrower than
4 x 16 units, hidden sizes that are not a multiple of 16 (the last group of units padded), a wider hidden size (144),
an input width that is not a multiple of 16, no bias. The build (about 15 s) happens here if `make setup` has not
done it.
"""

import os
import random
import shutil
import warnings

import pytest
import torch

from scratchlab import rnn
from scratchlab.rnn import _cext, fast
from scratchlab.rnn import ops as rnn_ops
from scratchlab.rnn._gemm import use_onednn
from test_rnn_fast import compare_direction

WIDE = (7, 5, 9, 40)  # length, batch, input, hidden: 40 = two 16-wide vectors + a remainder of 8
# packed kernel: batch 13 = 6 + 6 + 1 rows; hidden 80 = backward panels of 64 + 16 units; 48 = one panel of 48;
# 144: a backward product with K = 4H = 576 and 3 panels; hidden 40, 100 and 7: the last group of 16 units padded
# (8, 4 and 9 units of padding; backward panels of 40, 64 + 36 and 7 columns)
PACKED = [(6, 13, 9, 80), (5, 7, 3, 48), (3, 6, 16, 16), (3, 7, 5, 144), (5, 7, 9, 40), (4, 13, 5, 100),
          (4, 8, 6, 7)]


G2 = (fast._TO_OIFG, fast._G2)  # pack_gates' order and scales for the LSTM's forward


# The packed tests' sizes give gradients up to ~50, where float32's rounding alone is ~4e-6 per value: torch.nn's own
# float32 gradients are 1.2e-5 from float64 on the no-bias RNN at PACKED[0] (ours: 9e-6), so two correct float32
# implementations can differ by more than the absolute 1e-5; 1e-6 relative (about 8 ulps) on top of it.
RTOL = 1e-6


def library_kernel(ops, x, H):  # noqa: N803
    """fast._step_kernel's choice with the packed kernel set aside: the library products (oneDNN or at::mm)."""
    return int(use_onednn(x))


@pytest.fixture
def compiled():
    """The compiled operators; fails (rather than skips) when a compiler and ninja are present but the build fails."""
    if shutil.which("c++") is None or shutil.which("ninja") is None:
        pytest.skip("no C++ compiler or ninja: the Python step loops are the ones in use")
    if os.environ.get("SCRATCHLAB_NO_CEXT", "") not in ("", "0"):
        pytest.skip("SCRATCHLAB_NO_CEXT is set: the Python step loops are the ones in use")
    ops = _cext.ops()
    assert ops is not None, "the compiled step loops failed to build (see the warning)"
    return ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_compiled_equals_torch(compiled, monkeypatch, reverse, dtype):
    """The library kernel (per-step oneDNN or at::mm products, one fused gate pass), which float64 takes, and float32
    where the build has no packed kernel (forced here for float32)."""
    calls = []
    monkeypatch.setattr(fast, "_compiled", lambda x: calls.append(x.dtype) or compiled)
    monkeypatch.setattr(fast, "_step_kernel", library_kernel)
    compare_direction("lstm", dtype, reverse, sizes=WIDE)
    assert calls == [dtype, dtype]  # forward and backward both ran compiled


@pytest.fixture
def packed(compiled, monkeypatch):
    """The compiled operators where this build has the packed kernel; records which step kernel each call took."""
    if not compiled.packed_available():
        pytest.skip("this build of the extension has no packed kernel (no AVX-512)")
    kernels = []
    real = fast._step_kernel

    def spy(ops, x, H):  # noqa: N803
        kernel = real(ops, x, H)
        kernels.append(kernel)
        return kernel
    monkeypatch.setattr(fast, "_step_kernel", spy)
    return kernels


@pytest.mark.parametrize("sizes", PACKED)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_packed_kernel_equals_torch(packed, kind, reverse, sizes):
    compare_direction(kind, torch.float32, reverse, sizes=sizes, rtol=RTOL)
    assert packed == [2, 2]  # forward and backward both took the packed kernel


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_packed_kernel_with_weight_gradients_after_the_loop(packed, monkeypatch, kind):
    """Above fast._DW_IN_LOOP_BYTES the weight gradients come from one GEMM after the loop instead of step by step."""
    monkeypatch.setattr(fast, "_DW_IN_LOOP_BYTES", 0)
    compare_direction(kind, torch.float32, reverse=True, sizes=PACKED[0], rtol=RTOL)
    assert packed == [2, 2]


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_packed_weight_gradients_over_a_long_sequence_are_as_accurate_as_torch(packed, kind):
    """Summed step by step over 600 steps, the weight gradients stay within a small factor of torch.nn's own float32
    error (both against float64); summing all steps in one float32 accumulator was ~10x torch's."""
    T, B, I, H = 600, 32, 16, 32  # noqa: N806
    ref = getattr(torch.nn, kind)(I, H).double()
    x, probe = torch.randn(T, B, I, dtype=torch.float64), torch.randn(T, B, H, dtype=torch.float64)
    (ref(x)[0] * probe).sum().backward()
    errors = {}
    for name, m in (("torch", getattr(torch.nn, kind)(I, H)), ("ours", getattr(rnn, kind)(I, H))):
        m.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
        (m(x.float())[0] * probe.float()).sum().backward()
        errors[name] = max(((p.grad.double() - q.grad).abs().max() / q.grad.abs().max()).item()
                           for p, q in zip(list(m.parameters())[:2], list(ref.parameters())[:2], strict=True))
    assert packed == [2, 2]
    assert errors["ours"] < 3 * errors["torch"], errors


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_packed_kernel_gives_the_same_bits_on_any_number_of_threads(packed, kind):
    """Each step's tiles are split over torch's threads; every tile sums in the same order whichever thread runs it,
    so outputs and gradients are bitwise equal on 1 and 2 threads (same seed, same numbers)."""
    T, B, I, H = 9, 13, 7, 80  # noqa: N806
    torch.manual_seed(0)
    m, x = getattr(rnn, kind)(I, H, num_layers=2, bidirectional=True), torch.randn(T, B, I, requires_grad=True)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            m.zero_grad()
            x.grad = None
            out, states = m(x)
            states = states if kind == "LSTM" else (states,)
            (out.square().sum() + sum(s.sum() for s in states)).backward()
            results.append([out, *states, x.grad] + [p.grad for p in m.parameters()])
    finally:
        torch.set_num_threads(threads)
    assert set(packed) == {2}
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_packed_kernel_without_bias_equals_torch(packed, kind):
    compare_direction(kind, torch.float32, reverse=False, bias=False, sizes=PACKED[0], rtol=RTOL)
    assert packed == [2, 2]


def test_packed_kernel_is_not_used_for_float64(packed):
    """float64 takes the library kernel's at::mm products (the packed kernel is float32 only)."""
    compare_direction("lstm", torch.float64, reverse=False, sizes=PACKED[0])
    assert packed == [0, 0]


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_packed_kernel_inference_equals_torch(packed, kind):
    """Under no_grad the packed forward skips the stores only the backward reads; outputs and states stay equal."""
    L, N, I, H = PACKED[5]  # noqa: N806  (hidden 100: a padded last group)
    m = getattr(torch.nn, kind)(I, H, num_layers=2, bidirectional=True)
    mine = getattr(rnn, kind)(I, H, num_layers=2, bidirectional=True)
    mine.load_state_dict(m.state_dict())
    x = torch.randn(L, N, I)
    states = tuple(torch.randn(4, N, H) for _ in range(2 if kind == "LSTM" else 1))
    with torch.no_grad():
        want, got = m(x, states if kind == "LSTM" else states[0]), mine(x, states if kind == "LSTM" else states[0])
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=0)
    assert set(packed) == {2}


def test_packed_kernel_rejects_what_it_cannot_do(packed):
    """The operator checks its inputs rather than reading past them."""
    ops = _cext.ops()
    T, B, I, H = 2, 3, 5, 24  # noqa: N806
    x, w_ih, w_hh = torch.randn(T * B, I), torch.randn(4 * H, I), torch.randn(4 * H, H)
    h0 = torch.zeros(B, H)
    bufs = [torch.empty(T * B, 4 * H)] + [torch.zeros(T * B, H) for _ in range(3)]

    def forward(wx, bias, wh, x=x, batch_sizes=None, bufs=bufs):
        ops.lstm_forward_packed(x, batch_sizes, h0, h0, wx, bias, wh, *bufs, False, True)
    wx, wh = ops.pack_gates(w_ih, *G2, False), ops.pack_gates(w_hh, *G2, False)
    with pytest.raises(RuntimeError, match="pack_gates weight"):     # unpacked weights
        forward(w_ih, None, w_hh)
    with pytest.raises(RuntimeError, match="not pack_gates"):        # packed for another input width
        forward(ops.pack_gates(torch.randn(4 * H, I + 1), *G2, False), None, wh)
    with pytest.raises(RuntimeError, match="bias must be"):          # an unpadded bias (4H, not 4 * 32)
        forward(wx, torch.zeros(4 * H), wh)
    with pytest.raises(RuntimeError, match="must be a contiguous buffer of 6 rows of 24"):   # out one row short
        forward(wx, None, wh, bufs=bufs[:1] + [torch.zeros(T * B - 1, H)] + bufs[2:])
    with pytest.raises(RuntimeError, match="batch_sizes must start at the batch size 3 and not increase"):
        forward(wx, None, wh, batch_sizes=torch.tensor([2, 3, 1]))
    with pytest.raises(RuntimeError, match="batch_sizes sum to 5, the buffers have 6 rows"):
        forward(wx, None, wh, batch_sizes=torch.tensor([3, 2]))
    with pytest.raises(RuntimeError, match=r"expected a float32 \(4H, K\) weight"):
        ops.pack_gates(torch.randn(4 * H + 1, H), *G2, False)
    with pytest.raises(RuntimeError, match="not a permutation"):
        ops.pack_gates(w_hh, [3, 0, 1, 4], G2[1], False)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("H", [32, 20])
def test_pack_gates_is_pack16_of_the_reordered_weight(packed, transposed, H):  # noqa: N803
    """The one-pass packing against its definition: torch's (i, f, g, o) blocks reordered to (o, i, f, g), g
    scaled, each block padded with zero rows to a multiple of 16 (H = 20: 12 rows), then pack16; transposed (the
    backward's product, K = H), pack16 of the unpadded matrix's transpose."""
    w = torch.randn(4 * H, H)
    want = fast._perm(w, fast._TO_OIFG, 2.0)
    if transposed:
        want = fast.pack16(want.t().contiguous())
    else:
        pad = -H % 16
        want = fast.pack16(torch.cat([torch.cat([b, b.new_zeros(pad, H)]) for b in want.chunk(4)]))
    assert torch.equal(_cext.ops().pack_gates(w, *G2, transposed), want)


@pytest.mark.parametrize("threads", [1, 2])
def test_fma_peak_counts_the_tiles_registers(packed, threads):
    """fma_peak (benchmarks/rnn_speed.py's peak) does 6 rows x kNG panels of 16-lane FMAs a round on each thread:
    kNG 4 on AVX-512 (24 zmm), 1 on AVX2 (12 ymm) and NEON (24 q), 2 in the scalar test build (kernel.h)."""
    per_round = {"avx512": 6 * 4, "avx2": 6 * 1, "neon": 6 * 1}[_cext.ops().kernel_isa()] * 16 * 2
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        assert _cext.ops().fma_peak(1000) == per_round * 1000 * threads
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_python_loops_equal_torch(monkeypatch, reverse, dtype):
    """The Python step loops stay proven as well: they run where the extension does not build, and on CUDA."""
    monkeypatch.setattr(fast, "_compiled", lambda x: None)
    compare_direction("lstm", dtype, reverse, sizes=WIDE)


@pytest.mark.skipif(not use_onednn(torch.zeros(1)), reason="oneDNN matmul not available in this torch build")
@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_compiled_with_atmm_products_equals_torch(compiled, monkeypatch):
    """float32 with oneDNN switched off: the library kernel's at::mm products."""
    monkeypatch.setattr(fast, "_step_kernel", library_kernel)
    with torch.backends.mkldnn.flags(enabled=False):
        compare_direction("lstm", torch.float32, reverse=False, sizes=WIDE)


def test_compiled_propagates_nan(compiled):
    """A NaN input gives NaN outputs from that step on, as in torch (the fast-math flags keep NaN semantics)."""
    L, N, I, H = WIDE  # noqa: N806
    x = torch.randn(L, N, I)
    x[2, 0, 0] = float("nan")
    w = [torch.randn(4 * H, I) * 0.1, torch.randn(4 * H, H) * 0.1, torch.zeros(4 * H), torch.zeros(4 * H)]
    with torch.no_grad():
        out, h, c = rnn_ops.lstm_direction(x, torch.zeros(N, H), torch.zeros(N, H), *w)
    assert not out[:2].isnan().any()
    assert out[2:, 0].isnan().all() and h[0].isnan().all() and c[0].isnan().all()
    assert not out[:, 1:].isnan().any()


def test_the_loaded_build_is_the_chosen_variant(compiled):
    """The library reports the variant kernel.h was compiled for: the one _cext chose (or SCRATCHLAB_ISA forced),
    with the packed kernel exactly when that variant has one."""
    assert compiled.kernel_isa() == _cext.isa()
    assert compiled.packed_available() == (_cext.isa() != "generic")


def test_failed_build_warns_once_and_falls_back(monkeypatch):
    def broken(verbose=False):
        raise RuntimeError("Error building extension 'scratchlab_rnn'")
    monkeypatch.setattr(_cext, "build", broken)
    monkeypatch.setattr(_cext, "_state", {})
    monkeypatch.delenv("SCRATCHLAB_NO_CEXT", raising=False)
    with pytest.warns(RuntimeWarning, match="compiled step loops unavailable .*using the Python loops"):
        assert _cext.ops() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no second warning, no second build
        assert _cext.ops() is None
        compare_direction("lstm", torch.float64, reverse=True, sizes=WIDE)


def test_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setattr(_cext, "_state", {})
    monkeypatch.setenv("SCRATCHLAB_NO_CEXT", "1")
    assert _cext.ops() is None


def test_packed_kernels_on_random_shapes_match_float64_torch(packed):
    """16 seeded random shapes (hidden 1-200, input 1-300, batch 1-40, length 1-6, layers, directions, bias,
    tanh/relu) for the three layers against torch.nn in float64: outputs, final states and every gradient within
    2e-5 of the largest value (90 such shapes gave at most 1.4e-6)."""
    rng = random.Random(0)
    torch.manual_seed(0)
    for _ in range(16):
        kind = rng.choice(["LSTM", "GRU", "RNN"])
        H, I, B, T = rng.randint(1, 200), rng.randint(1, 300), rng.randint(1, 40), rng.randint(1, 6)  # noqa: N806
        kw = {"num_layers": rng.choice([1, 2]), "bidirectional": rng.random() < 0.5, "bias": rng.random() < 0.8}
        if kind == "RNN":
            kw["nonlinearity"] = rng.choice(["tanh", "relu"])
        ref = getattr(torch.nn, kind)(I, H, **kw).double()
        mine = getattr(rnn, kind)(I, H, **kw)
        mine.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
        x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
        x32 = x.detach().float().requires_grad_()
        (want, want_states), (got, got_states) = ref(x), mine(x32)
        want_states = want_states if kind == "LSTM" else (want_states,)
        got_states = got_states if kind == "LSTM" else (got_states,)
        probe = torch.randn_like(want)
        ((want * probe).sum() + sum(s.sum() for s in want_states)).backward()
        ((got * probe.float()).sum() + sum(s.sum() for s in got_states)).backward()
        pairs = [(got, want), (x32.grad, x.grad), *zip(got_states, want_states, strict=True),
                 *((q.grad, p.grad) for p, q in zip(ref.parameters(), mine.parameters(), strict=True))]
        for a, b in pairs:
            scale = b.abs().max().item() + 1e-6
            assert (a.double() - b).abs().max().item() <= 2e-5 * scale, (kind, T, B, I, H, kw)
    assert set(packed) == {2}
