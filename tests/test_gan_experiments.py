"""The GAN experiments end to end (tiny budgets) and `scratchlab sample`'s files."""

import json

import numpy as np
import pytest

from scratchlab.cli import main
from scratchlab.run import plots

SETTINGS = ["steps=4", "eval_every=2", "eval_samples=50", "n_eval=100", "n_train=500", "classifier_n_train=500"]


def tiny(prefix: str = "") -> list[str]:
    return ["--quick", "--no-progress", *[a for s in SETTINGS for a in ("--set", prefix + s)]]


@pytest.mark.slow
def test_conditional_gan_run_and_sample(tmp_path):
    assert main(["run", "cgan", "--out", "c", *tiny()]) == 0
    run = tmp_path / "c"
    for fig in ("samples_start", "samples_middle", "samples_end", "losses", "d_outputs", "kl_curve", "per_class"):
        assert (run / f"{fig}.png").exists(), fig
        assert plots.captions(run)[f"{fig}.png"], fig
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["label_accuracy"] <= 1 and summary["g_updates"] == 4 and summary["d_updates"] == 4
    assert sum(summary["histogram"]) == pytest.approx(1, abs=1e-3)
    assert main(["sample", "c", "--n", "12", "--out", "s.npz"]) == 0
    out = np.load("s.npz")
    assert out["images"].dtype == np.uint8 and out["images"].shape == (12, 1, 28, 28)
    assert out["labels"].tolist() == list(range(10)) + [0, 1]
    assert len(np.unique(out["images"])) > 10  # real images, not a constant


@pytest.mark.slow
def test_sweep_writes_variants_and_samples_from_one(tmp_path):
    assert main(["run", "gan-d-g-ratio", "--out", "r", "--set", "seeds=1", *tiny("base.")]) == 0
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    ratio = {v["name"]: v["metrics"] for v in summary["variants"]}
    assert ratio["1to1"]["g_updates"]["values"] == [4] and ratio["1to1"]["d_updates"]["values"] == [4]
    assert ratio["5to2"]["g_updates"]["values"] == [4]
    assert ratio["5to2"]["d_updates"]["values"] == [10]  # 2 rounds of 5:2
    for fig in ("label_histograms", "final_samples", "kl_curves"):
        assert (tmp_path / f"r/{fig}.png").exists()
        assert plots.captions(tmp_path / "r")[f"{fig}.png"], fig
    assert main(["sample", "r", "--n", "5", "--out", "s.npz"]) == 0
    out = np.load("s.npz")
    assert out["images"].shape == (5, 1, 28, 28) and "labels" not in out
    assert main(["sample", "r/1to1/seed0", "--n", "3", "--out", "t.npz"]) == 0  # each run is a `gan` run itself
    assert np.load("t.npz")["images"].dtype == np.uint8


def test_same_seed_same_numbers_with_a_cold_or_a_warm_judge_cache():
    """The evaluation classifier is trained on the first run (cold cache) and read on the next (warm): both runs
    must give the same numbers (the judge must leave the run's random stream in the same state either way)."""
    assert main(["run", "gan", "--out", "cold", *tiny()]) == 0
    assert main(["run", "gan", "--out", "warm", *tiny()]) == 0
    cold, warm = (json.loads(open(f"{d}/summary.json").read()) for d in ("cold", "warm"))
    for s in (cold, warm):
        s.pop("wall_seconds")
    assert cold == warm
