"""A recurrent network that adds binary numbers with weights set by hand, not learned.

Two inputs x_t = (a_t, b_t) (the t-th bits, least significant first), three hard-threshold hidden units, one output:

    h_t = step(U x_t + W h_{t-1} + b_h),   h_0 given
    y_t = step(v . h_t + b_y)              step(z) = 1 if z >= 0 else 0 (Heaviside)

The reasoning, one column of schoolbook addition per time step. Let c_t be the carry into column t and
s_t = a_t + b_t + c_t in {0, 1, 2, 3}. Then the sum bit is s_t mod 2 and the carry out is [s_t >= 2].

    U = [[1, 1], [1, 1], [1, 1]]   every hidden unit sees a_t + b_t.
    W = [[0, 1, 0], [0, 1, 0], [0, 1, 0]]
                                   every hidden unit also sees h2_{t-1}: unit 2 fires exactly when the previous
                                   column's total was >= 2, which is the carry out of that column, so
                                   U x_t + W h_{t-1} = s_t for each unit. Units 1 and 3 do not feed back.
    b_h = [-0.5, -1.5, -2.5]       thresholds halfway between integers: h1 = [s >= 1], h2 = [s >= 2],
                                   h3 = [s >= 3] = [s = 3] (s is at most 3). The half-integer margins mean the
                                   pre-activation is never 0, so the choice step(0) = 1 or 0 does not matter.
    v = [1, -1, 1]                 v . h = h1 - h2 + h3 is s mod 2 for every s:
                                       s = 0: 0 - 0 + 0 = 0     s = 1: 1 - 0 + 0 = 1
                                       s = 2: 1 - 1 + 0 = 0     s = 3: 1 - 1 + 1 = 1
                                   (h3 is needed: h1 - h2 alone gives 0 for s = 3, whose sum bit is 1.)
    b_y = -0.5                     v . h is already 0 or 1; thresholding at 1/2 makes the output a hard unit too.
    h0 = [0, 0, 0]                 h2_0 = 0: no carry into the least significant column.

Inputs are fed least significant bit first, with one extra step of (0, 0) at the end: there s = carry, so the
last output is the final carry out. The sum of two n-bit numbers therefore takes n + 1 steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _step(z: Tensor) -> Tensor:
    """Heaviside: 1 where z >= 0, else 0 (in z's dtype)."""
    return (z >= 0).to(z.dtype)


def _bits(n: int, width: int) -> list[int]:
    """The `width` lowest bits of n, least significant first."""
    return [(n >> t) & 1 for t in range(width)]


class BinaryAdderRNN(nn.Module):
    """The hand-set binary adder; see the module docstring for every weight's reasoning.

    Weights are buffers (in the state dict, not trained): U (3, 2), W (3, 3), b_h (3,), v (3,), b_y (), h0 (3,).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("U", torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]))
        self.register_buffer("W", torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
        self.register_buffer("b_h", torch.tensor([-0.5, -1.5, -2.5]))
        self.register_buffer("v", torch.tensor([1.0, -1.0, 1.0]))
        self.register_buffer("b_y", torch.tensor(-0.5))
        self.register_buffer("h0", torch.zeros(3))

    def forward(self, bits: Tensor) -> tuple[Tensor, Tensor]:
        """bits (L, 2) or (N, L, 2) of 0/1, least significant first -> outputs y (L,) / (N, L) and hidden states
        h (L, 3) / (N, L, 3), in the weights' dtype. Append a (0, 0) step yourself to read out the final carry."""
        if bits.dim() not in (2, 3) or bits.size(-1) != 2:
            raise ValueError(f"BinaryAdderRNN: expected bits of shape (L, 2) or (N, L, 2), got {list(bits.shape)}")
        if ((bits != 0) & (bits != 1)).any():
            raise ValueError("BinaryAdderRNN: bits must be 0 or 1")
        batched = bits.dim() == 3
        x = (bits if batched else bits.unsqueeze(0)).to(self.U.dtype)
        xu = x @ self.U.t()  # (N, L, 3): the input part of every step at once
        h = self.h0.expand(x.size(0), 3)
        hs = []
        for u in xu.unbind(1):
            h = _step(u + h @ self.W.t() + self.b_h)
            hs.append(h)
        hidden = torch.stack(hs, dim=1)  # (N, L, 3)
        y = _step(hidden @ self.v + self.b_y)  # (N, L)
        return (y, hidden) if batched else (y.squeeze(0), hidden.squeeze(0))

    @staticmethod
    def encode(a: int, b: int) -> Tensor:
        """(a, b) -> bits (L, 2), least significant first, with the extra (0, 0) step for the final carry."""
        if not isinstance(a, int) or not isinstance(b, int) or a < 0 or b < 0:
            raise ValueError(f"BinaryAdderRNN: expected two non-negative ints, got {a!r} and {b!r}")
        width = max(a.bit_length(), b.bit_length(), 1) + 1
        return torch.tensor([_bits(a, width), _bits(b, width)]).t()

    def add(self, a: int, b: int) -> int:
        """a + b computed by the network."""
        with torch.no_grad():
            y, _ = self(self.encode(a, b))
        return sum(int(bit) << t for t, bit in enumerate(y.tolist()))

    def trace(self, a: int, b: int) -> list[dict]:
        """One dict per step: step, a, b (the input bits), h (the three hidden units) and y (the output bit)."""
        bits = self.encode(a, b)
        with torch.no_grad():
            y, h = self(bits)
        return [{"step": t, "a": int(bits[t, 0]), "b": int(bits[t, 1]), "h": [int(u) for u in h[t].tolist()],
                 "y": int(y[t])} for t in range(len(bits))]

    def format_trace(self, a: int, b: int) -> str:
        """A table of the trace; `carry` is the previous step's h2, the carry into this column."""
        lines = [f"{a:b} + {b:b}, least significant bit first (the last step reads out the final carry)",
                 "step  a  b  carry  h1[s>=1] h2[s>=2] h3[s=3]  y"]
        carry = int(self.h0[1])
        for r in self.trace(a, b):
            h1, h2, h3 = r["h"]
            lines.append(f"{r['step']:>4}  {r['a']}  {r['b']}  {carry:>5}  {h1:>8} {h2:>8} {h3:>7}  {r['y']}")
            carry = h2
        return "\n".join(lines)
