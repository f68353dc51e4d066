"""The mlp-numpy experiment end to end on real digits (mnist-5k, offline), tiny budgets.
Reference for the numpy engine: PyTorch training the same MLP from the same weights on the same batches."""

import json

import numpy as np
import pytest

from scratchlab.autograd import Tensor, nn
from scratchlab.runner import run_experiment
from scratchlab.train import checkpoint

TINY = {"dataset": "mnist-5k", "epochs": 1, "train_limit": 1500, "test_limit": 400, "hidden": (32,),
        "batch_size": 50}


def test_both_engines_agree_step_by_step(tmp_path):
    run, summary = run_experiment("mlp-numpy", {**TINY, "engine": "both"}, out=tmp_path / "both", progress=False)
    # float32 on both sides, identical init and batches: the losses differ only by rounding
    assert summary["max_loss_diff_first_100_steps"] < 1e-4
    assert abs(summary["test_accuracy"] - summary["test_accuracy_torch"]) <= 0.01
    assert summary["test_accuracy"] > 0.6  # 27 steps on 1,350 digits; chance is 0.1
    for name in ("curves.png", "confusion_matrix.png", "loss_numpy_vs_torch.png", "checkpoint.pt", "model.npz"):
        assert (run / name).exists(), name
    train = [json.loads(line) for line in open(run / "metrics.jsonl") if '"train"' in line]
    assert len(train) == summary["steps"] == 27 and all("loss_torch" in r for r in train)


def test_numpy_checkpoint_loads_safely_and_restores(tmp_path):
    run, summary = run_experiment("mlp-numpy", {**TINY, "optimizer": "adam", "lr": 1e-3}, out=tmp_path / "np",
                                  progress=False)
    assert summary["engine"] == "numpy" and summary["layers"] == "784-32-10"
    payload = checkpoint.load(run / "last.pt")  # torch.load(weights_only=True)
    model = nn.mlp([784, 32, 10], rng=np.random.default_rng(99))
    checkpoint.restore(payload, restore_rng=False, model=model)
    final = nn.mlp([784, 32, 10], rng=np.random.default_rng(98)).load(run / "model.npz")
    x = np.random.default_rng(0).standard_normal((5, 784)).astype(np.float32)
    np.testing.assert_array_equal(model(Tensor(x)).data, final(Tensor(x)).data)
    assert payload["optimizer"]["steps"] == summary["steps"]


def test_torch_engine_runs_the_same_recipe(tmp_path):
    _, ours = run_experiment("mlp-numpy", TINY, out=tmp_path / "a", progress=False)
    _, theirs = run_experiment("mlp-numpy", {**TINY, "engine": "torch"}, out=tmp_path / "b", progress=False)
    assert theirs["engine"] == "torch"
    assert theirs["test_accuracy"] == pytest.approx(ours["test_accuracy"], abs=0.01)


def test_resume_continues_exactly(tmp_path):
    """One epoch, then --resume to two epochs == two epochs in one go (parameters, optimiser, batch order)."""
    cfg = {**TINY, "schedule": "constant", "epochs": 2}
    whole, _ = run_experiment("mlp-numpy", cfg, out=tmp_path / "whole", progress=False)
    cut, _ = run_experiment("mlp-numpy", {**cfg, "epochs": 1}, out=tmp_path / "cut", progress=False)
    saved = json.loads((cut / "config.json").read_text())
    saved["config"]["epochs"] = 2
    (cut / "config.json").write_text(json.dumps(saved))
    run_experiment("mlp-numpy", out=cut.path, resume=True, progress=False)
    a, b = np.load(whole / "model.npz"), np.load(cut / "model.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_runs_on_cifar10_layout(tmp_path, monkeypatch):
    """dataset=cifar10 through the registry (a fixture archive in $SCRATCHLAB_DATA): 32x32x3 -> 3072 inputs."""
    import hashlib

    from datafiles import cifar_archive, write
    from scratchlab.data import registry

    archive = cifar_archive(n_per_batch=40)[0]
    write(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz", archive)
    monkeypatch.setenv("SCRATCHLAB_DATA", str(tmp_path / "data"))
    # local archives are checked against the official digest: this fixture stands in for the official file
    monkeypatch.setattr(registry, "CIFAR10_REMOTES",
                        [registry.Remote("cifar-10-python.tar.gz", "", hashlib.sha256(archive).hexdigest())])
    _, summary = run_experiment("mlp-numpy", {"dataset": "cifar10", "epochs": 1, "hidden": (16,)},
                                out=tmp_path / "c", progress=False)
    assert summary["layers"] == "3072-16-10" and summary["test_images"] == 40 and summary["train_images"] == 180
    assert "cifar10" in summary["data_source"]
