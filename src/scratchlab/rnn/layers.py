"""Multi-layer RNN, LSTM and GRU with torch.nn's API, built on the cell math in `functional.py`.

Constructor, parameter names/shapes, gate order, initialisation and return values are torch.nn's, so
`ours.load_state_dict(theirs.state_dict())` and the reverse work. Per layer k and direction (suffix "" or
"_reverse"):
    weight_ih_l{k}{suffix} (G*H, I_k)   I_0 = input_size, I_k = D*H_out for k > 0 (D = 2 if bidirectional else 1)
    weight_hh_l{k}{suffix} (G*H, H_out) bias_ih_l{k}{suffix}, bias_hh_l{k}{suffix} (G*H,)
    weight_hr_l{k}{suffix} (P, H)       LSTM with proj_size = P > 0 only; H_out = P then, else H_out = H
with G = 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), all drawn from U(-1/sqrt(H), 1/sqrt(H)).

Shapes: input (L, N, I), or (N, L, I) with batch_first, or unbatched (L, I), or a PackedSequence (its data
(sum of lengths, I)); states (num_layers*D, N, H_out) (LSTM's c: (num_layers*D, N, H)) or unbatched
(num_layers*D, H_out). Returns output (L, N, D*H_out) (batch_first: (N, L, D*H_out); a PackedSequence for a
PackedSequence) and h_n, or (h_n, c_n) for LSTM.

Inside, every direction reads its input as rows (N_rows, I) with the step layout of `steps.Steps`: a padded batch
flattened time-major (no copy), or a PackedSequence's data, whose step t holds the first batch_sizes[t] sequences.
A direction is one call to a function in `DIRECTIONS` (mode -> fn(x, batch_sizes, state, weights, reverse,
nonlinearity) -> (outputs (N_rows, H_out), final state)), so a faster implementation can replace it per mode without
touching the layer logic: by default the layers run `rnn/ops.py` (the fast path of `rnn/fast.py`: whole-sequence
autograd Functions with a hand-written backward through time, registered as torch operators for torch.compile and
torch.export; proven equal to this file's path by tests/test_rnn_fast.py); `impl="reference"` (constructor argument
or attribute) runs the readable path below. An LSTM with proj_size > 0 runs the readable path under either impl
(the fast kernels have no projection).

The readable path: each direction projects the input of all steps in one addmm, with both biases folded in where the
cell allows it (RNN, LSTM); each step then costs one matmul for the recurrence plus the pointwise update, on the
rows of the sequences still running at that step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from scratchlab.rnn import _cext, ops
from scratchlab.rnn import functional as F

State = tuple[Tensor, ...]  # (h,) for RNN/GRU, (h, c) for LSTM; each (N, H_out) / (N, H)
Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]  # w_ih, w_hh, b_ih, b_hh, w_hr


def _sizes(x: Tensor, batch_sizes: Tensor | None, state: State) -> list[int]:
    """Rows of each step: batch_sizes, or a padded batch's len(x) / N steps of N rows."""
    if batch_sizes is not None:
        return batch_sizes.tolist()
    n = state[0].shape[0]
    return [n] * (x.shape[0] // n)


def _scan(gi: Tensor, sizes: list[int], init: State, step: Callable[[Tensor, State], State],
          reverse: bool) -> tuple[Tensor, State]:
    """Run `step` over the steps of gi (N_rows, G*H), step t holding the first sizes[t] sequences; return the
    outputs (N_rows, H_out) and each sequence's final state.

    Forward, a sequence that ends leaves the running state and keeps its last state; reverse, a sequence joins at its
    own last step with its initial state (a padded batch: all sizes equal, neither happens)."""
    steps = gi.split(sizes)
    outs: list[Tensor | None] = [None] * len(sizes)
    ended: list[State] = []                                 # forward: final states of the sequences that ended
    state = tuple(s[:0] for s in init) if reverse else init
    for t in (reversed(range(len(sizes))) if reverse else range(len(sizes))):
        n, have = sizes[t], state[0].shape[0]
        if n < have:
            ended.append(tuple(s[n:] for s in state))
            state = tuple(s[:n] for s in state)
        elif n > have:
            state = tuple(torch.cat([s, s0[have:n]]) for s, s0 in zip(state, init, strict=True))
        state = step(steps[t], state)
        outs[t] = state[0]
    final = tuple(torch.cat([s, *(e[k] for e in reversed(ended))]) for k, s in enumerate(state))
    return torch.cat(outs), final


def _folded_bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    return None if b_ih is None else b_ih + b_hh


def rnn_direction(x: Tensor, batch_sizes: Tensor | None, state: State, weights: Weights, reverse: bool,
                  nonlinearity: str) -> tuple[Tensor, State]:
    """Elman RNN over x (N_rows, I): h_t = act(x_t W_ih^T + h_{t-1} W_hh^T + (b_ih + b_hh))."""
    w_ih, w_hh, b_ih, b_hh = weights[:4]
    w_hh_t = w_hh.t()
    gi = F.linear(x, w_ih, _folded_bias(b_ih, b_hh))
    return _scan(gi, _sizes(x, batch_sizes, state), state,
                 lambda g, s: (F.rnn_update(torch.addmm(g, s[0], w_hh_t), nonlinearity),), reverse)


def lstm_direction(x: Tensor, batch_sizes: Tensor | None, state: State, weights: Weights, reverse: bool,
                   nonlinearity: str) -> tuple[Tensor, State]:
    """LSTM over x (N_rows, I): gates_t = (x_t W_ih^T + b_ih + b_hh) + h_{t-1} W_hh^T, then `lstm_update` (with
    the projection h_t = W_hr (o tanh(c_t)) when w_hr is given)."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    w_hh_t = w_hh.t()
    gi = F.linear(x, w_ih, _folded_bias(b_ih, b_hh))
    return _scan(gi, _sizes(x, batch_sizes, state), state,
                 lambda g, s: F.lstm_update(torch.addmm(g, s[0], w_hh_t), s[1], w_hr), reverse)


def gru_direction(x: Tensor, batch_sizes: Tensor | None, state: State, weights: Weights, reverse: bool,
                  nonlinearity: str) -> tuple[Tensor, State]:
    """GRU over x (N_rows, I): gi_t = x_t W_ih^T + b_ih (all steps at once), gh_t = h_{t-1} W_hh^T + b_hh, then
    `gru_update`. b_hh is not folded into gi because its n-part sits inside the reset-gate product."""
    w_ih, w_hh, b_ih, b_hh = weights[:4]
    gi = F.linear(x, w_ih, b_ih)
    return _scan(gi, _sizes(x, batch_sizes, state), state,
                 lambda g, s: (F.gru_update(g, F.linear(s[0], w_hh, b_hh), s[0]),), reverse)


# mode -> function(x (N_rows, I), batch_sizes, state, weights, reverse, nonlinearity) -> (outputs, final state)
DIRECTIONS: dict[str, Callable[..., tuple[Tensor, State]]] = {
    "RNN": rnn_direction, "LSTM": lstm_direction, "GRU": gru_direction,
}
# impl -> the DIRECTIONS table a layer runs: "fast" (the default) or "reference" (the readable path above)
IMPLS = {"fast": ops.DIRECTIONS, "reference": DIRECTIONS}


def _autocast_dtype(mode: str, x: Tensor, packed: bool = False) -> torch.dtype | None:
    """The dtype torch.nn's layer returns under autocast on x's device, or None when autocast is off there.

    On CPU, torch.nn.LSTM runs mkldnn_rnn_layer (on autocast's lower-precision list) and torch.nn.RNN's step
    products come back in it, so both return the autocast dtype; torch.nn.GRU's h' = n + z (h - n) adds the state,
    kept in the input's dtype, and returns that; so does torch.nn.LSTM given a PackedSequence (its values are of
    the autocast precision all the same). On CUDA all three run cuDNN, on the lower-precision list."""
    device = x.device.type
    if not torch.amp.is_autocast_available(device) or not torch.is_autocast_enabled(device):
        return None
    keeps = mode == "GRU" or (mode == "LSTM" and packed)
    return x.dtype if keeps and device == "cpu" else torch.get_autocast_dtype(device)


class _RNNBase(nn.Module):
    mode = "RNN"
    gates = 1
    nonlinearity = "tanh"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, impl: str = "fast", *, proj_size: int = 0) -> None:
        super().__init__()
        self.impl = impl
        self._directions()  # fails now, not at the first forward, on an unknown impl
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"{self.mode}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{self.mode}: dropout acts between recurrent layers, so dropout={dropout} with "
                          f"num_layers=1 has no effect", stacklevel=2)
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{self.mode}: {name} must be a positive int, got {v!r}")
        if isinstance(proj_size, bool) or not isinstance(proj_size, int) or proj_size < 0:
            raise ValueError(f"{self.mode}: proj_size should be a positive integer or zero to disable projections, "
                             f"got {proj_size!r}")
        if proj_size and self.mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if proj_size >= hidden_size:
            raise ValueError(f"{self.mode}: proj_size has to be smaller than hidden_size, got {proj_size} >= "
                             f"{hidden_size}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        self.proj_size, self.directions = proj_size, 2 if bidirectional else 1
        out = proj_size or hidden_size                      # H_out: the size of h
        kw = {"device": device, "dtype": dtype}
        g = self.gates * hidden_size
        # registration order is torch's (layer, direction, w_ih, w_hh, b_ih, b_hh, w_hr): parameters() lines up too
        for k in range(num_layers):
            n_in = input_size if k == 0 else out * self.directions
            for suffix in self._suffixes():
                setattr(self, f"weight_ih_l{k}{suffix}", nn.Parameter(torch.empty(g, n_in, **kw)))
                setattr(self, f"weight_hh_l{k}{suffix}", nn.Parameter(torch.empty(g, out, **kw)))
                if bias:
                    setattr(self, f"bias_ih_l{k}{suffix}", nn.Parameter(torch.empty(g, **kw)))
                    setattr(self, f"bias_hh_l{k}{suffix}", nn.Parameter(torch.empty(g, **kw)))
                if proj_size:
                    setattr(self, f"weight_hr_l{k}{suffix}", nn.Parameter(torch.empty(proj_size, hidden_size, **kw)))
        self.reset_parameters()
        if impl == "fast" and (device is None or torch.device(device).type == "cpu"):
            _cext.ops()  # the first layer built compiles the kernels (once, saying so): before any progress bar

    def _directions(self) -> Callable[..., tuple[Tensor, State]]:
        """The per-direction function this layer runs, from `impl` (which may be reassigned on the module); the
        readable one for an LSTM with a projection, which the fast kernels do not have."""
        if self.impl not in IMPLS:
            raise ValueError(f"{self.mode}: impl must be one of {sorted(IMPLS)}, got {self.impl!r}")
        return IMPLS["reference" if getattr(self, "proj_size", 0) else self.impl][self.mode]

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch.nn (there is no cuDNN weight buffer to compact here)."""

    def weights(self, layer: int, suffix: str = "") -> Weights:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction; biases are None when bias=False, w_hr without
        a projection."""
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0), ("impl", "fast")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # ------------------------------------------------------------ input checks
    def _check_states(self, hx, batched: bool, n: int, x: Tensor) -> State:
        """States as a tuple of (num_layers*D, N, H_out) tensors (LSTM's c: H); zeros when hx is None."""
        rows = self.num_layers * self.directions
        shapes = [(rows, n, self.proj_size or self.hidden_size)] + [(rows, n, self.hidden_size)] * (self.mode == "LSTM")
        if hx is None:
            return tuple(torch.zeros(shape, dtype=x.dtype, device=x.device) for shape in shapes)
        if self.mode == "LSTM" and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTM: expected hx to be a tuple (h_0, c_0), got {type(hx).__name__}")
        states = tuple(hx) if self.mode == "LSTM" else (hx,)
        want = 3 if batched else 2
        if any(s.dim() != want for s in states):
            got = ", ".join(f"{s.dim()}-D" for s in states)
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise RuntimeError(f"{self.mode}: for {kind} input, hx should also be {want}-D but got {got}")
        if not batched:
            states = tuple(s.unsqueeze(1) for s in states)
        for k, (s, shape) in enumerate(zip(states, shapes, strict=True)):
            if tuple(s.shape) != shape:
                which = f"hidden[{k}]" if len(shapes) == 2 else "hidden"
                raise RuntimeError(f"{self.mode}: Expected {which} size {shape}, got {list(s.shape)}")
        return states

    def _check_input(self, x: Tensor, dims: tuple[int, ...]) -> None:
        if x.dim() not in dims:
            want = " or ".join(f"{d}D" for d in dims)
            raise ValueError(f"{self.mode}: Expected input to be {want}, got {x.dim()}D instead")
        if x.size(-1) != self.input_size:
            raise RuntimeError(f"{self.mode}: input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {x.size(-1)}")
        if x.dtype != self.weight_ih_l0.dtype and _autocast_dtype(self.mode, x) is None:
            raise ValueError(f"{self.mode}: input dtype ({x.dtype}) does not match weight dtype "
                             f"({self.weight_ih_l0.dtype})")

    def forward(self, input: Tensor | PackedSequence, hx=None):
        if isinstance(input, PackedSequence):
            # data (sum of lengths, I): step t's rows are the first batch_sizes[t] sequences, sorted by length
            x, batch_sizes, sorted_indices, unsorted_indices = input
            self._check_input(x, (2,))
            batched, n = True, int(batch_sizes[0])
        else:
            self._check_input(input, (2, 3))
            batched, batch_sizes, sorted_indices, unsorted_indices = input.dim() == 3, None, None, None
            # internally time-major rows: (L, N, I) -> (L N, I)
            x = input.transpose(0, 1) if batched and self.batch_first else input
            x = x if batched else x.unsqueeze(1)
            if x.size(0) == 0:
                raise RuntimeError(f"{self.mode}: expected sequence length to be larger than 0, got input of shape "
                                   f"{tuple(input.shape)}")
            length, n = x.shape[:2]
            x = x.reshape(length * n, self.input_size)
        states = self._check_states(hx, batched, n, x)
        if sorted_indices is not None:                       # the caller's batch order -> the sorted order
            states = tuple(s.index_select(1, sorted_indices) for s in states)

        out_dtype = _autocast_dtype(self.mode, x, packed=batch_sizes is not None)
        if out_dtype is None:
            x, h_n = self._layers(x, batch_sizes, states)
        else:                                                # computed in the weights' dtype (float32 inside)
            w = self.weight_ih_l0.dtype
            run = ops.lstm_bf16_seam if self._bf16_inference(x, states) else None
            with torch.autocast(x.device.type, enabled=False):
                x, h_n = self._layers(x.to(w), batch_sizes, tuple(s.to(w) for s in states), run)
            x, h_n = x.to(out_dtype), tuple(h.to(out_dtype) for h in h_n)

        if unsorted_indices is not None:
            h_n = tuple(h.index_select(1, unsorted_indices) for h in h_n)
        if batch_sizes is not None:
            x = PackedSequence(x, batch_sizes, sorted_indices, unsorted_indices)
        elif not batched:
            h_n = tuple(h.squeeze(1) for h in h_n)     # x (L, D*H_out) already
        else:
            x = x.view(length, n, -1)
            x = x.transpose(0, 1) if self.batch_first else x
        return x, (h_n if self.mode == "LSTM" else h_n[0])

    def _bf16_inference(self, x: Tensor, states: State) -> bool:
        """Under CPU autocast to bfloat16 with no gradient to compute, a float32 LSTM (no projection, impl "fast")
        runs the bf16 kernel where the build has one (AVX512-BF16): products of bf16-rounded operands, summed and
        celled in float32 (fast.lstm_forward_bf16). Training, float32 without autocast and every other case keep
        the float32 kernels."""
        return (self.mode == "LSTM" and x.device.type == "cpu" and torch.get_autocast_dtype("cpu") == torch.bfloat16
                and self.impl == "fast" and not getattr(self, "proj_size", 0)
                and self.weight_ih_l0.dtype == torch.float32 and not ops.traced(x)
                and not ops.needs_grad(x, *states, *self.parameters())
                and _cext.ops() is not None and _cext.ops().bf16_available())

    def _layers(self, x: Tensor, batch_sizes: Tensor | None, states: State,
                run: Callable[..., tuple[Tensor, State]] | None = None) -> tuple[Tensor, State]:
        """Every layer and direction over the rows x (N_rows, I): outputs (N_rows, D*H_out) and the final states
        (num_layers*D, N, ·). run: the per-direction function (default: `impl`'s)."""
        run = run or self._directions()
        finals: list[State] = []
        for k in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes()):
                i = k * self.directions + d
                out, final = run(x, batch_sizes, tuple(s[i] for s in states), self.weights(k, suffix), d == 1,
                                 self.nonlinearity)
                outs.append(out)
                finals.append(final)
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
            if self.dropout > 0 and self.training and k < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        return x, tuple(torch.stack([f[j] for f in finals]) for j in range(len(states)))


class RNN(_RNNBase):
    """Elman RNN, h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh | relu; torch.nn.RNN's API."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, impl: str = "fast") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}: expected 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, impl)
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}")


class LSTM(_RNNBase):
    """LSTM (gates i, f, g, o; see `functional.lstm_update`); forward returns (output, (h_n, c_n)). With
    proj_size = P > 0, h_t = W_hr (o_t tanh(c_t)) is P wide (weight_hr_l{k} (P, H)) and c_t stays H wide."""

    mode = "LSTM"
    gates = 4

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, impl: str = "fast") -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device,
                         dtype, impl, proj_size=proj_size)


class GRU(_RNNBase):
    """GRU (gates r, z, n; b_hn inside the reset product; see `functional.gru_update`); returns (output, h_n)."""

    mode = "GRU"
    gates = 3
