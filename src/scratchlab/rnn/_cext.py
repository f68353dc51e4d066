"""The compiled recurrent step loops (csrc/: packed.h + packed.cpp, the packed kernel they share; lstm.cpp, gru.cpp,
rnn.cpp), built once with torch.utils.cpp_extension and cached.

`ops()` returns the loaded operator namespace (`torch.ops.scratchlab_rnn`: `lstm_forward`, `lstm_forward_packed`,
`lstm_backward`, `gru_forward_packed`, `gru_backward_packed`, `rnn_forward_packed`, `rnn_backward_packed`,
`pack_gates`, `packed_available`) or None
when the extension cannot be had: no compiler or ninja, a failed build, or SCRATCHLAB_NO_CEXT=1 in the environment.
A failed build warns once and is not retried in the same process; fast.py then runs its Python step loops, which
compute the same thing. The build lands in torch's extension cache (TORCH_EXTENSIONS_DIR, by default
~/.cache/torch_extensions) and is reused while the source and flags are unchanged; `make setup` runs
`_cext.main()` so that no run pays the compile (about half a minute).

Flags: -O3 -ffast-math (with the loops' `omp simd`) lets gcc vectorise the fused gate loops and their inline exp
(14.5 -> 11.8 us per step at batch 64, hidden 128, against the strict IEEE flags); -fno-finite-math-only keeps NaN
and inf propagating as in torch (a NaN input gives NaN outputs, which is what the training loop's NaN guard looks
for); -march=native because the cache belongs to the machine that built it (and turns on the AVX-512 kernel where
the CPU has it). -fopenmp, compiled and linked, makes at::parallel_for (a header template) split each step's tiles
over torch's threads; without it the loops ran on one thread (2 threads, shape b forward: 33.1 -> 17.3 ms). The
library it links, libgomp.so.1, is the one torch has already loaded, so there is one OpenMP runtime.
-ffast-math goes to the compile step only, so the link does not add crtfastmath (flush-to-zero for the process).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"
SOURCES = [CSRC / "packed.cpp", CSRC / "lstm.cpp", CSRC / "gru.cpp", CSRC / "rnn.cpp"]
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
_state: dict[str, object] = {}


def build(verbose: bool = False):
    """Compile (or find in the cache) and load the extension; raises on failure."""
    from torch.utils import cpp_extension

    # ninja tracks the header through the compiler's dependency files, so editing packed.h rebuilds too
    cpp_extension.load("scratchlab_rnn", [str(p) for p in SOURCES], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS,
                       extra_include_paths=[str(CSRC)], is_python_module=False, verbose=verbose)
    return torch.ops.scratchlab_rnn


def ops():
    """The compiled operators, or None (see the module docstring). Builds on first use."""
    if "ops" not in _state:
        _state["ops"] = None
        if os.environ.get("SCRATCHLAB_NO_CEXT", "") not in ("", "0"):
            return None
        try:
            _state["ops"] = build()
        except Exception as e:  # no compiler, no ninja, a build error: the Python loops take over
            warnings.warn(f"scratchlab.rnn: compiled step loops unavailable ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}); using the Python loops",
                          RuntimeWarning, stacklevel=2)
    return _state["ops"]


def main() -> None:
    """Build now (what `make setup` runs), so that no run pays the compile."""
    t0 = time.perf_counter()
    build()
    print(f"scratchlab.rnn: compiled step loops ready ({time.perf_counter() - t0:.1f} s)")  # noqa: T201


if __name__ == "__main__":
    main()
