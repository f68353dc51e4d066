"""Attention over a recurrent encoder's hidden states, with the last hidden state as the query.

For hidden states o_1 .. o_L (N, L, H) and the last state q (N, H):
    s_t     = q . o_t                                    dot-product score, one per time step
    s_t     = -inf where mask_t (padding)                padded steps get exactly zero weight
    a       = softmax_t(s)                               attention weights (N, L), each row sums to 1
    context = sum_t a_t o_t                              (N, H)
    logits  = Linear(Dropout([q ; context]))             the head

Sequences are left-padded (the real tokens end at the last step), so q = o_L is the last real token's state and
the mask is True on the leading padding. The scores are not scaled by 1/sqrt(H): the query and keys are the
encoder's own bounded (tanh) states, and the weights are returned for plotting.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def attend(outputs: Tensor, last: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Dot-product attention of `last` (N, H) over `outputs` (N, L, H); mask (N, L) bool, True = padding.

    Returns context (N, H) and weights (N, L). A row whose every position is masked is an error (its softmax
    is undefined).
    """
    if outputs.dim() != 3 or last.shape != (outputs.size(0), outputs.size(2)):
        raise ValueError(f"attend: expected outputs (N, L, H) and last (N, H), got outputs {list(outputs.shape)} "
                         f"and last {list(last.shape)}")
    scores = torch.bmm(outputs, last.unsqueeze(2)).squeeze(2)  # (N, L)
    if mask is not None:
        if mask.shape != scores.shape or mask.dtype != torch.bool:
            raise ValueError(f"attend: expected a bool mask of shape {list(scores.shape)}, "
                             f"got {mask.dtype} {list(mask.shape)}")
        # a check on the data: skipped while torch.compile traces (reading a tensor's value would break the graph)
        if not torch.compiler.is_compiling() and mask.all(dim=1).any():
            raise ValueError("attend: a row of the mask is all padding; every sequence needs a real position")
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=1)
    context = torch.bmm(weights.unsqueeze(1), outputs).squeeze(1)  # (N, H)
    return context, weights


class AttentionHead(nn.Module):
    """[last; context] -> dropout -> linear; forward returns (logits (N, out_features), weights (N, L)).

    `hidden_size` is the width of the encoder's outputs (2H for a bidirectional encoder).
    """

    def __init__(self, hidden_size: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(2 * hidden_size, out_features)

    def forward(self, outputs: Tensor, last: Tensor | None = None,
                mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """outputs (N, L, H) batch-first; last defaults to outputs[:, -1] (the last real step when left-padded)."""
        last = outputs[:, -1] if last is None else last
        context, weights = attend(outputs, last, mask)
        return self.linear(self.dropout(torch.cat([last, context], dim=1))), weights
