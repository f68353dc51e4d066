"""What the CLI tells about configs (`show`, `run NAME --help`, `list -v`, `--version`), `--config FILE`, and
meta.json. Known answers: a test-registered config whose comments, bounds and quick values are written below."""

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Literal

import pytest
import torch

from scratchlab import experiments
from scratchlab.cli import HELP_EXAMPLE, main
from scratchlab.run import confdoc
from scratchlab.run.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range, Rate
from scratchlab.run.rundir import RunDir, distributions, source_git
from scratchlab.sweep.engine import build_config

SRC = Path(__file__).resolve().parents[1] / "src" / "scratchlab"


@dataclass
class OptimSection:
    """The optimiser.

    momentum: SGD's momentum, from the class docstring
    """

    lr: PositiveFloat = 0.1  # learning rate
    momentum: Rate = 0.9
    name: Literal["sgd", "adam"] = "sgd"
    """the update rule, from an attribute docstring

    (only its first paragraph counts)"""


@dataclass
class HelpConfig:
    steps: PositiveInt = 30  # training steps
    # the seed of the test set,
    # from the comment lines above
    test_seed: NonNegativeInt = 7
    bits: Annotated[int, Range(ge=1, le=62)] = 8  # bits per number
    clip: NonNegativeFloat | None = None  # None: no clipping
    widths: tuple[PositiveInt, ...] = (16, 8)  # hidden layer sizes
    note: str = ""
    opt: OptimSection = field(default_factory=OptimSection)


@dataclass
class LongerConfig(HelpConfig):
    steps: PositiveInt = 50  # a redefinition without a comment would keep the base's; this one has its own
    bits: Annotated[int, Range(ge=1, le=62)] = 4


def toy(cfg, ctx):
    g = torch.Generator().manual_seed(ctx.seed)
    return {"value": cfg.opt.lr * torch.rand(1, generator=g).item(), "steps": cfg.steps}


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    experiments.load_all()
    experiments.experiment("helpdemo", HelpConfig, help="a config with known comments",
                           quick={"steps": 3, "opt.lr": 0.5})(toy)
    yield
    del experiments.EXPERIMENTS["helpdemo"]


TABLE = """\
  KEY           TYPE                DEFAULT  QUICK
  steps         int >= 1            30       3
      training steps
  test_seed     int >= 0            7
      the seed of the test set, from the comment lines above
  bits          int in 1..62        8
      bits per number
  clip          float >= 0 or none  none
      None: no clipping
  widths        list of int >= 1    16,8
      hidden layer sizes
  note          str                 ''
  opt.lr        float > 0           0.1      0.5
      learning rate
  opt.momentum  float in [0, 1)     0.9
      SGD's momentum, from the class docstring
  opt.name      {sgd,adam}          sgd
      the update rule, from an attribute docstring"""


def test_show_lists_every_field_with_type_default_quick_and_meaning(registered, capsys):
    assert main(["show", "helpdemo"]) == 0
    out = capsys.readouterr().out
    assert out == ("helpdemo: a config with known comments\n\nconfig fields (--set KEY=VALUE or --config FILE; QUICK: "
                   "the value --quick uses\nwhere it differs):\n" + TABLE + "\n")


def test_meanings_of_a_subclass_and_fields_without_one():
    docs = {d.key: d for d in confdoc.describe(LongerConfig())}
    assert docs["steps"].meaning.startswith("a redefinition") and docs["steps"].default == "50"
    assert docs["bits"].meaning == "bits per number", "redefined without a comment: the base class's meaning"
    assert confdoc.undocumented(HelpConfig()) == ["note"]


def test_every_experiment_field_has_a_meaning():
    """The list of config fields whose dataclass gives no meaning (a comment beside the field): keep it empty."""
    missing = {name: confdoc.undocumented(e.config()) for name, e in experiments.load_all().items()}
    assert {k: v for k, v in missing.items() if v} == {}


@pytest.mark.parametrize("hint, text", [
    (PositiveInt, "int >= 1"), (Annotated[float, Range(gt=0, lt=1)], "float in (0, 1)"),
    (PositiveFloat | None, "float > 0 or none"), (Literal["a", "b"] | None, "{a,b} or none"),
    (tuple[str, ...], "list of str"), (bool, "bool"),
])
def test_type_text(hint, text):
    assert confdoc.type_text(hint) == text


def test_run_name_help_shows_the_fields_and_the_run_options(registered, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "helpdemo", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert out.startswith("usage: scratchlab run")
    assert TABLE in out and "helpdemo: a config with known comments" in out
    for option in ("--set KEY=VALUE", "--config FILE", "--overwrite", "--executor", "--quick", "--seed SEED"):
        assert option in out, f"run NAME --help lost the run option {option}"
    assert out.index("opt.name") < out.index("\noptions:"), "NAME's fields come first, then the options"


def test_plain_run_help_and_its_example_works(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    name, sets = HELP_EXAMPLE
    assert f"scratchlab run {name} " + " ".join(f"--set {o}" for o in sets) in out
    cfg = build_config(name, list(sets))  # the example's keys are real
    assert (cfg.model, cfg.lr) == ("gru", 3e-4)
    assert "DEFAULT" not in out, "without NAME: the options only"


def test_run_help_of_an_unknown_name_says_so(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "nope", "--help"])
    assert e.value.code == 2 and "no experiment named 'nope'" in capsys.readouterr().err


def test_list_verbose_shows_the_same_table(registered, capsys):
    assert main(["list", "-v"]) == 0
    out = capsys.readouterr().out
    assert TABLE.replace("\n  ", "\n    ").lstrip() in out
    assert "OptimSection(" not in out and "GANConfig(" not in out, "nested configs are dotted fields, not reprs"


def test_multi_run_experiments_have_their_fields_too(capsys):
    assert main(["show", "gan-compare"]) == 0
    out = capsys.readouterr().out
    assert "A multi-run experiment: gan in 6 variants x 5 seeds" in out
    assert "base.steps" in out and "rounds: d_steps discriminator updates" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f"scratchlab {version('scratchlab')}")


# ----------------------------------------------------------------------------------------------- --config FILE
def read(path):
    return json.loads(Path(path).read_text())


def test_a_saved_config_json_reruns_as_it_was(registered):
    assert main(["run", "helpdemo", "--out", "a", "--seed", "4", "--quick", "--set", "steps=9",
                 "--set", "widths=3,2", "--set", "clip=0.5"]) == 0
    assert main(["run", "--config", "a/config.json", "--out", "b"]) == 0
    assert main(["run", "helpdemo", "--config", "a", "--out", "c"]) == 0  # with NAME; a folder means its config.json
    saved = read("a/config.json")
    assert saved["seed"] == 4 and saved["quick"] is True and saved["config"]["steps"] == 9
    for again in ("b", "c"):
        assert read(f"{again}/config.json") == saved
        assert {k: v for k, v in read(f"{again}/summary.json").items() if k != "wall_seconds"} == \
            {k: v for k, v in read("a/summary.json").items() if k != "wall_seconds"}


def test_a_mapping_of_fields_with_set_on_top(registered, tmp_path):
    (tmp_path / "f.json").write_text(json.dumps({"steps": 12, "widths": [5], "opt": {"lr": 0.25, "name": "adam"}}))
    assert main(["run", "helpdemo", "--config", "f.json", "--set", "opt.lr=0.125", "--out", "r"]) == 0
    cfg = read("r/config.json")
    assert (cfg["seed"], cfg["quick"]) == (0, False)
    assert cfg["config"] == {"steps": 12, "test_seed": 7, "bits": 8, "clip": None, "widths": [5], "note": "",
                             "opt": {"lr": 0.125, "momentum": 0.9, "name": "adam"}}
    # --quick sets what the file leaves out (opt.lr here), not what it gives (steps)
    (tmp_path / "g.json").write_text(json.dumps({"steps": 12}))
    assert main(["run", "helpdemo", "--config", "g.json", "--quick", "--out", "q"]) == 0
    assert read("q/config.json")["config"]["steps"] == 12 and read("q/config.json")["config"]["opt"]["lr"] == 0.5


def test_yaml_config(registered, tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed: --config reads JSON only")
    (tmp_path / "f.yaml").write_text("steps: 11\nopt.lr: 1e-3   # PyYAML reads this as a string\nwidths: [4, 2]\n")
    assert main(["run", "helpdemo", "--config", "f.yaml", "--out", "r"]) == 0
    cfg = read("r/config.json")["config"]
    assert (cfg["steps"], cfg["opt"]["lr"], cfg["widths"]) == (11, 1e-3, [4, 2])


@pytest.mark.parametrize("content, message", [
    ({"stpes": 3}, "--config f.json stpes: unknown key 'stpes' in HelpConfig; valid keys: ['bits', 'clip', "),
    ({"opt": {"lr": -1.0}}, "--config f.json opt.lr=-1.0: expected a float > 0, got -1.0"),
    ({"steps": 0}, "--config f.json steps=0: expected an int >= 1, got 0"),
    ({"steps": "ten"}, "--config f.json steps=ten: expected int, got 'ten'"),
    ({"opt": 3}, "--config f.json opt: opt is a section"),
    ([1, 2], "--config f.json: expected a mapping of config keys, got list [1, 2]"),
    ({"experiment": "palindrome", "seed": 0, "quick": False, "config": {}},
     "--config f.json: holds a config of 'palindrome', not 'helpdemo'"),
])
def test_bad_config_files_are_one_line_naming_the_file(registered, tmp_path, capsys, content, message):
    (tmp_path / "f.json").write_text(json.dumps(content))
    assert main(["run", "helpdemo", "--config", "f.json", "--out", "r"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"scratchlab run: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists(), "nothing is written for a bad config"


def test_unreadable_config_files(registered, tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.json").write_text("{steps: 3")
    assert main(["run", "helpdemo", "--config", "bad.json"]) == 2
    assert "--config bad.json: not valid JSON (Expecting property name" in capsys.readouterr().err
    assert main(["run", "helpdemo", "--config", "missing.json"]) == 2
    assert "--config missing.json: no such file" in capsys.readouterr().err
    assert main(["run", "--config", "missing.json"]) == 2
    (tmp_path / "f.yaml").write_text("steps: 3\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    assert main(["run", "helpdemo", "--config", "f.yaml"]) == 2
    assert "--config f.yaml: reading YAML needs PyYAML, which is not installed (pip install pyyaml); or write the " \
           "config as JSON" in capsys.readouterr().err
    assert main(["run"]) == 1
    assert "give an experiment NAME (see `scratchlab list`) or --config" in capsys.readouterr().err


def test_sweep_takes_a_config_file(registered, tmp_path):
    (tmp_path / "f.json").write_text(json.dumps({"steps": 6, "widths": [2, 1]}))
    assert main(["sweep", "helpdemo", "--config", "f.json", "--grid", "bits=2,3", "--seeds", "1",
                 "--executor", "serial", "--out", "s"]) == 0
    assert read("s/sweep.json")["set"] == {"steps": "6", "widths": "2,1"}
    assert read("s/bits=2/seed0/config.json")["config"]["widths"] == [2, 1]


# ------------------------------------------------------------------------------------------------- meta.json
def test_meta_json_holds_every_distribution_and_the_git_commit(registered):
    assert main(["run", "helpdemo", "--quick", "--out", "r"]) == 0
    meta = read("r/meta.json")
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["distributions"]["torch"] == torch.__version__
    assert meta["distributions"]["scratchlab"] == version("scratchlab")
    git = shutil.which("git") and subprocess.run(["git", "-C", str(SRC), "rev-parse", "HEAD"], capture_output=True,
                                                 text=True)
    if not git or git.returncode != 0:
        assert meta["git"] is None
        pytest.skip("scratchlab's source is not a git checkout here: meta.json's git is null")
    dirty = subprocess.run(["git", "-C", str(SRC), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert meta["git"] == {"commit": git.stdout.strip(), "dirty": bool(dirty.strip())}


def test_distributions_are_what_importlib_metadata_reads():
    """The fast path (the dist-info folder's name) against reading every METADATA file."""
    from importlib.metadata import distributions as slow

    def norm(name):
        return name.replace("-", "_").replace(".", "_").lower()

    expected = {}
    for d in slow():
        expected.setdefault(norm(d.metadata["Name"]), d.version)
    assert {norm(k): v for k, v in distributions().items()} == expected


def test_no_git_is_no_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert source_git() is None


def test_write_meta_is_fast(tmp_path):
    RunDir(tmp_path).write_meta([])  # the first call imports importlib.metadata
    t0 = time.perf_counter()
    RunDir(tmp_path).write_meta([])
    assert time.perf_counter() - t0 < 1.0  # about 30 ms on 2 busy cores: a few git calls and a folder listing
