"""The GAN experiments end to end (tiny budgets) and `scratchlab sample`'s files."""

import json

import numpy as np
import pytest
import torch

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


def test_a_second_judge_changes_none_of_the_first_ones_numbers():
    """The final samples judged again by the CNN: judge_cnn.* keys in the summary; the MLP judge's numbers are the
    same with and without it (it runs under its own RNG), and its KL is the CNN's label histogram's, recomputed
    here from the checkpoint's generator."""
    from scratchlab.experiments.gan import load_generator
    from scratchlab.gan import classifier as clf
    from scratchlab.gan import metrics as M

    assert main(["run", "gan", "--out", "two", *tiny()]) == 0
    assert main(["run", "gan", "--out", "one", *tiny(), "--set", "second_judge=false"]) == 0
    two, one = (json.loads(open(f"{d}/summary.json").read()) for d in ("two", "one"))
    assert not any(k.startswith("judge_") for k in one)
    for k, v in one.items():
        if k not in ("wall_seconds", "config", "second_judge"):
            assert two[k] == v, k
    cnn, _ = clf.load_or_train("fashion-mnist", "cnn", epochs=1, n_train=500)
    x = M.generate(load_generator("two"), 100, generator=torch.Generator().manual_seed(0))
    p = np.bincount(clf.predict(cnn, x), minlength=10) / 100
    kl = float(sum(q * np.log(q * 10) for q in p if q > 0))
    assert two["judge_cnn.kl_uniform"] == pytest.approx(kl, abs=1e-6)
    assert 0 < two["judge_cnn.classifier_test_accuracy"] <= 1 and two["judge_cnn.frechet"] > 0


class _Stub(torch.nn.Module):
    """A stand-in generator: `real` returns a training image of the asked class, else one constant image."""

    def __init__(self, images=None, labels=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.cfg = type("cfg", (), {"latent": 4, "n_classes": 10})()
        self.images, self.labels, self.used = images, labels, {}

    def forward(self, z, y):
        from scratchlab.gan import classifier as clf

        if self.images is None:
            return torch.zeros(len(z), 1, 28, 28)
        rows = []
        for c in y.tolist():  # the next unused training image of class c
            k = self.used.get(c, 0)
            self.used[c] = k + 1
            rows.append(np.flatnonzero(self.labels == c)[k])
        return clf.as_float_images(self.images[rows])


def test_cas_gives_chance_for_a_constant_generator_and_the_baseline_for_real_images():
    """CAS's known answers: a generator of one constant image teaches nothing (chance, 0.1 on 10 classes); one that
    hands back real training images of the asked class does as well as the real-data baseline."""
    from scratchlab.experiments.gan import CGANConfig, classification_accuracy_score, load_data
    from scratchlab.train.loop import Context

    cfg = CGANConfig(cas_samples=1000, classifier_epochs=3)
    ctx = Context(run=None, device=torch.device("cpu"))
    train = load_data("fashion-mnist", "train")
    flat = classification_accuracy_score(cfg, ctx, _Stub())
    real = classification_accuracy_score(cfg, ctx, _Stub(train.images, train.labels))
    assert flat["cas"] <= 0.2 and flat["cas_samples"] == 1000
    assert real["cas_real_baseline"] > 0.6
    assert abs(real["cas"] - real["cas_real_baseline"]) < 0.06
