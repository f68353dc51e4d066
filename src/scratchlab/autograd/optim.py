"""Optimisers, with torch.optim's update rules (same numbers for the same gradients).

All updates happen in place on `p.data` and on the optimiser's own buffers; gradients are only read.
"""

from __future__ import annotations

import math

import numpy as np

from scratchlab.autograd.tensor import Tensor


class Optimizer:
    def __init__(self, params, **hyper):
        self.params: list[Tensor] = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got no parameters to optimise")
        self.hyper = hyper
        self.state: dict[int, dict[str, np.ndarray]] = {}  # parameter index -> buffers
        self.steps = 0
        self._scratch = [np.empty_like(p.data) for p in self.params]  # update buffers, reused every step

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.steps += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.update(p.data, p.grad, self.state.setdefault(i, {}), self._scratch[i])

    def update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], tmp: np.ndarray) -> None:
        """Update `p` in place from its gradient `g` (read only); `tmp` is a scratch array of p's shape, so the
        update allocates nothing (fresh large arrays cost page faults on every step)."""
        raise NotImplementedError

    @property
    def lr(self) -> float:
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hyper["lr"] = value

    def state_dict(self) -> dict:
        return {"hyper": dict(self.hyper), "steps": self.steps,
                "state": {str(i): {k: v.copy() for k, v in s.items()} for i, s in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of state_dict(); buffers may be arrays or anything np.asarray accepts (CPU torch tensors)."""
        self.hyper.update(state["hyper"])
        self.steps = int(state["steps"])
        self.state = {}
        for i, bufs in state["state"].items():
            p = self.params[int(i)]
            self.state[int(i)] = {k: np.asarray(v).astype(p.dtype).reshape(p.shape) for k, v in bufs.items()}


class SGD(Optimizer):
    """torch.optim.SGD: g = grad + wd p; buf = momentum buf + (1 - dampening) g (buf = g at first);
    step along buf (or g + momentum buf with nesterov); p -= lr step."""

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov)

    def update(self, p, g, state, tmp):
        h = self.hyper
        if h["weight_decay"]:
            g = np.add(g, h["weight_decay"] * p, out=tmp)
        if h["momentum"]:
            buf = state.get("momentum")
            if buf is None:
                buf = state["momentum"] = np.array(g, copy=True)
            else:
                buf *= h["momentum"]
                buf += g if h["dampening"] == 0 else (1 - h["dampening"]) * g
            g = np.add(g, h["momentum"] * buf, out=tmp) if h["nesterov"] else buf
        p -= np.multiply(g, h["lr"], out=tmp)


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient, as torch's Adam; AdamW is different):

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def update(self, p, g, state, tmp):
        h = self.hyper
        b1, b2 = h["betas"]
        if h["weight_decay"]:
            g = g + h["weight_decay"] * p
        if not state:
            state["m"], state["v"] = np.zeros_like(p), np.zeros_like(p)
        m, v = state["m"], state["v"]
        m += (1 - b1) * (g - m)              # torch's lerp: m + (1 - b1)(g - m)
        v *= b2
        v += (1 - b2) * (g * g)
        t = self.steps
        denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + h["eps"]
        p -= (h["lr"] / (1 - b1 ** t)) * m / denom
