"""scratchlab: classic recurrent and generative models from primitives, checked against PyTorch.

From Python: `scratchlab.run(name, ...)`, `scratchlab.sweep(name, grid=..., seeds=...)` and
`scratchlab.load_run(path)`; see scratchlab.api. Importing scratchlab loads none of it (nor torch): each loads on
first use.
"""

import types as _types

__version__ = "0.1.0"
__all__ = ["Run", "load_run", "run", "sweep"]


class _CallablePackage(_types.ModuleType):
    """The packages scratchlab.run and scratchlab.sweep, callable as scratchlab.api.run and scratchlab.api.sweep.

    A function cannot simply sit beside a subpackage of the same name: the first `import scratchlab.run.config`
    would replace `scratchlab.run` with the package. So the package module itself is made callable, and
    `scratchlab.run.rundir` and `scratchlab.run("palindrome")` both work."""

    def _target(self):
        from scratchlab import api

        return getattr(api, self.__name__.rpartition(".")[2])

    def __call__(self, *args, **kwargs):
        return self._target()(*args, **kwargs)

    @property
    def __signature__(self):  # what a notebook's help on scratchlab.run(...) shows
        import inspect

        return inspect.signature(self._target())


from scratchlab import run as _run_package  # noqa: E402  (both are docstring-only __init__ files: cheap)
from scratchlab import sweep as _sweep_package  # noqa: E402

_run_package.__class__ = _sweep_package.__class__ = _CallablePackage


def __getattr__(name: str):
    if name in ("Run", "load_run"):
        from scratchlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'scratchlab' has no attribute {name!r}")
