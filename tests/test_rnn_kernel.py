"""The packed kernel's torch-free core (rnn/csrc/kernel.h) against its scalar reference, per vector ISA.

tests/csrc/kernel_test.cpp checks every tile product (plain and the GRU's mapped one, every row and panel count,
with and without bias), every weight-gradient accumulate and the pointwise exp/sigmoid, asking the vector code
for the reference's exact bits. It is compiled here with the extension's optimisation flags for each variant this
machine can run, and for aarch64 NEON with Debian's cross compiler, run under qemu-user (correctness only; skipped
where g++-aarch64-linux-gnu or qemu-user is absent). Every variant must also print the same hash of the
reference's outputs: the reference is one computation on every ISA.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from scratchlab.rnn import _cext

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "csrc" / "kernel_test.cpp"
FLAGS = ["-std=c++20", "-O3", "-ffast-math", "-fno-finite-math-only", f"-I{_cext.CSRC}"]  # as the extension's
X86 = platform.machine().lower() in ("x86_64", "amd64")
HASHES: dict[str, str] = {}


def run_variant(tmp_path: Path, compiler: str, flags: list[str], runner: list[str], isa: str) -> str:
    """Compile kernel_test.cpp for `isa`, run it, return its hash (and fail on any mismatch it reports)."""
    exe = tmp_path / f"kernel_test_{isa}"
    subprocess.run([compiler, *FLAGS, *flags, f"-DSCRATCHLAB_ISA_{isa.upper()}", str(SOURCE), "-o", str(exe)],
                   check=True, capture_output=True, text=True, timeout=300)
    done = subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    words = done.stdout.split()
    assert words[:2] == ["ok", isa], done.stdout
    return words[3]


@pytest.mark.skipif(not shutil.which("g++"), reason="no g++")
@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_native_variant_gives_the_reference_bits(tmp_path, isa):
    if isa != "scalar" and (not X86 or isa not in _cext.supported_isas()):
        pytest.skip(f"this CPU cannot run {isa}")
    flags = ["-march=native"] + (["-mno-avx512f"] if isa == "avx2" else [])
    HASHES[isa] = run_variant(tmp_path, "g++", flags, [], isa)
    assert len(set(HASHES.values())) == 1, HASHES


@pytest.mark.skipif(not (shutil.which("aarch64-linux-gnu-g++") and shutil.which("qemu-aarch64")),
                    reason="no aarch64 cross compiler or qemu-user (apt-get install g++-aarch64-linux-gnu qemu-user)")
@pytest.mark.parametrize("isa", ["neon", "scalar"])
def test_aarch64_variant_under_qemu_gives_the_reference_bits(tmp_path, isa):
    # static: qemu-user then needs no aarch64 sysroot at run time
    HASHES[f"aarch64 {isa}"] = run_variant(tmp_path, "aarch64-linux-gnu-g++", ["-static"], ["qemu-aarch64"], isa)
    assert len(set(HASHES.values())) == 1, HASHES
