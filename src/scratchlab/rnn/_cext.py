"""The compiled recurrent step loops (csrc/: kernel.h, the torch-free tile products over a thin vector layer;
packed.h + packed.cpp, the packed kernel's threads and layout; lstm.cpp, gru.cpp, rnn.cpp), built once with
torch.utils.cpp_extension and cached.

Variants: kernel.h is compiled for one vector ISA per build, chosen when first needed from the CPU's features
(`isa()`): avx512 where the CPU has AVX-512F, else avx2 (AVX2 and FMA), else neon on aarch64, else generic (no
packed kernel: the LSTM's library kernel and the Python loops). SCRATCHLAB_ISA=avx512|avx2|neon|generic forces one;
a choice this CPU cannot run is an `UnsupportedISA` error, not a silent fallback. `describe()` says what was
chosen and where its build is (`scratchlab info` prints it).

`ops()` returns the loaded operator namespace (`torch.ops.scratchlab_rnn`: `lstm_forward`, `lstm_forward_packed`,
`lstm_backward`, `gru_forward_packed`, `gru_backward_packed`, `rnn_forward_packed`, `rnn_backward_packed`,
`pack_gates`, `packed_available`) or None
when the extension cannot be had: no compiler or ninja, a failed build, or SCRATCHLAB_NO_CEXT=1 in the environment.
A failed build warns once and is not retried in the same process; fast.py then runs its Python step loops, which
compute the same thing. `make setup` runs `_cext.main()` so that no run pays the compile; otherwise the first use
says on stderr that it is compiling.

The build lands in torch's extension cache (TORCH_EXTENSIONS_DIR, by default ~/.cache/torch_extensions), in a folder
named by `build_key`: a hash of where the sources are, their bytes (headers too), the flags (which name the ISA),
the torch and Python versions and the CPU (the flags include -march=native). Two checkouts, or a checkout and an
installed copy, or two variants, each keep a build of their own instead of rebuilding one shared folder back and
forth, and none can load a library compiled from other sources or for another CPU. An edited source gets a new
folder; old ones stay until the cache is cleared.

Flags: -O3 -ffast-math (with the loops' `omp simd`) lets gcc vectorise the fused gate loops and their inline exp
(against the strict IEEE flags, docs/design.md); -fno-finite-math-only keeps NaN and inf propagating as in torch (a
NaN input gives NaN outputs, which is what the training loop's NaN guard looks for); -march=native because the
cache belongs to the machine that built it (the avx2 variant adds -mno-avx512f, so that neither kernel.h nor gcc's
vectorised loops use AVX-512; on aarch64 -mcpu=native). -fopenmp, compiled and linked, makes at::parallel_for (a
header template) split each step's tiles over torch's threads; without it the loops ran on one thread. The library
it links, libgomp.so.1, is the one torch has already loaded, so there is one OpenMP runtime.
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
CFLAGS = ["-O3", "-ffast-math", "-fno-finite-math-only", "-fopenmp"]  # and isa_flags(isa)
ISAS = ("avx512", "avx2", "neon", "generic")  # the order `isa()` tries them in
LDFLAGS = ["-fopenmp"]
COMPILING = "building scratchlab's recurrent kernels once (about a minute; `make setup` does it ahead)..."
_state: dict[str, object] = {}


def _cpu() -> str:
    """The CPU's model and feature flags (what -march=native compiles for); the machine type where /proc is absent."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + " " + platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")  # x86; the same facts on ARM
    return "\n".join(dict.fromkeys(line for line in lines if line.split(":")[0].strip() in wanted))


class UnsupportedISA(RuntimeError):
    """SCRATCHLAB_ISA names a variant this CPU cannot run (or none at all)."""


def cpu_features() -> set[str]:
    """The CPU's feature flags (x86 `flags`, ARM `Features` in /proc/cpuinfo), lower case; empty where unknown."""
    for line in _cpu().splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def supported_isas(features: set[str] | None = None, machine: str | None = None) -> list[str]:
    """The variants this CPU can run, fastest first (generic always)."""
    features = cpu_features() if features is None else features
    machine = (platform.machine() if machine is None else machine).lower()
    found = []
    if machine in ("x86_64", "amd64"):
        if "avx512f" in features:
            found.append("avx512")
        if {"avx2", "fma"} <= features:
            found.append("avx2")
    elif machine in ("aarch64", "arm64"):
        found.append("neon")  # Advanced SIMD is part of every aarch64 CPU
    return found + ["generic"]


def isa(environ=os.environ, features: set[str] | None = None, machine: str | None = None) -> str:
    """The variant to build: SCRATCHLAB_ISA where set (an `UnsupportedISA` error if this CPU cannot run it), else
    the first of `supported_isas()`."""
    ok = supported_isas(features, machine)
    forced = environ.get("SCRATCHLAB_ISA", "").strip().lower()
    if not forced:
        return ok[0]
    if forced not in ISAS:
        raise UnsupportedISA(f"SCRATCHLAB_ISA={forced}: not a variant; expected one of {', '.join(ISAS)}")
    if forced not in ok:
        raise UnsupportedISA(f"SCRATCHLAB_ISA={forced}: this CPU ({machine or platform.machine()}) cannot run it; "
                             f"it can run {', '.join(ok)}")
    return forced


def isa_flags(variant: str) -> list[str]:
    """The compile flags that select `variant` (kernel.h reads the SCRATCHLAB_ISA_* macro)."""
    arch = ["-mcpu=native"] if platform.machine().lower() in ("aarch64", "arm64") else ["-march=native"]
    extra = ["-mno-avx512f"] if variant == "avx2" else []
    return [*arch, *extra, f"-DSCRATCHLAB_ISA_{variant.upper()}"]


def compile_flags(variant: str | None = None) -> list[str]:
    """Every compile flag of the build of `variant` (by default `isa()`)."""
    return [*CFLAGS, *isa_flags(variant or isa())]


def build_key(csrc: Path = CSRC, cflags: list[str] | None = None, ldflags: list[str] = LDFLAGS) -> str:
    """16 hex digits of SHA-256 over everything the compiled library depends on: the sources' folder (ninja's
    commands name it, so two folders sharing one build would rebuild it in turn), every .cpp and .h in it, the
    flags, torch's and Python's versions and the CPU."""
    cflags = compile_flags() if cflags is None else cflags
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

    flags = compile_flags()
    key = build_key(CSRC, flags)
    name = f"scratchlab_rnn_{key}"  # the library's file name; the operators stay torch.ops.scratchlab_rnn
    folder = build_directory(key)
    if not (folder / f"{name}.so").exists():
        sys.stderr.write(COMPILING + "\n")
    folder.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(name, [str(p) for p in SOURCES], extra_cflags=flags, extra_ldflags=LDFLAGS,
                       extra_include_paths=[str(CSRC)], build_directory=str(folder), is_python_module=False,
                       verbose=verbose)
    return torch.ops.scratchlab_rnn


def ops():
    """The compiled operators, or None (see the module docstring). Builds on first use."""
    if "ops" not in _state:
        _state["ops"] = None
        if os.environ.get("SCRATCHLAB_NO_CEXT", "") not in ("", "0"):
            return None
        isa()  # an unsupported SCRATCHLAB_ISA is the caller's error, not a reason to fall back
        try:
            _state["ops"] = build()
        except Exception as e:  # no compiler, no ninja, a build error: the Python loops take over
            warnings.warn(f"scratchlab.rnn: compiled step loops unavailable ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}); using the Python loops",
                          RuntimeWarning, stacklevel=2)
    return _state["ops"]


def describe(load: bool = False) -> dict:
    """What the compiled step loops are here: the variant chosen (and whether SCRATCHLAB_ISA forced it), those this
    CPU can run, its model and vector features, the build's folder and status; with load=True it builds or loads
    the extension first, so that status says whether it works and `kernel_isa` which variant the loaded library
    has. Raises `UnsupportedISA` as `isa()` does."""
    variant = isa()
    features = cpu_features()
    model = next((line.split(":", 1)[1].strip() for line in _cpu().splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    key = build_key(CSRC, compile_flags(variant))
    folder = build_directory(key)
    built = (folder / f"scratchlab_rnn_{key}.so").exists()
    info = {"isa": variant, "forced": bool(os.environ.get("SCRATCHLAB_ISA", "").strip()),
            "supported": supported_isas(), "cpu": model, "machine": platform.machine(),
            "features": sorted(f for f in features if f.startswith(("avx", "fma", "amx", "sse4", "asimd", "sve"))),
            "build": str(folder), "built": built, "flags": compile_flags(variant), "kernel_isa": None, "packed": None}
    if os.environ.get("SCRATCHLAB_NO_CEXT", "") not in ("", "0"):
        info["status"] = "off (SCRATCHLAB_NO_CEXT is set): the Python loops run"
    elif load or "ops" in _state:
        o = ops()
        info["status"] = "loaded" if o is not None else "build failed: the Python loops run"
        if o is not None:
            info["kernel_isa"], info["packed"] = o.kernel_isa(), o.packed_available()
    else:
        info["status"] = "built, not loaded" if built else "not built (the first use compiles it, ~1 min)"
    return info


def main() -> None:
    """Build now (what `make setup` runs), so that no run pays the compile."""
    t0 = time.perf_counter()
    build()
    print(f"scratchlab.rnn: compiled step loops ready ({time.perf_counter() - t0:.1f} s)")  # noqa: T201


if __name__ == "__main__":
    main()
