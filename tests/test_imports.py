"""Imports go downward only (docs/design.md, Layout): read each module's imports and check the edges."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scratchlab"

# package -> scratchlab packages it may import (besides itself)
ALLOWED = {
    "autograd": set(),
    "data": set(),
    "run": set(),
    "rnn": set(),
    "train": {"run"},
    "gan": {"rnn", "data", "train", "run"},
    # experiments declare multi-run plans as data (experiments.Plan); they never import the sweep engine or runner
    "experiments": {"autograd", "rnn", "gan", "data", "train", "run", "experiments"},
    "sweep": {"experiments", "train", "run", "data"},  # data: the safe tar extraction of runs sent back by Ray
}
# third-party imports a package must never make
FORBIDDEN = {"autograd": {"torch"}, "run": {"torch"}}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_experiments_never_import_the_runner_or_the_sweep_engine():
    """Issue 12's rule, checked on every module: the runner and the engine sit above the experiments."""
    for path in (SRC / "experiments").rglob("*.py"):
        bad = {n for n in imports_of(path) if n.split(".")[:2] in (["scratchlab", "runner"], ["scratchlab", "sweep"])}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_edges(package):
    for path in (SRC / package).rglob("*.py"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top not in FORBIDDEN.get(package, set()), f"{path}: imports {name}"
            if top == "scratchlab" and "." in name:
                sub = name.split(".")[1]
                assert sub == package or sub in ALLOWED[package] or sub == "__init__", \
                    f"{path.relative_to(SRC)} imports {name}: {package} may only import {sorted(ALLOWED[package])}"


def test_rnn_layers_use_no_builtin_recurrent_modules():
    for path in (SRC / "rnn").rglob("*.py"):
        text = path.read_text()
        for banned in ("nn.LSTM(", "nn.GRU(", "nn.RNN(", "nn.LSTMCell", "nn.GRUCell", "nn.RNNCell", "_VF"):
            assert banned not in text, f"{path}: uses {banned}"
