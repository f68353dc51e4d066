"""examples/: the notebooks run top to bottom. Plain exec of their code cells, in order, in one namespace, in a
temp directory (conftest's); the matplotlib backend is Agg here only (Jupyter users get the inline one)."""

import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.slow
def test_quickstart_notebook_runs_and_shows_what_it_says(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("Agg")
    namespace = {"__name__": "__main__"}
    try:
        for i, source in enumerate(code_cells(EXAMPLES / "quickstart.ipynb")):
            exec(compile(source, f"examples/quickstart.ipynb, code cell {i + 1}", "exec"), namespace)
        figures = len(plt.get_fignums())
    finally:
        plt.close("all")
        matplotlib.use(before)
    assert figures == 3  # the run's curves, the sweep's curves, the saved figure shown again
    run, sweep = namespace["run"], namespace["sweep"]
    assert run.path.resolve().is_relative_to(tmp_path) and run.summary["steps"] == 60  # the --quick budget
    metrics = run.metrics
    assert len(metrics) == len((run.path / "metrics.jsonl").read_text().splitlines())
    assert set(metrics["split"]) == {"train", "eval"} and metrics["elapsed"].is_monotonic_increasing
    assert sweep.variants["n"].to_dict() == {"model=rnn": 2, "model=lstm": 2}
    assert sorted(set(zip(sweep.metrics["variant"], sweep.metrics["seed"], strict=True))) == \
        [("model=lstm", 0), ("model=lstm", 1), ("model=rnn", 0), ("model=rnn", 1)]
