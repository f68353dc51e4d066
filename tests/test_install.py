"""A regular (non-editable) install keeps the compiled kernels: the wheel carries csrc/'s sources and headers, and
in a fresh virtualenv holding only that wheel the kernels build and load (issue 18: the wheel once lacked packed.h,
so an installed copy silently ran the Python loops)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "src" / "scratchlab" / "rnn" / "csrc"


def _tracked_copy(dest: Path) -> Path:
    """The checkout's tracked and untracked-but-not-ignored files, copied (the build must not touch the checkout)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_wheel_keeps_the_kernels_and_they_load_in_a_fresh_virtualenv(tmp_path):
    src = _tracked_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], cwd=src, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("scratchlab-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    wanted = {f"scratchlab/rnn/csrc/{p.name}" for p in CSRC.iterdir() if p.suffix in (".h", ".cpp")}
    assert "scratchlab/rnn/csrc/packed.h" in wanted and wanted <= names, sorted(wanted - names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel carries the license"
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist: torch")]
    assert requires and "<2.14" in requires[0] and ">=2.13" in requires[0], requires

    # A fresh virtualenv with only the wheel; torch and the other dependencies are read from this interpreter's
    # site-packages as a plain path (a .pth line), so its editable install of scratchlab is not seen.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    probe = "import scratchlab, scratchlab.rnn._cext as c; ops = c.ops(); print(scratchlab.__file__, ops is not None)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCRATCHLAB_NO_CEXT")}
    env["TORCH_EXTENSIONS_DIR"] = str(tmp_path / "ext")  # a build of its own, as a fresh machine's
    out = subprocess.run([str(py), "-W", "error::RuntimeWarning", "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    where, loaded = out.stdout.split()
    assert Path(where).is_relative_to(site), f"imported {where}, not the installed wheel"
    assert loaded == "True", out.stderr[-2000:]
    assert "recurrent kernels" in out.stderr, "the build says so before it starts"
