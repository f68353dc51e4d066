"""Choosing the kernel variant (rnn/_cext.py): from the CPU's features, or forced by SCRATCHLAB_ISA, and a clear
error for a choice this CPU cannot run; then the parity tests (test_rnn_cext.py, test_rnn_fast.py) again under each
other x86 variant, in a subprocess (one process loads one build of the extension)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchlab.rnn import _cext

ROOT = Path(__file__).resolve().parents[1]
ZEN5 = {"avx512f", "avx2", "fma"}
HASWELL = {"avx2", "fma"}


@pytest.mark.parametrize("features, machine, want", [
    (ZEN5, "x86_64", ["avx512", "avx2", "generic"]),
    (HASWELL, "x86_64", ["avx2", "generic"]),
    ({"avx2"}, "x86_64", ["generic"]),                      # AVX2 without FMA: no packed kernel
    ({"fp", "asimd"}, "aarch64", ["neon", "generic"]),
    (set(), "riscv64", ["generic"]),
])
def test_supported_variants_follow_the_cpu(features, machine, want):
    assert _cext.supported_isas(features, machine) == want


def test_the_cpus_best_variant_is_the_default():
    assert _cext.isa({}, ZEN5, "x86_64") == "avx512"
    assert _cext.isa({}, HASWELL, "x86_64") == "avx2"
    assert _cext.isa({}, {"asimd"}, "aarch64") == "neon"
    assert _cext.isa({"SCRATCHLAB_ISA": "generic"}, ZEN5, "x86_64") == "generic"
    assert _cext.isa({"SCRATCHLAB_ISA": "AVX2"}, ZEN5, "x86_64") == "avx2"


@pytest.mark.parametrize("forced, features, machine, message", [
    ("avx512", HASWELL, "x86_64", "SCRATCHLAB_ISA=avx512: this CPU (x86_64) cannot run it; it can run avx2, generic"),
    ("neon", ZEN5, "x86_64", "SCRATCHLAB_ISA=neon: this CPU (x86_64) cannot run it"),
    ("avx2", {"asimd"}, "aarch64", "SCRATCHLAB_ISA=avx2: this CPU (aarch64) cannot run it; it can run neon, generic"),
    ("sse9", ZEN5, "x86_64", "SCRATCHLAB_ISA=sse9: not a variant; expected one of avx512, avx2, neon, generic"),
])
def test_an_unsupported_choice_is_a_one_line_error(forced, features, machine, message):
    with pytest.raises(_cext.UnsupportedISA) as e:
        _cext.isa({"SCRATCHLAB_ISA": forced}, features, machine)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_an_unsupported_choice_stops_the_kernels_instead_of_falling_back(monkeypatch):
    monkeypatch.setattr(_cext, "_state", {})
    monkeypatch.setenv("SCRATCHLAB_ISA", "neon" if _cext.platform.machine() == "x86_64" else "avx2")
    with pytest.raises(_cext.UnsupportedISA):
        _cext.ops()


def test_each_variant_has_a_build_of_its_own():
    keys = {v: _cext.build_key(_cext.CSRC, _cext.compile_flags(v)) for v in _cext.ISAS}
    assert len(set(keys.values())) == len(keys)
    assert "-mno-avx512f" in _cext.compile_flags("avx2") and "-DSCRATCHLAB_ISA_AVX2" in _cext.compile_flags("avx2")


@pytest.mark.skipif(os.environ.get("SCRATCHLAB_NO_CEXT", "") not in ("", "0"), reason="compiled kernels are off")
@pytest.mark.skipif(_cext.platform.machine() != "x86_64", reason="the x86 variants")
@pytest.mark.parametrize("variant", ["avx2", "generic"])
def test_parity_suite_under_another_variant(variant):
    """Builds the variant (once per machine and source: ~45 s on a quiet core) and runs the compiled-kernel parity
    tests with it; the default variant runs them in the main suite."""
    if variant not in _cext.supported_isas():
        pytest.skip(f"this CPU cannot run {variant}")
    if variant == _cext.isa():
        pytest.skip(f"{variant} is this process's variant: the main suite covers it")
    env = {**os.environ, "SCRATCHLAB_ISA": variant, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/test_rnn_cext.py", "tests/test_rnn_fast.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_info_command_reports_the_variant_and_each_layer(capsys):
    from scratchlab.cli import main

    assert main(["info", "--no-build"]) == 0
    out = capsys.readouterr().out
    assert f"kernels: {_cext.isa()} variant" in out and "build: " in out and "status: " in out
    assert all(f"  {name}: " in out for name in ("LSTM", "GRU", "RNN")) and "torch " in out


def test_info_command_says_an_unsupported_choice_in_one_line(monkeypatch, capsys):
    from scratchlab.cli import main

    monkeypatch.setenv("SCRATCHLAB_ISA", "sse9")
    assert main(["info", "--no-build"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "SCRATCHLAB_ISA=sse9: not a variant" in err
