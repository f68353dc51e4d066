"""benchmarks/common.py: the helpers every benchmark writes its docs/benchmarks.md section with."""
import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_section_keeps_its_key_and_names_the_script_relatively(tmp_path, monkeypatch):
    """The section is keyed by the name given (a rewrite replaces it, the others stay); the command names
    benchmarks/x.py, not the machine's absolute path (the key was once overwritten by that path)."""
    common = _common()
    monkeypatch.setattr(common, "DOC", tmp_path / "benchmarks.md")
    monkeypatch.setattr(sys, "argv", [str(BENCH / "mlp_epoch.py"), "--threads", "1"])
    common.write_section("mlp_epoch_x", "## first")
    common.write_section("other", "## other")
    common.write_section("mlp_epoch_x", "## second")
    text = common.DOC.read_text()
    assert text.count("<!-- BEGIN mlp_epoch_x -->") == 1 and "## second" in text and "## first" not in text
    assert "## other" in text
    assert "Command: `python benchmarks/mlp_epoch.py --threads 1`" in text
    assert str(BENCH) not in text


def test_section_suffix_follows_the_cpu(monkeypatch):
    common = _common()
    for isa, suffix in (("AVX-512", ""), ("AVX2", "_avx2cpu"), ("NEON", "_neoncpu"), ("", "_othercpu")):
        monkeypatch.setattr(common, "widest_isa", lambda isa=isa: isa)
        assert common.section_suffix() == suffix
