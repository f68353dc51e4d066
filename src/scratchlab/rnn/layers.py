"""Multi-layer RNN, LSTM and GRU with torch.nn's API, built on the cell math in `functional.py`.

Constructor, parameter names/shapes, gate order, initialisation and return values are torch.nn's, so
`ours.load_state_dict(theirs.state_dict())` and the reverse work. Per layer k and direction (suffix "" or
"_reverse"):
    weight_ih_l{k}{suffix} (G*H, I_k)   I_0 = input_size, I_k = D*H for k > 0 (D = 2 if bidirectional else 1)
    weight_hh_l{k}{suffix} (G*H, H)     bias_ih_l{k}{suffix}, bias_hh_l{k}{suffix} (G*H,)
with G = 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n), all drawn from U(-1/sqrt(H), 1/sqrt(H)).

Shapes: input (L, N, I), or (N, L, I) with batch_first, or unbatched (L, I); states (num_layers*D, N, H) or
unbatched (num_layers*D, H). Returns output (L, N, D*H) (batch_first: (N, L, D*H)) and h_n, or (h_n, c_n) for LSTM.

Speed (docs/design.md, speed plan): each direction projects the input of all L steps in one addmm, with both biases
folded in where the cell allows it (RNN, LSTM); each step then costs one matmul for the recurrence plus the pointwise
update. Steps are taken with `unbind` (slicing a grad-requiring tensor per step makes every step's backward write a
full-size zero gradient) and outputs are gathered with one `stack`. A direction is one call to a function in
`DIRECTIONS`, so a faster implementation can replace it per mode without touching the layer logic: by default
the layers run `rnn/fast.py` (whole-sequence autograd Functions with a hand-written backward through time, proven
equal to this file's path by tests/test_rnn_fast.py); `impl="reference"` (constructor argument or attribute) runs
the readable path below.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from scratchlab.rnn import fast
from scratchlab.rnn import functional as F

State = tuple[Tensor, ...]  # (h,) for RNN/GRU, (h, c) for LSTM; each (N, H)
Weights = tuple[Tensor, Tensor, Tensor | None, Tensor | None]  # w_ih, w_hh, b_ih, b_hh


def _project(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """All time steps at once: (L, N, I) -> (L, N, G*H) in one (addmm) matmul."""
    L, N, _ = x.shape
    return F.linear(x.reshape(L * N, -1), w, b).view(L, N, -1)


def _scan(gi: Tensor, state: State, step: Callable[[Tensor, State], State], reverse: bool) -> tuple[Tensor, State]:
    """Run `step` over the time axis of gi (L, N, G*H); return outputs (L, N, H) and the final state."""
    steps = gi.unbind(0)
    outs = []
    for g in reversed(steps) if reverse else steps:
        state = step(g, state)
        outs.append(state[0])
    if reverse:
        outs.reverse()
    return torch.stack(outs), state


def _folded_bias(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    return None if b_ih is None else b_ih + b_hh


def rnn_direction(x: Tensor, state: State, weights: Weights, reverse: bool, nonlinearity: str) -> tuple[Tensor, State]:
    """Elman RNN over x (L, N, I): h_t = act(x_t W_ih^T + h_{t-1} W_hh^T + (b_ih + b_hh))."""
    w_ih, w_hh, b_ih, b_hh = weights
    w_hh_t = w_hh.t()
    gi = _project(x, w_ih, _folded_bias(b_ih, b_hh))
    return _scan(gi, state, lambda g, s: (F.rnn_update(torch.addmm(g, s[0], w_hh_t), nonlinearity),), reverse)


def lstm_direction(x: Tensor, state: State, weights: Weights, reverse: bool, nonlinearity: str) -> tuple[Tensor, State]:
    """LSTM over x (L, N, I): gates_t = (x_t W_ih^T + b_ih + b_hh) + h_{t-1} W_hh^T, then `lstm_update`."""
    w_ih, w_hh, b_ih, b_hh = weights
    w_hh_t = w_hh.t()
    gi = _project(x, w_ih, _folded_bias(b_ih, b_hh))
    return _scan(gi, state, lambda g, s: F.lstm_update(torch.addmm(g, s[0], w_hh_t), s[1]), reverse)


def gru_direction(x: Tensor, state: State, weights: Weights, reverse: bool, nonlinearity: str) -> tuple[Tensor, State]:
    """GRU over x (L, N, I): gi_t = x_t W_ih^T + b_ih (all steps at once), gh_t = h_{t-1} W_hh^T + b_hh, then
    `gru_update`. b_hh is not folded into gi because its n-part sits inside the reset-gate product."""
    w_ih, w_hh, b_ih, b_hh = weights
    gi = _project(x, w_ih, b_ih)
    return _scan(gi, state, lambda g, s: (F.gru_update(g, F.linear(s[0], w_hh, b_hh), s[0]),), reverse)


# mode -> function(x (L, N, I), state, weights, reverse, nonlinearity) -> (outputs (L, N, H), final state)
DIRECTIONS: dict[str, Callable[..., tuple[Tensor, State]]] = {
    "RNN": rnn_direction, "LSTM": lstm_direction, "GRU": gru_direction,
}
# impl -> the DIRECTIONS table a layer runs: "fast" (the default) or "reference" (the readable path above)
IMPLS = {"fast": fast.DIRECTIONS, "reference": DIRECTIONS}


class _RNNBase(nn.Module):
    mode = "RNN"
    gates = 1
    nonlinearity = "tanh"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, impl: str = "fast") -> None:
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
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, float(dropout), bidirectional
        self.directions = 2 if bidirectional else 1
        kw = {"device": device, "dtype": dtype}
        g = self.gates * hidden_size
        # registration order is torch's (layer, direction, w_ih, w_hh, b_ih, b_hh): parameters() lines up too
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size * self.directions
            for suffix in self._suffixes():
                setattr(self, f"weight_ih_l{k}{suffix}", nn.Parameter(torch.empty(g, n_in, **kw)))
                setattr(self, f"weight_hh_l{k}{suffix}", nn.Parameter(torch.empty(g, hidden_size, **kw)))
                if bias:
                    setattr(self, f"bias_ih_l{k}{suffix}", nn.Parameter(torch.empty(g, **kw)))
                    setattr(self, f"bias_hh_l{k}{suffix}", nn.Parameter(torch.empty(g, **kw)))
        self.reset_parameters()

    def _directions(self) -> Callable[..., tuple[Tensor, State]]:
        """The per-direction function this layer runs, from `impl` (which may be reassigned on the module)."""
        if self.impl not in IMPLS:
            raise ValueError(f"{self.mode}: impl must be one of {sorted(IMPLS)}, got {self.impl!r}")
        return IMPLS[self.impl][self.mode]

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch.nn (there is no cuDNN weight buffer to compact here)."""

    def weights(self, layer: int, suffix: str = "") -> Weights:
        """(w_ih, w_hh, b_ih, b_hh) of one layer and direction; biases are None when bias=False."""
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("impl", "fast")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # ------------------------------------------------------------ input checks
    def _check_states(self, hx, batched: bool, n: int, x: Tensor) -> State:
        """States as a tuple of (num_layers*D, N, H) tensors; zeros when hx is None."""
        shape = (self.num_layers * self.directions, n, self.hidden_size)
        count = 2 if self.mode == "LSTM" else 1
        if hx is None:
            return tuple(torch.zeros(shape, dtype=x.dtype, device=x.device) for _ in range(count))
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
        for k, s in enumerate(states):
            if tuple(s.shape) != shape:
                which = f"hidden[{k}]" if count == 2 else "hidden"
                raise RuntimeError(f"{self.mode}: Expected {which} size {shape}, got {list(s.shape)}")
        return states

    def forward(self, input: Tensor, hx=None):
        if isinstance(input, nn.utils.rnn.PackedSequence):
            raise TypeError(f"{self.mode}: PackedSequence input is not supported; pad and pass a tensor")
        if input.dim() not in (2, 3):
            raise ValueError(f"{self.mode}: Expected input to be 2D or 3D, got {input.dim()}D instead")
        if input.size(-1) != self.input_size:
            raise RuntimeError(f"{self.mode}: input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {input.size(-1)}")
        if input.dtype != self.weight_ih_l0.dtype:
            raise ValueError(f"{self.mode}: input dtype ({input.dtype}) does not match weight dtype "
                             f"({self.weight_ih_l0.dtype})")
        batched = input.dim() == 3
        # internally time-major: x (L, N, I)
        if not batched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        if x.size(0) == 0:
            raise RuntimeError(f"{self.mode}: expected sequence length to be larger than 0, got input of shape "
                               f"{tuple(input.shape)}")
        states = self._check_states(hx, batched, x.size(1), x)

        run = self._directions()
        finals: list[State] = []
        for k in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes()):
                i = k * self.directions + d
                out, final = run(x, tuple(s[i] for s in states), self.weights(k, suffix), d == 1, self.nonlinearity)
                outs.append(out)
                finals.append(final)
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
            if self.dropout > 0 and self.training and k < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)

        h_n = tuple(torch.stack([f[j] for f in finals]) for j in range(len(states)))
        if not batched:
            x, h_n = x.squeeze(1), tuple(h.squeeze(1) for h in h_n)
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, (h_n if self.mode == "LSTM" else h_n[0])


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
    """LSTM (gates i, f, g, o; see `functional.lstm_update`); forward returns (output, (h_n, c_n))."""

    mode = "LSTM"
    gates = 4


class GRU(_RNNBase):
    """GRU (gates r, z, n; b_hn inside the reset product; see `functional.gru_update`); returns (output, h_n)."""

    mode = "GRU"
    gates = 3
