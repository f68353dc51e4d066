"""What the sequence experiments share: a recurrent network from scratchlab.rnn with a linear head, gate-bias
initialisation, and the optimiser choice. (A leading underscore: this module registers no experiment.)"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from scratchlab import rnn

Kind = Literal["rnn", "lstm", "gru"]
Optimizer = Literal["rmsprop", "adam"]
RECURRENT: dict[str, type[nn.Module]] = {"rnn": rnn.RNN, "lstm": rnn.LSTM, "gru": rnn.GRU}


def set_gate_bias(layer: nn.Module, kind: str, value: float) -> None:
    """Start the gate that keeps the old state open: b_ih + b_hh = `value` for every unit, every layer.

    LSTM: the forget gate f (second of the i|f|g|o blocks); c_t = f * c_{t-1} + i * g, so sigmoid(value) of the
    memory survives each step at the start of training instead of about one half (Gers et al. 2000, Jozefowicz
    et al. 2015). GRU: the update gate z (second of r|z|n); h_t = (1 - z) * n + z * h_{t-1}, the same role.
    A plain RNN has no gate: asking for one is an error.
    """
    if kind not in ("lstm", "gru"):
        raise ValueError(f"gate_bias needs a gated model (lstm or gru), got model={kind!r}")
    hidden = layer.hidden_size
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("bias_ih"):
                p[hidden:2 * hidden] = value
            elif name.startswith("bias_hh"):
                p[hidden:2 * hidden] = 0.0


class RecurrentNet(nn.Module):
    """x (N, L, D) -> recurrent layer (batch_first) -> linear head.

    `last_only=True`: logits (N, C) from the last hidden state (sequence classification, the palindrome);
    `last_only=False`: logits (N, L, C), one per step (binary addition, character prediction).
    """

    def __init__(self, kind: str, input_size: int, hidden: int, n_out: int, *, last_only: bool = True,
                 gate_bias: float | None = None):
        super().__init__()
        if kind not in RECURRENT:
            raise ValueError(f"model must be one of {sorted(RECURRENT)}, got {kind!r}")
        self.rnn = RECURRENT[kind](input_size, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)
        self.last_only = last_only
        if gate_bias is not None:
            set_gate_bias(self.rnn, kind, gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (N, L, H)
        return self.head(out[:, -1] if self.last_only else out)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {name!r}")


def clipped_step(loss: torch.Tensor, model: nn.Module, opt: torch.optim.Optimizer, clip: float) -> float:
    """Backward, clip the global gradient norm to `clip` (<= 0: no clipping), step. Returns the norm before clipping."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf"))
    opt.step()
    return float(norm)
