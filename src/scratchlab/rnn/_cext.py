"""The compiled recurrent step loops (csrc/: packed.h + packed.cpp, the packed kernel they share; lstm.cpp, gru.cpp,
rnn.cpp), built once with torch.utils.cpp_extension and cached.

`ops()` returns the loaded operator namespace (`torch.ops.scratchlab_rnn`: `lstm_forward`, `lstm_forward_packed`,
`lstm_backward`, `gru_forward_packed`, `gru_backward_packed`, `rnn_forward_packed`, `rnn_backward_packed`,
`pack_gates`, `packed_available`) or None
when the extension cannot be had: no compiler or ninja, a failed build, or SCRATCHLAB_NO_CEXT=1 in the environment.
A failed build warns once and is not retried in the same process; fast.py then runs its Python step loops, which
compute the same thing. `make setup` runs `_cext.main()` so that no run pays the compile; otherwise the first use
says on stderr that it is compiling.

The build lands in torch's extension cache (TORCH_EXTENSIONS_DIR, by default ~/.cache/torch_extensions), in a folder
named by `build_key`: a hash of where the sources are, their bytes (headers too), the flags, the torch and Python
versions and the CPU (the flags include -march=native). Two checkouts, or a checkout and an installed copy, each
keep a build of their own instead of rebuilding one shared folder back and forth, and none can load a library
compiled from other sources or for another CPU. An edited source gets a new folder; old ones stay until the cache is
cleared.

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

import hashlib
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"
SOURCES = [CSRC / "packed.cpp", CSRC / "lstm.cpp", CSRC / "gru.cpp", CSRC / "rnn.cpp"]
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
COMPILING = "compiling scratchlab's recurrent kernels (first run only, ~1 min)..."
_state: dict[str, object] = {}


def _cpu() -> str:
    """The CPU's model and feature flags (what -march=native compiles for); the machine type where /proc is absent."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + " " + platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")  # x86; the same facts on ARM
    return "\n".join(dict.fromkeys(line for line in lines if line.split(":")[0].strip() in wanted))


def build_key(csrc: Path = CSRC, cflags: list[str] = CFLAGS, ldflags: list[str] = LDFLAGS) -> str:
    """16 hex digits of SHA-256 over everything the compiled library depends on: the sources' folder (ninja's
    commands name it, so two folders sharing one build would rebuild it in turn), every .cpp and .h in it, the
    flags, torch's and Python's versions and the CPU."""
    h = hashlib.sha256()
    for part in (str(Path(csrc).resolve()), *cflags, "|", *ldflags, torch.__version__, sys.version, _cpu()):
        h.update(part.encode() + b"\0")
    for path in sorted(Path(csrc).iterdir()):
        if path.suffix in (".cpp", ".h"):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_directory(key: str) -> Path:
    """Where the build of `key` lives: a folder of its own in torch's extension cache."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    return Path(root) / f"scratchlab_rnn_{key}"


def build(verbose: bool = False):
    """Compile (or find in the cache) and load the extension; raises on failure."""
    from torch.utils import cpp_extension

    key = build_key()
    name = f"scratchlab_rnn_{key}"  # the library's file name; the operators stay torch.ops.scratchlab_rnn
    folder = build_directory(key)
    if not (folder / f"{name}.so").exists():
        sys.stderr.write(COMPILING + "\n")
    folder.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(name, [str(p) for p in SOURCES], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS,
                       extra_include_paths=[str(CSRC)], build_directory=str(folder), is_python_module=False,
                       verbose=verbose)
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
