"""Single-step cells with torch.nn's API: RNNCell, LSTMCell, GRUCell.

Parameters (names and shapes as torch.nn, so state dicts load both ways):
    weight_ih (G*H, I), weight_hh (G*H, H), bias_ih (G*H,), bias_hh (G*H,)   G = 1 / 4 / 3
all drawn from U(-1/sqrt(H), 1/sqrt(H)). Input (N, I) or unbatched (I,); state (N, H) or (H,), zeros when omitted.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from scratchlab.rnn import functional as F


class _CellBase(nn.Module):
    gates = 1  # G: how many H-sized blocks the projections produce

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"{type(self).__name__}: input_size and hidden_size must be positive, "
                             f"got {input_size} and {hidden_size}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        kw = {"device": device, "dtype": dtype}
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(g, **kw))
            self.bias_hh = nn.Parameter(torch.empty(g, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _check(self, x: Tensor, states: tuple[Tensor | None, ...]) -> tuple[Tensor, tuple[Tensor, ...], bool]:
        """Validate shapes; return the input as (N, I), the states as (N, H) (zeros when None), and is_batched."""
        name = type(self).__name__
        if x.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {x.dim()}D instead")
        if x.size(-1) != self.input_size:
            raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. "
                               f"Expected {self.input_size}, got {x.size(-1)}")
        batched = x.dim() == 2
        x = x if batched else x.unsqueeze(0)
        expected = (x.size(0), self.hidden_size) if batched else (self.hidden_size,)
        out = []
        for k, s in enumerate(states):
            if s is None:
                s = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)
            elif tuple(s.shape) != expected:
                which = "hidden" if len(states) == 1 else f"hx[{k}]"
                raise RuntimeError(f"{name}: Expected {which} size {expected}, got {list(s.shape)}")
            else:
                s = s if batched else s.unsqueeze(0)
            out.append(s)
        return x, tuple(out), batched


class RNNCell(_CellBase):
    """Elman cell: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh | relu."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}: expected 'tanh' or 'relu'")
        super().__init__(input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._check(input, (hx,))
        h = F.rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)
        return h if batched else h.squeeze(0)


class LSTMCell(_CellBase):
    """LSTM cell (gate order i, f, g, o); returns (h', c'). See `functional.lstm_update` for the equations."""

    gates = 4

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTMCell: expected hx to be a tuple (h, c), got {type(hx).__name__}")
        x, (h, c), batched = self._check(input, (None, None) if hx is None else tuple(hx))
        h, c = F.lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    """GRU cell (gate order r, z, n; b_hn inside the r-product). See `functional.gru_update` for the equations."""

    gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._check(input, (hx,))
        h = F.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h if batched else h.squeeze(0)
