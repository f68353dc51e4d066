"""Modules: objects that own parameters and compose tensor ops. torch.nn's names, shapes and initialisation.

A Module finds its parameters by looking at its attributes: Tensors with requires_grad, sub-Modules, and
lists of Modules. Names are dotted paths (`0.weight` inside a Sequential, `encoder.bias`), the same as torch's,
so `state_dict()` keys match the torch model of the same structure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scratchlab.autograd import functional as F
from scratchlab.autograd.tensor import DEFAULT_DTYPE, Tensor


class Module:
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, list | tuple):
                yield from ((f"{name}.{i}", m) for i, m in enumerate(value) if isinstance(m, Module))

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad:
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None  # the next backward assigns a fresh gradient: no zero-filling pass

    def train(self, mode: bool = True) -> Module:
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays (or anything np.asarray accepts, e.g. CPU torch tensors) into the parameters."""
        own = dict(self.named_parameters())
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, p in own.items():
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {value.shape}, expected {p.shape}")
            p.data[...] = value

    def save(self, path: str | Path) -> Path:
        """Parameters to an .npz file (one array per dotted name)."""
        path = Path(path)
        np.savez(path, **self.state_dict())
        return path

    def load(self, path: str | Path) -> Module:
        with np.load(path, allow_pickle=False) as f:
            self.load_state_dict({k: f[k] for k in f.files})
        return self

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self.named_children())
        return f"{type(self).__name__}({self.extra_repr()}{inner}{chr(10) if inner else ''})"

    def extra_repr(self) -> str:
        return ""


class Linear(Module):
    """y = x W^T + b, W (out_features, in_features), b (out_features,).

    Initialised as torch.nn.Linear: W, b ~ U(-1/sqrt(in_features), 1/sqrt(in_features)) (kaiming_uniform
    with a = sqrt(5) works out to that bound). `rng`: a np.random.Generator; default the global np.random.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=DEFAULT_DTYPE, rng=None):
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / np.sqrt(in_features)
        uniform = (rng or np.random).uniform
        self.weight = Tensor(uniform(-bound, bound, (out_features, in_features)), requires_grad=True, dtype=dtype)
        self.bias = Tensor(uniform(-bound, bound, (out_features,)), requires_grad=True, dtype=dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)  # x W^T + b: (N, in) -> (N, out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class Dropout(Module):
    """Training: zero each element with probability p and scale the rest by 1/(1-p). Eval: identity."""

    def __init__(self, p: float = 0.5, rng=None):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = (self.rng or np.random).random(x.shape) >= self.p
        return x * (keep * (1.0 / (1.0 - self.p))).astype(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Sequential(Module):
    """Layers applied in order; children are named "0", "1", ... as in torch.nn.Sequential."""

    def __init__(self, *layers: Module):
        self.layers = list(layers)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return ((str(i), m) for i, m in enumerate(self.layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)


class CrossEntropyLoss(Module):
    def __init__(self, reduction: str = "mean"):
        self.reduction = reduction

    def forward(self, logits: Tensor, targets) -> Tensor:
        return F.cross_entropy(logits, targets, reduction=self.reduction)


def mlp(sizes: list[int], dropout: float = 0.0, dtype=DEFAULT_DTYPE, rng=None) -> Sequential:
    """Linear-ReLU(-Dropout) stacks: sizes [784, 512, 256, 10] -> 3 Linear layers, ReLU between them."""
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Linear(n_in, n_out, dtype=dtype, rng=rng))
        if i < len(sizes) - 2:
            layers.append(ReLU())
            if dropout:
                layers.append(Dropout(dropout, rng=rng))
    return Sequential(*layers)
