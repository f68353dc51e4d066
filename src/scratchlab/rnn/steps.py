"""Which rows each time step has: the one layout of every recurrent buffer in the fast path (Python's mirror of
`Steps` in csrc/packed.h).

A per-step buffer is 2-D, (N, width), and holds step t's rows at off[t] .. off[t] + bs[t]: the first bs[t] sequences
of the batch, those still running at step t. That is a PackedSequence's `data` (sequences sorted by falling length,
so bs is non-increasing and bs[0] = B); a padded batch (T, B, width) is the case bs[t] = B, off[t] = t B, so it
needs no copy. Step products and cell updates run on a step's bs[t] rows only, never on padding.

A forward run takes t = 0 .. T-1; a reverse one T-1 .. 0, in which each sequence starts at its own last step: step
t's rows [bs[t+1], bs[t]) start from h0 there (torch.nn's reverse direction). A sequence's final state is the row of
its last step run (`ends`: forward, step len_b - 1; reverse, step 0); the initial state is read at its first step run
(`starts`).

    x (N, I) -> outputs (N, H)     h0, c0, h_n, c_n (B, H)
"""

from __future__ import annotations

import itertools

import torch

Tensor = torch.Tensor


class Steps:
    """The step layout of one direction: `batch_sizes` None (a padded batch of rows // batch steps) or PackedSequence's
    (T,) int64 CPU tensor."""

    def __init__(self, batch_sizes: Tensor | None, rows: int, batch: int, reverse: bool) -> None:
        if batch_sizes is None:
            if rows % batch:
                raise ValueError(f"{rows} rows are not whole steps of a batch of {batch}")
            self.sizes = [batch] * (rows // batch)
        else:
            self.sizes = batch_sizes.tolist()
            if sum(self.sizes) != rows or self.sizes[0] != batch or any(
                    b > a for a, b in zip(self.sizes, self.sizes[1:], strict=False)):
                raise ValueError(f"batch_sizes {self.sizes} do not describe {rows} rows of a batch of {batch} "
                                 "sorted by falling length")
        self.batch_sizes, self.B, self.N, self.T, self.reverse = batch_sizes, batch, rows, len(self.sizes), reverse
        self.uniform = self.sizes[0] == self.sizes[-1]
        self.offsets = list(itertools.accumulate(self.sizes, initial=0))

    def order(self) -> list[int]:
        """The steps in the order the run takes them."""
        return list(range(self.T - 1, -1, -1)) if self.reverse else list(range(self.T))

    def split(self, buf: Tensor) -> list[Tensor]:
        """Per-step views of a (N, width) buffer, each (bs[t], width)."""
        return list(buf.split(self.sizes))

    def carried(self, t: int) -> int:
        """Rows of step t whose state comes from the step run before it (the others start from h0)."""
        if self.reverse:
            return self.sizes[t + 1] if t + 1 < self.T else 0
        return self.sizes[t] if t > 0 else 0

    def continued(self, t: int) -> int:
        """Rows of step t that feed the step run after it (the backward's dG_next W_hh covers these)."""
        if self.reverse:
            return self.sizes[t] if t > 0 else 0
        return self.sizes[t + 1] if t + 1 < self.T else 0

    def previous(self, views: list[Tensor], init: Tensor, t: int) -> Tensor:
        """(bs[t], width): the state step t starts from, a view of the previous step's rows or of init, or both
        joined where sequences start (a reverse step with bs[t] > bs[t+1])."""
        carried, n = self.carried(t), self.sizes[t]
        if carried == 0:
            return init[:n]
        before = views[t + 1] if self.reverse else views[t - 1]
        if carried == n:
            return before[:n]
        return torch.cat([before, init[carried:n]])

    def previous_all(self, views: list[Tensor], init: Tensor) -> Tensor:
        """(N, width): every row's previous state, in the rows' order (a copy)."""
        return torch.cat([self.previous(views, init, t) for t in range(self.T)])

    def _index(self, last: bool) -> Tensor:
        """(B,) int64: each sequence's row at its last (or first) step of the run."""
        lengths = torch.tensor(self.sizes).unsqueeze(0) > torch.arange(self.B).unsqueeze(1)   # (B, T)
        at_end = lengths.sum(1) - 1                                                          # len_b - 1
        step = at_end if last != self.reverse else torch.zeros_like(at_end)
        return torch.tensor(self.offsets[:-1])[step] + torch.arange(self.B)

    def ends(self, buf: Tensor) -> Tensor:
        """(B, width), a copy: each sequence's row at its last step run (its final state)."""
        if self.uniform:
            return (buf[:self.B] if self.reverse else buf[self.N - self.B:]).clone()
        return buf.index_select(0, self._index(last=True).to(buf.device))

    def starts(self, buf: Tensor) -> Tensor:
        """(B, width): each sequence's row at its first step run (where it read the initial state)."""
        if self.uniform or not self.reverse:
            return buf[self.N - self.B:] if self.reverse else buf[:self.B]
        return buf.index_select(0, self._index(last=False).to(buf.device))

    def add_at_ends(self, buf: Tensor, v: Tensor) -> Tensor:
        """buf (N, width) with v (B, width) added at each sequence's last row: a contiguous copy."""
        buf = buf.clone(memory_format=torch.contiguous_format)
        if self.uniform:
            (buf[:self.B] if self.reverse else buf[self.N - self.B:]).add_(v)
        else:
            buf.index_add_(0, self._index(last=True).to(buf.device), v)
        return buf

    def previous_pairs(self, out: Tensor, h0: Tensor, dG: Tensor) -> list[tuple[Tensor, Tensor]]:
        """[(A, D), ...] with sum A^T D = H_prev^T dG over all rows, H_prev the state each row read: for a padded
        batch two products on views (the h0 rows and the rest), no copy; else one product on the gathered states."""
        B, N = self.B, self.N  # noqa: N806
        if not self.uniform:
            return [(self.previous_all(self.split(out), h0), dG)]
        if self.reverse:
            pairs = [(h0, dG[N - B:])] + ([(out[B:], dG[:N - B])] if N > B else [])
        else:
            pairs = [(h0, dG[:B])] + ([(out[:N - B], dG[B:])] if N > B else [])
        return pairs
