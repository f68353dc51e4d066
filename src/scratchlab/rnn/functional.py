"""The recurrent cell math, written once.

Each cell is split in two: a projection (the matrix products, which the layers batch over all time steps for the
input side) and an *update* (the pointwise gate arithmetic, shared by cells and layers). The `*_cell` functions put
the two together and are what a reader should look at first; `layers.py` calls the `*_update` functions directly on
pre-computed projections.

Shapes: x (N, I) input, h and c (N, H) states; weights as in torch.nn:
    W_ih (G*H, I), W_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)   with G = 1 (RNN), 4 (LSTM), 3 (GRU).
Gate order follows torch.nn: LSTM (i, f, g, o), GRU (r, z, n).
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """x W^T + b for x (..., in), w (out, in): one addmm when x is 2-D."""
    if b is None:
        return x @ w.t()
    if x.dim() == 2:
        return torch.addmm(b, x, w.t())
    return x @ w.t() + b


# ---------------------------------------------------------------- Elman RNN
def rnn_update(pre: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """h' = act(pre), pre = x W_ih^T + b_ih + h W_hh^T + b_hh; act = tanh or relu."""
    if nonlinearity == "tanh":
        return torch.tanh(pre)
    if nonlinearity == "relu":
        return torch.relu(pre)
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}: expected 'tanh' or 'relu'")


def rnn_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None, nonlinearity: str = "tanh") -> Tensor:
    """Elman cell:  h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    return rnn_update(linear(x, w_ih, b_ih) + linear(h, w_hh, b_hh), nonlinearity)


# ---------------------------------------------------------------- LSTM
def lstm_update(gates: Tensor, c: Tensor, w_hr: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The LSTM's pointwise part, given gates = x W_ih^T + b_ih + h W_hh^T + b_hh of shape (N, 4H):

        i = sigmoid(gates_i)     input gate         (how much of the candidate to write)
        f = sigmoid(gates_f)     forget gate        (how much of the old cell to keep)
        g = tanh(gates_g)        candidate cell value
        o = sigmoid(gates_o)     output gate
        c' = f * c + i * g
        h' = o * tanh(c')
        h' = h' W_hr^T           with a projection (torch.nn.LSTM's proj_size = P): w_hr (P, H), h' (N, P)
    """
    i, f, g, o = gates.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    return (h_new if w_hr is None else h_new @ w_hr.t()), c_new


def lstm_cell(x: Tensor, state: tuple[Tensor, Tensor], w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """LSTM cell: (h', c') = lstm_update(x W_ih^T + b_ih + h W_hh^T + b_hh, c); see `lstm_update`."""
    h, c = state
    return lstm_update(linear(x, w_ih, b_ih) + linear(h, w_hh, b_hh), c)


# ---------------------------------------------------------------- GRU
def gru_update(gi: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """The GRU's pointwise part, given gi = x W_ih^T + b_ih and gh = h W_hh^T + b_hh, both (N, 3H):

        r = sigmoid(gi_r + gh_r)                  reset gate
        z = sigmoid(gi_z + gh_z)                  update gate
        n = tanh(gi_n + r * (W_hn h + b_hn))      candidate; b_hn sits inside the r-product, as in torch.nn
        h' = (1 - z) * n + z * h  =  n + z * (h - n)

    This is why the two projections stay separate: r multiplies the hidden side of n only.
    """
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)


def gru_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None) -> Tensor:
    """GRU cell: h' = gru_update(x W_ih^T + b_ih, h W_hh^T + b_hh, h); see `gru_update`."""
    return gru_update(linear(x, w_ih, b_ih), linear(h, w_hh, b_hh), h)
