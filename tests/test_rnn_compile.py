"""scratchlab.rnn under torch.compile and torch.export: the same numbers as eager, forward and every gradient.

The fast path's layer-directions are registered operators (rnn/ops.py): `torch.library.opcheck` checks each one's
schema, fake implementation (shapes and strides against the real outputs), autograd registration and AOT dispatch,
padded and PackedSequence, float32 and float64. Then whole layers: compiled against eager with the `aot_eager`
backend (Dynamo's graph, AOTAutograd's joint forward-backward over the fake implementations, no code generation)
for every layer, impl and dtype; with Inductor (the default backend, generated code) for one model holding all three
layers, fast and reference; one graph and no breaks under fullgraph=True; the exported program against eager,
forward and backward. Eager runs autograd Functions around the same implementations as the operators; a test
forces the operators in eager and asks for equal bits.
"""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from scratchlab import rnn
from scratchlab.rnn import ops

L, N, I, H = 5, 3, 4, 6
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
NAMES = ["LSTM", "GRU", "RNN"]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def layer(name, dtype=torch.float32, impl="fast", **kw):
    torch.manual_seed(0)
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": True, **kw}
    return getattr(rnn, name)(I, H, dtype=dtype, impl=impl, **kw)


def outputs_and_grads(module, x, probe_seed=1):
    """Forward, then backward of a fixed random projection of the output and of every final state; returns the
    outputs, final states and the gradients of x and of every parameter."""
    module.zero_grad()
    x = x.detach().requires_grad_()
    out, states = module(x)
    states = states if isinstance(states, tuple) else (states,)
    g = torch.Generator().manual_seed(probe_seed)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum() + sum((s * s).sum() for s in states)
    loss.backward()
    return [out.detach(), *(s.detach() for s in states), x.grad, *(p.grad for p in module.parameters())]


def assert_all_close(got, want, dtype, what):
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a, b, atol=TOL[dtype], rtol=0, msg=lambda m, k=k: f"{what} #{k}: {m}")


# ---------------------------------------------------------------- the operators themselves
def op_samples(dtype, packed):
    torch.manual_seed(0)
    bs = torch.tensor([3, 3, 2, 1]) if packed else None
    rows = 9 if packed else 4 * 3
    x = torch.randn(rows, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(3, H, dtype=dtype, requires_grad=True)
    c0 = torch.randn(3, H, dtype=dtype, requires_grad=True)
    for gates, op, extra in ((4, ops.lstm_op, [c0]), (3, ops.gru_op, []), (1, ops.rnn_op, [])):
        w = [torch.randn(gates * H, I, dtype=dtype, requires_grad=True),
             torch.randn(gates * H, H, dtype=dtype, requires_grad=True),
             torch.randn(gates * H, dtype=dtype, requires_grad=True),
             torch.randn(gates * H, dtype=dtype, requires_grad=True)]
        for reverse in (False, True):
            tail = [True, reverse] if op is ops.rnn_op else [reverse, True]   # rnn: (relu, reverse); others keep
            yield op, [x, bs, h0, *extra, *w, *tail]


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_operators_pass_opcheck(dtype, packed):
    """Schema, fake implementation against the real outputs (shapes, strides, no aliasing), autograd registration,
    and AOTAutograd's dispatch, static and dynamic, for every forward operator (and through it its backward)."""
    for op, args in op_samples(dtype, packed):
        torch.library.opcheck(op, args)


def test_backward_operators_pass_opcheck():
    for op, args in op_samples(torch.float64, packed=True):
        out = op(*args)
        saved = [o.detach() for o in out]
        if op is ops.lstm_op:
            x, bs, h0, c0, w_ih, w_hh, *_ = args
            bargs = [saved[0], saved[1], saved[2], x.detach(), bs, h0.detach(), c0.detach(), w_ih.detach(),
                     w_hh.detach(), *saved[:1], *saved[3:], args[-2], [True] * 7]
            torch.library.opcheck(ops.lstm_backward_op, bargs)
        elif op is ops.gru_op:
            x, bs, h0, w_ih, w_hh, *_ = args
            bargs = [saved[0], saved[1], x.detach(), bs, h0.detach(), w_ih.detach(), w_hh.detach(), saved[0],
                     saved[2], saved[3], args[-2], [True, False, True, True, False, True]]
            torch.library.opcheck(ops.gru_backward_op, bargs)
        else:
            x, bs, h0, w_ih, w_hh, *_ = args
            bargs = [saved[0], None, x.detach(), bs, h0.detach(), w_ih.detach(), w_hh.detach(), saved[0], True,
                     args[-1], [True] * 6]
            torch.library.opcheck(ops.rnn_backward_op, bargs)


@pytest.mark.parametrize("name", NAMES)
def test_eager_functions_equal_the_operators_bit_for_bit(name, monkeypatch):
    """Eager runs the autograd Functions; forcing the registered operators (what tracing sees) must give equal bits,
    since both call the same implementations."""
    m, x = layer(name), torch.randn(N, L, I)
    want = outputs_and_grads(m, x)
    monkeypatch.setattr(ops, "_traced", lambda x: True)
    got = outputs_and_grads(m, x)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_compiled_equals_eager(name, impl, dtype):
    """fullgraph=True through Dynamo and AOTAutograd (backend aot_eager): outputs, final states, the input's and
    every parameter's gradient, against eager and against torch.nn."""
    m, x = layer(name, dtype, impl), torch.randn(N, L, I, dtype=dtype)
    want = outputs_and_grads(m, x)
    got = outputs_and_grads(torch.compile(m, fullgraph=True, backend="aot_eager"), x)
    assert_all_close(got, want, dtype, f"{name} {impl} compiled")
    theirs = getattr(torch.nn, name)(I, H, num_layers=2, bidirectional=True, batch_first=True, dtype=dtype)
    theirs.load_state_dict(m.state_dict())
    assert_all_close(got, outputs_and_grads(theirs, x), dtype, f"{name} {impl} compiled vs torch.nn")


class Stack(torch.nn.Module):
    """All three layers in one model: LSTM -> GRU -> RNN(relu), each 2 layers, bidirectional, batch_first."""

    def __init__(self, impl):
        super().__init__()
        torch.manual_seed(0)
        kw = {"num_layers": 2, "bidirectional": True, "batch_first": True, "impl": impl}
        self.lstm, self.gru = rnn.LSTM(I, H, **kw), rnn.GRU(2 * H, H, **kw)
        self.rnn = rnn.RNN(2 * H, H, nonlinearity="relu", **kw)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        y, g = self.gru(y)
        y, r = self.rnn(y)
        return y, (h, c, g, r)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_inductor_compiled_equals_eager(impl):
    """The default backend (Inductor's generated code around the operators), fullgraph, float32."""
    m, x = Stack(impl), torch.randn(N, L, I)
    want = outputs_and_grads(m, x)
    got = outputs_and_grads(torch.compile(m, fullgraph=True), x)
    assert_all_close(got, want, torch.float32, f"{impl} inductor")


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_fullgraph_is_one_graph_without_breaks(impl):
    explained = torch._dynamo.explain(Stack(impl))(torch.randn(N, L, I))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_fast_path_graph_holds_the_operators():
    """The graph Dynamo hands to the backend calls scratchlab's operators (one per layer-direction), not the
    kernels: that is what lets the backend treat them as opaque."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    torch.compile(Stack("fast"), backend=backend, fullgraph=True)(torch.randn(N, L, I))
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert len(graphs) == 1
    want = [f"scratchlab.{name}.default" for name in ("lstm", "gru", "rnn") for _ in range(4)]
    assert [t for t in targets if "scratchlab" in t] == want


def test_compiled_with_dynamic_shapes_takes_new_lengths_and_batches():
    """One compiled graph with symbolic sizes serves other lengths and batch sizes (the fake implementations read
    only the input shapes)."""
    m = layer("LSTM")
    cm = torch.compile(m, backend="aot_eager", dynamic=True, fullgraph=True)
    for n, length in ((3, 5), (2, 9), (4, 1)):
        x = torch.randn(n, length, I)
        assert_all_close(outputs_and_grads(cm, x), outputs_and_grads(m, x), torch.float32, f"({n}, {length})")


@pytest.mark.parametrize("name", NAMES)
def test_compiled_packed_input_equals_eager(name):
    """A PackedSequence through a compiled layer (default mode: reading batch_sizes[0] for the batch size breaks the
    graph there, as it would for torch.nn)."""
    m = layer(name, batch_first=False)
    x = torch.randn(L, N, I)
    lengths = torch.tensor([2, 5, 1])

    def run(module):
        module.zero_grad()
        xi = x.clone().requires_grad_()
        out, states = module(pack_padded_sequence(xi, lengths, enforce_sorted=False))
        states = states if isinstance(states, tuple) else (states,)
        (out.data.square().sum() + sum(s.sum() for s in states)).backward()
        return [out.data.detach(), *(s.detach() for s in states), xi.grad, *(p.grad for p in module.parameters())]
    assert_all_close(run(torch.compile(m, backend="aot_eager")), run(m), torch.float32, f"{name} packed compiled")


# ---------------------------------------------------------------- torch.export
@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_exported_program_equals_eager(name, impl):
    """torch.export.export of the layer: the program's outputs, and the gradients through its module, against eager;
    the fast path's program calls the registered operators."""
    m, x = layer(name, impl=impl), torch.randn(N, L, I)
    exported = torch.export.export(m, (x,))
    if impl == "fast":
        assert f"torch.ops.scratchlab.{name.lower()}.default" in str(exported.graph)
    program = exported.module()
    want = outputs_and_grads(m, x)
    got = outputs_and_grads(program, x)
    # the program holds its own copies of the parameters, in the same order
    assert_all_close(got, want, torch.float32, f"{name} {impl} exported")
