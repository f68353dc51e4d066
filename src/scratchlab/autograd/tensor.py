"""Tensor: an n-dimensional array that remembers how it was made, and the backward pass over that graph.

Every primitive op builds its output with the operands as parents and a closure `_backward(g)` that, given
g = dL/d(out), adds dL/d(operand) into each operand's `.grad` (the chain rule). Composite ops (subtraction,
division, mean, ...) are written in terms of primitives and have no backward of their own.

    out = f(a, b)          forward: numpy on .data
    a.grad += g * df/da    backward: beside the forward, reduced back to a's shape when a was broadcast

`backward()` orders the graph topologically with an explicit stack (no recursion, so a 100,000-node chain is
fine) and calls each node's closure exactly once, after every node that uses it: a node used many times has
all its incoming gradients summed before it passes its own gradient on.

Speed without obscurity: everything stays float32 unless float64 is asked for; the first gradient reaching a
tensor is stored as is (no zeros + add) when the backward made it fresh for that tensor, later ones are added
in place; a gradient shared with another tensor (both operands of +) is never written into. As in torch, only
leaves keep `.grad` after backward: an interior node's gradient is dropped once its backward has used it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np

DEFAULT_DTYPE = np.float32
_grad_enabled = True


@contextmanager
def no_grad():
    """Inside this block ops record no graph (evaluation, optimiser updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `g` over the axes numpy broadcasting added or stretched, so it has the operand's `shape`."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True) if axes else g
    g = g.reshape(shape)
    assert g.shape == shape, f"gradient shape {g.shape} != operand shape {shape}"
    return g


class Tensor:
    """`Tensor(data, requires_grad=False, dtype=None)`: float32 unless `dtype` (e.g. np.float64) says otherwise.

    A tensor that requires grad gets its own copy of the data (optimisers update it in place, and that must
    never change the caller's array); other tensors may share it, as no op writes into its inputs.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_op", "_owns_grad")
    __array_priority__ = 100  # ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        dtype = dtype or DEFAULT_DTYPE
        self.data = np.array(data, dtype=dtype) if requires_grad else np.asarray(data, dtype=dtype)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable[[np.ndarray], None] | None = None
        self._op = ""
        self._owns_grad = False  # may `grad` be updated in place? Not when it is a view of another gradient

    # ------------------------------------------------------------------ graph machinery
    @staticmethod
    def _make(data: np.ndarray, parents: Sequence[Tensor], op: str) -> Tensor:
        """The output of an op; it joins the graph only when grad is on and some parent needs a gradient."""
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out._op, out._owns_grad = data, None, op, False
        out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
        out._parents = tuple(parents) if out.requires_grad else ()
        out._backward = None
        return out

    def _accumulate(self, g: np.ndarray, fresh: bool) -> None:
        """grad += g. `fresh`: g was made for this tensor alone, so it can be kept and later added into."""
        if not self.requires_grad:
            return
        assert g.shape == self.data.shape, f"{self._op or 'leaf'}: gradient {g.shape} != data {self.data.shape}"
        if self.grad is None:
            if not fresh and not self._parents:
                g, fresh = g.copy(), True  # a leaf's .grad is always its own array, safe to change in place
            self.grad, self._owns_grad = g, fresh
        elif self._owns_grad:
            self.grad += g
        else:
            self.grad, self._owns_grad = self.grad + g, True

    def backward(self, grad: np.ndarray | None = None) -> None:
        """Fill `.grad` of every tensor this one depends on (dL/dx with L = self, or sum(self * grad))."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (made under no_grad, or "
                               "from inputs without requires_grad=True)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a single value, got shape {self.shape}")
            grad = np.ones_like(self.data)
        order = self._topological_order()
        self._accumulate(np.array(grad, dtype=self.data.dtype).reshape(self.data.shape), fresh=True)
        for node in reversed(order):
            if node._backward is not None and node.grad is not None:  # (a leaf can be the root)
                node._backward(node.grad)
                node.grad, node._owns_grad = None, False  # as torch: only leaves keep their gradient

    def _topological_order(self) -> list[Tensor]:
        """Interior nodes, each after all the nodes it was made from (iterative depth-first search).

        Leaves are left out: they have no backward to call, they only receive gradients.
        """
        order, visited = [], {id(self)}
        stack = [(self, iter(self._parents))]
        while stack:
            node, parents = stack[-1]
            for p in parents:
                if p._parents and id(p) not in visited:
                    visited.add(id(p))
                    stack.append((p, iter(p._parents)))
                    break
            else:  # all parents done
                stack.pop()
                order.append(node)
        return order

    # ------------------------------------------------------------------ conveniences
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out.requires_grad, out._parents, out._backward, out._op, out._owns_grad = (
            self.data, None, False, (), None, "detach", False)
        return out

    def zero_grad(self) -> None:
        self.grad = None

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def _lift(self, other) -> Tensor:
        return other if isinstance(other, Tensor) else Tensor(other, dtype=self.data.dtype)

    # ------------------------------------------------------------------ primitives: elementwise
    def __add__(self, other) -> Tensor:
        other = self._lift(other)
        out = Tensor._make(self.data + other.data, (self, other), "+")

        def _backward(g):  # d(a+b)/da = d(a+b)/db = 1
            self._accumulate(unbroadcast(g, self.shape), fresh=g.shape != self.shape)
            other._accumulate(unbroadcast(g, other.shape), fresh=g.shape != other.shape)

        out._backward = _backward
        return out

    def __mul__(self, other) -> Tensor:
        other = self._lift(other)
        out = Tensor._make(self.data * other.data, (self, other), "*")

        def _backward(g):  # d(ab)/da = b, d(ab)/db = a
            if self.requires_grad:
                self._accumulate(unbroadcast(g * other.data, self.shape), fresh=True)
            if other.requires_grad:
                other._accumulate(unbroadcast(g * self.data, other.shape), fresh=True)

        out._backward = _backward
        return out

    def __neg__(self) -> Tensor:
        out = Tensor._make(-self.data, (self,), "neg")
        out._backward = lambda g: self._accumulate(-g, fresh=True)
        return out

    def __pow__(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor):
            raise TypeError("x ** y: the exponent must be a number (use exp(y * log(x)) for a tensor exponent)")
        out = Tensor._make(self.data ** exponent, (self,), f"**{exponent}")
        # d(x^p)/dx = p x^(p-1)
        out._backward = lambda g: self._accumulate(g * (exponent * self.data ** (exponent - 1)), fresh=True)
        return out

    def exp(self) -> Tensor:
        out = Tensor._make(np.exp(self.data), (self,), "exp")
        out._backward = lambda g: self._accumulate(g * out.data, fresh=True)  # d e^x = e^x
        return out

    def log(self) -> Tensor:
        out = Tensor._make(np.log(self.data), (self,), "log")
        out._backward = lambda g: self._accumulate(g / self.data, fresh=True)  # d log x = 1/x
        return out

    def tanh(self) -> Tensor:
        out = Tensor._make(np.tanh(self.data), (self,), "tanh")
        out._backward = lambda g: self._accumulate(g * (1 - out.data * out.data), fresh=True)  # 1 - tanh^2
        return out

    def sigmoid(self) -> Tensor:
        # s = 1 / (1 + e^-x), written through tanh so large |x| never overflows: s = (1 + tanh(x/2)) / 2
        out = Tensor._make(0.5 * (1 + np.tanh(0.5 * self.data)), (self,), "sigmoid")
        out._backward = lambda g: self._accumulate(g * (out.data * (1 - out.data)), fresh=True)  # s (1 - s)
        return out

    def relu(self) -> Tensor:
        out = Tensor._make(np.maximum(self.data, 0), (self,), "relu")
        out._backward = lambda g: self._accumulate(g * (out.data > 0), fresh=True)  # 1 where x > 0
        return out

    # ------------------------------------------------------------------ primitives: matmul
    def __matmul__(self, other) -> Tensor:
        other = self._lift(other)
        a, b = self.data, other.data
        out = Tensor._make(a @ b, (self, other), "@")

        def _backward(g):
            # C = A B: dA = G B^T, dB = A^T G; 1-d operands act as a row (A) or a column (B) vector.
            a2 = a[None, :] if a.ndim == 1 else a
            b2 = b[:, None] if b.ndim == 1 else b
            g2 = g[..., None] if b.ndim == 1 else g               # put back the axes 1-d operands dropped
            g2 = np.expand_dims(g2, -2) if a.ndim == 1 else g2
            if self.requires_grad:
                self._accumulate(unbroadcast(_matmul_like(g2, _mT(b2), a2), a2.shape).reshape(a.shape), fresh=True)
            if other.requires_grad:
                other._accumulate(unbroadcast(_matmul_like(_mT(a2), g2, b2), b2.shape).reshape(b.shape), fresh=True)

        out._backward = _backward
        return out

    # ------------------------------------------------------------------ primitives: reductions
    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        out = Tensor._make(self.data.sum(axis=axis, keepdims=keepdims), (self,), "sum")

        def _backward(g):  # every summed element gets g: put the reduced axes back, then broadcast
            if not keepdims and axis is not None:
                g = np.expand_dims(g, _axes(axis, self.ndim))
            self._accumulate(np.broadcast_to(g, self.shape), fresh=False)

        out._backward = _backward
        return out

    def max(self, axis=None, keepdims: bool = False) -> Tensor:
        m = self.data.max(axis=axis, keepdims=True)
        value = m if keepdims else m.reshape(()) if axis is None else np.squeeze(m, axis=axis)
        out = Tensor._make(value, (self,), "max")

        def _backward(g):  # the gradient goes to the maxima, split evenly between ties (as torch.amax)
            hit = self.data == m
            g = g.reshape(m.shape)
            self._accumulate(np.where(hit, g / hit.sum(axis=axis, keepdims=True), 0).astype(self.dtype), fresh=True)

        out._backward = _backward
        return out

    # ------------------------------------------------------------------ primitives: shape
    def reshape(self, *shape) -> Tensor:
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape
        out = Tensor._make(self.data.reshape(shape), (self,), "reshape")
        # a view of out's gradient; it may be kept and added into when out owned it (out's is released after use)
        out._backward = lambda g: self._accumulate(g.reshape(self.shape), fresh=out._owns_grad)
        return out

    def transpose(self, *axes) -> Tensor:
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], tuple | list) else axes or None
        out = Tensor._make(self.data.transpose(axes), (self,), "transpose")
        inverse = None if axes is None else tuple(np.argsort(axes))
        out._backward = lambda g: self._accumulate(g.transpose(inverse), fresh=out._owns_grad)
        return out

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __getitem__(self, index) -> Tensor:
        index = index.data if isinstance(index, Tensor) else index
        out = Tensor._make(self.data[index], (self,), "index")

        def _backward(g):  # scatter-add: an element picked twice (fancy indexing) gets both gradients
            full = np.zeros_like(self.data)
            np.add.at(full, index, g)
            self._accumulate(full, fresh=True)

        out._backward = _backward
        return out

    # ------------------------------------------------------------------ composites (no backward of their own)
    def __radd__(self, other) -> Tensor:
        return self + other

    def __sub__(self, other) -> Tensor:  # a - b
        return self + (-self._lift(other))

    def __rsub__(self, other) -> Tensor:  # other - self
        return self._lift(other) + (-self)

    def __rmul__(self, other) -> Tensor:
        return self * other

    def __truediv__(self, other) -> Tensor:  # a / b = a * b^-1
        return self * self._lift(other) ** -1

    def __rtruediv__(self, other) -> Tensor:  # other / self
        return self._lift(other) * self ** -1

    def __rmatmul__(self, other) -> Tensor:
        return self._lift(other) @ self

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        n = self.data.size if axis is None else int(np.prod([self.shape[a] for a in _axes(axis, self.ndim)]))
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / n)


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along `axis`; the gradient is cut back into the pieces."""
    tensors = list(tensors)
    out = Tensor._make(np.concatenate([t.data for t in tensors], axis=axis), tensors, "concatenate")
    ends = np.cumsum([t.shape[axis] for t in tensors])

    def _backward(g):
        for t, piece in zip(tensors, np.split(g, ends[:-1], axis=axis), strict=True):
            t._accumulate(piece, fresh=out._owns_grad)  # pieces do not overlap

    out._backward = _backward
    return out


def _axes(axis, ndim: int) -> tuple[int, ...]:
    axes = axis if isinstance(axis, tuple | list) else (axis,)
    return tuple(sorted(a % ndim for a in axes))


def _mT(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def _matmul_like(x: np.ndarray, y: np.ndarray, like: np.ndarray) -> np.ndarray:
    """x @ y, laid out in memory like `like` (the operand this gradient is for).

    For a transposed weight (Linear's W.T) the gradient is computed as (y^T x^T)^T: same numbers, same BLAS
    call with transpose flags, but the transpose's own backward then hands W a C-contiguous gradient, so the
    optimiser's elementwise updates run on matching layouts.
    """
    if like.ndim == 2 and x.ndim == 2 and like.flags.f_contiguous and not like.flags.c_contiguous:
        return (y.T @ x.T).T
    return x @ y
