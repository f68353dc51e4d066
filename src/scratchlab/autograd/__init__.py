"""A small automatic-differentiation engine in NumPy: Tensor, functional, nn (modules), optim (SGD, Adam).

    from scratchlab.autograd import Tensor, nn, optim
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    (x * x).sum().backward()      # x.grad == 2 x
"""

from scratchlab.autograd import functional, nn, optim
from scratchlab.autograd.tensor import Tensor, concatenate, no_grad

__all__ = ["Tensor", "concatenate", "functional", "nn", "no_grad", "optim"]
