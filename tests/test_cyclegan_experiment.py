"""cyclegan-digits end to end (--quick), its `available` hook and the sample command."""

import json

import numpy as np
import scipy.io
import torch

from scratchlab.cli import main
from scratchlab.experiments.cyclegan import CycleDigitsConfig, grey_to_rgb, lr_factor, rgb_to_grey, svhn_missing
from scratchlab.runner import run_experiment


def test_quick_run_writes_measurements_grids_and_samples(tmp_path):
    run, summary = run_experiment("cyclegan-digits", quick=True, out=tmp_path / "r", progress=False)
    for key in ("label_preservation_x2y", "label_preservation_y2x", "classifier_x_test_accuracy",
                "classifier_y_test_accuracy", "no_translation_x2y", "no_translation_y2x"):
        assert 0 <= summary[key] <= 1, key
    assert summary["cycle_mse_x"] > 0 and summary["cycle_mse_y"] > 0
    for way in ("x2y", "y2x"):  # the final confusion matrix restates the preservation; a relabelling explains more
        conf = np.array(summary[f"confusion_{way}"])
        assert conf.shape == (10, 10) and np.trace(conf) / conf.sum() == summary[f"label_preservation_{way}"]
        assert sorted(summary[f"best_permutation_{way}"]) == list(range(10))
        assert summary[f"label_preservation_{way}"] <= summary[f"permuted_preservation_{way}"] <= 1
    assert "SYNTHETIC" in summary["target_data"] and "mnist-5k" in summary["source_data"]
    for name in ("samples_x2y.png", "samples_y2x.png", "label_preservation.png", "cycle_error.png",
                 "checkpoint.pt", "classifiers.pt"):
        assert (run / name).exists(), name
    evals = run.metrics("eval")
    assert [r["step"] for r in evals] == [2, 5, 7] and all("label_preservation_min" in r for r in evals)
    warm = [r for r in run.metrics("train") if "d_warmup_loss" in r]
    assert [r["step"] for r in warm] == [0, 1]  # the quick config's two warm-up steps come first

    assert main(["sample", str(run.path), "--n", "5", "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as s:
        assert s["images"].shape == (5, 3, 32, 32) and s["images"].dtype == np.uint8
        assert s["labels"].shape == (5,) and s["sources"].shape == (5, 28, 28)
    assert json.loads((run / "config.json").read_text())["config"]["target"] == "synthdigits"

    # resuming the finished run restores G, F, D_X, D_Y and the saved classifiers: the same final numbers
    _, again = run_experiment("cyclegan-digits", out=tmp_path / "r", resume=True, progress=False)
    for key in ("label_preservation_x2y", "label_preservation_y2x", "cycle_mse_x", "cycle_mse_y",
                "classifier_y_test_accuracy"):
        assert again[key] == summary[key], key


def test_available_names_missing_svhn_and_finds_it_when_present(tmp_path, monkeypatch):
    assert svhn_missing(CycleDigitsConfig()) is None  # synthdigits renders offline
    monkeypatch.setenv("SCRATCHLAB_DATA", str(tmp_path / "data"))
    reason = svhn_missing(CycleDigitsConfig(target="svhn"))
    assert "real SVHN is not on this machine" in reason and "train_32x32.mat" in reason
    (tmp_path / "data" / "svhn").mkdir(parents=True)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy.io.savemat(tmp_path / "data" / "svhn" / name,
                         {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((2, 1), np.uint8)})
    assert svhn_missing(CycleDigitsConfig(target="svhn")) is None


def test_no_translation_baseline_conversions():
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    rgb = grey_to_rgb(x)
    assert rgb.shape == (2, 3, 32, 32) and torch.equal(rgb[:, 2, 2:30, 2:30], x[:, 0])
    torch.testing.assert_close(rgb_to_grey(rgb), x)


def test_lr_schedule_is_constant_then_linear_to_zero():
    assert [lr_factor(i, 10, 0.5) for i in (0, 4, 5, 6, 9)] == [1.0, 1.0, 1.0, 0.8, 0.2]
    assert lr_factor(9, 10, 0.0) == 1.0 and lr_factor(0, 10, 1.0) == 1.0 and lr_factor(5, 10, 1.0) == 0.5
