"""mlp-numpy: an MLP trained from scratch with scratchlab.autograd (NumPy), optionally side by side with PyTorch.

    scratchlab run mlp-numpy                                  # Fashion-MNIST, 784-512-256-10, SGD + momentum
    scratchlab run mlp-numpy --set engine=torch               # the identical MLP in PyTorch: same init, same batches
    scratchlab run mlp-numpy --set engine=both                # both in lockstep; loss curves on one figure
    scratchlab run mlp-numpy --set dataset=mnist-5k --set optimizer=adam --set lr=1e-3

Pixels are scaled to [0, 1] and standardised with the training set's mean and std. A tenth of the training
images is held out for validation (curves, best checkpoint); the test set is scored once, by the final model.

engine=both: the two losses agree to ~1e-7 at first and then drift apart slowly (about 1e-2 by step 100 with the
default recipe): torch's SGD update p + alpha * buf is one fused multiply-add, NumPy rounds the product and the sum
separately, and training amplifies 1-ulp differences. With a constant lr of 0.05 or in float64 they stay within
~1e-7 / ~1e-15 over those 100 steps (checked with the same batches).

Checkpoints: checkpoint.pt / last.pt hold the numpy engine's parameters and optimiser buffers as torch tensors
(the checkpoint layer converts arrays, so they load with weights_only=True); `model.npz` holds the final numpy
parameters as plain arrays (`nn.Module.load`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from scratchlab.autograd import Tensor, nn, no_grad, optim
from scratchlab.autograd import functional as F
from scratchlab.data import registry
from scratchlab.experiments import experiment
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, ProperFraction, Rate
from scratchlab.train.loop import Values, cosine, fit


@dataclass
class MLPConfig:
    dataset: Literal["fashion-mnist", "mnist", "mnist-5k", "cifar10"] = "fashion-mnist"  # mnist, cifar10 download
    hidden: tuple[PositiveInt, ...] = (512, 256)  # input and output sizes come from the data: 784-512-256-10
    engine: Literal["numpy", "torch", "both"] = "numpy"  # our NumPy autograd, the same MLP in PyTorch, or both
    optimizer: Literal["sgd", "adam"] = "sgd"  # the update rule
    lr: PositiveFloat = 0.05  # learning rate (the peak, with the cosine schedule)
    momentum: Rate = 0.9        # SGD only
    weight_decay: NonNegativeFloat = 0.0  # L2 penalty
    schedule: Literal["constant", "cosine"] = "cosine"  # cosine: lr -> 0 over the run, smooths the last epochs
    epochs: PositiveInt = 15  # passes over the training images
    batch_size: PositiveInt = 100  # images per step
    dropout: Rate = 0.0  # after each hidden layer
    val_fraction: ProperFraction = 0.1  # of the training images, held out for validation
    train_limit: NonNegativeInt = 0  # use only the first N training images (0: all); for quick runs
    test_limit: NonNegativeInt = 0  # use only the first N test images (0: all)
    compare_steps: PositiveInt = 100  # engine=both: largest loss difference over this many first steps


def load_split(cfg: MLPConfig, split: str):
    ds = registry.load(cfg.dataset, split)
    limit = cfg.train_limit if split == "train" else cfg.test_limit
    n = min(limit, len(ds)) if limit else len(ds)
    return ds.images[:n].reshape(n, -1), ds.labels[:n], ds


def available(cfg: MLPConfig) -> str | None:
    try:
        registry.load(cfg.dataset, "test", allow_download=False)
    except (FileNotFoundError, KeyError) as e:
        return f"{cfg.dataset} is not on this machine ({e})"
    return None


def torch_twin(model: nn.Sequential, device) -> torch.nn.Sequential:
    """The same layers in torch.nn, with `model`'s current weights."""
    layers = []
    for m in model.layers:
        if isinstance(m, nn.Linear):
            layers.append(torch.nn.Linear(m.in_features, m.out_features))
        elif isinstance(m, nn.Dropout):
            layers.append(torch.nn.Dropout(m.p))
        else:
            layers.append(torch.nn.ReLU())
    twin = torch.nn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return twin.to(device)


def make_optimizers(cfg: MLPConfig, model: nn.Module, twin: torch.nn.Module | None):
    if cfg.optimizer == "sgd":
        ours = optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        theirs = twin and torch.optim.SGD(twin.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                          weight_decay=cfg.weight_decay)
    else:
        ours = optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        theirs = twin and torch.optim.Adam(twin.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return ours, theirs


def predict(model, x: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """Logits (N, K), computed without a graph, in eval mode (dropout off)."""
    model.eval()
    with no_grad():
        out = np.concatenate([model(Tensor(x[i:i + chunk])).data for i in range(0, len(x), chunk)])
    model.train()
    return out


def predict_torch(twin, x: np.ndarray, device, chunk: int = 2000) -> np.ndarray:
    twin.eval()
    with torch.no_grad():
        out = np.concatenate([twin(torch.from_numpy(x[i:i + chunk]).to(device)).cpu().numpy()
                              for i in range(0, len(x), chunk)])
    twin.train()
    return out


def scores(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    loss = F.cross_entropy(Tensor(logits), y).item()
    return {"loss": loss, "accuracy": float((logits.argmax(1) == y).mean())}


@experiment("mlp-numpy", MLPConfig, help="MLP from scratch in the NumPy autograd engine (vs PyTorch), Fashion-MNIST",
            quick={"epochs": 2, "train_limit": 3000, "test_limit": 1000, "hidden": (128,)}, available=available,
            parallel=True, batch="batch_size")
def mlp_numpy(cfg: MLPConfig, ctx) -> dict:
    if ctx.world.size > 1 and cfg.engine != "torch":
        raise ValueError(f"engine={cfg.engine}: under torchrun mlp-numpy trains the PyTorch MLP only; "
                         "--set engine=torch (the NumPy engine runs in one process)")
    x_all, y_all, train_set = load_split(cfg, "train")
    x_test, y_test, test_set = load_split(cfg, "test")
    # Standardise with training statistics (one mean and std for all pixels), in float32 from here on.
    mean, std = x_all.mean(), x_all.std()
    x_all = ((x_all - mean) / std).astype(np.float32)
    x_test = ((x_test - mean) / std).astype(np.float32)
    split_rng = np.random.default_rng(ctx.seed)
    order = split_rng.permutation(len(x_all))
    n_val = int(len(x_all) * cfg.val_fraction)
    x_val, y_val = x_all[order[:n_val]], y_all[order[:n_val]]
    x_tr, y_tr = x_all[order[n_val:]], y_all[order[n_val:]]

    sizes = [x_tr.shape[1], *cfg.hidden, len(train_set.classes)]
    rng = np.random.default_rng(ctx.seed)  # the initial weights, then the dropout masks (checkpointed)
    model = nn.mlp(sizes, dropout=cfg.dropout, rng=rng)
    twin = torch_twin(model, ctx.device) if cfg.engine in ("torch", "both") else None
    trained = ctx.world.wrap(twin) if twin is not None else None  # DDP under torchrun (engine=torch)
    opt, topt = make_optimizers(cfg, model, twin)
    use_numpy, use_torch = cfg.engine in ("numpy", "both"), cfg.engine in ("torch", "both")
    steps_per_epoch = math.ceil(len(x_tr) / cfg.batch_size)
    steps = cfg.epochs * steps_per_epoch
    ctx.world.shard(len(x_tr) - (steps_per_epoch - 1) * cfg.batch_size)  # an epoch's last batch too small to split

    def batch(step: int) -> np.ndarray:
        epoch, i = divmod(step, steps_per_epoch)
        perm = np.random.default_rng([ctx.seed, epoch]).permutation(len(x_tr))  # same order after --resume
        return perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]

    def step_fn(step: int) -> dict[str, float]:
        idx = batch(step)
        xb, yb = x_tr[idx], y_tr[idx]
        lr = cfg.lr * (cosine(step, steps) if cfg.schedule == "cosine" else 1.0)
        out = {"lr": lr}
        if use_numpy:
            logits = model(Tensor(xb))
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.lr = lr
            opt.step()
            out.update(loss=loss.item(), accuracy=float((logits.data.argmax(1) == yb).mean()))
        if use_torch:
            part = ctx.world.shard(len(idx))  # this process's images (all of them in one process)
            tx, ty = (torch.from_numpy(a[part.rows]).to(ctx.device) for a in (xb, yb))
            tlogits = trained(tx)
            tloss = torch.nn.functional.cross_entropy(tlogits, ty) * part.weight
            topt.zero_grad(set_to_none=True)
            tloss.backward()
            for group in topt.param_groups:
                group["lr"] = lr
            topt.step()
            suffix = "_torch" if use_numpy else ""
            out.update({f"loss{suffix}": tloss.item(),
                        f"accuracy{suffix}": (tlogits.argmax(1) == ty).float().mean().item() * part.weight})
        return out

    def eval_fn(step: int) -> dict[str, float]:
        ev = scores(predict(model, x_val), y_val) if use_numpy else {}
        if use_torch:
            ev.update({f"{k}{'_torch' if use_numpy else ''}": v
                       for k, v in scores(predict_torch(twin, x_val, ctx.device), y_val).items()})
        return ev

    state = {"model": model, "optimizer": opt} if use_numpy else {"model": twin, "optimizer": topt}
    state["numpy_rng"] = Values(dropout=rng)
    if cfg.engine == "both":
        state.update(torch_model=twin, torch_optimizer=topt)
    result = fit(step_fn, steps, ctx, state=state, eval_fn=eval_fn, eval_every=steps_per_epoch,
                 monitor="accuracy", mode="max", log_every=1 if cfg.engine == "both" else 10,
                 desc=f"mlp-numpy[{cfg.engine}]", config={"sizes": sizes})
    summary = report(cfg, ctx, model, twin, x_test, y_test, test_set, sizes, result)
    return {**summary, "train_images": len(x_tr), "val_images": len(x_val), "data_source": train_set.source}


def report(cfg, ctx, model, twin, x_test, y_test, test_set, sizes, result) -> dict:
    """Test scores of the final model(s), the figures, and the summary."""
    run, use_numpy = ctx.run, cfg.engine in ("numpy", "both")
    logits = predict(model, x_test) if use_numpy else predict_torch(twin, x_test, ctx.device)
    test = scores(logits, y_test)
    k = len(test_set.classes)
    counts = np.bincount(y_test * k + logits.argmax(1), minlength=k * k).reshape(k, k)
    engine_name = "scratchlab.autograd" if use_numpy else "PyTorch"
    plots.confusion_matrix(counts, test_set.classes, run / "confusion_matrix.png",
                           title=f"{cfg.dataset} test, {engine_name}: {test['accuracy']:.1%}",
                           caption="Test images by true class (rows) and predicted class (columns): the diagonal "
                           "is right; a large count off it names two classes the network confuses.")
    plots.train_eval_curves(run, run / "curves.png", title=f"{cfg.dataset} {'-'.join(map(str, sizes))}",
                            caption="Loss and accuracy on training batches (train) and on the validation images "
                            "(eval); eval loss turning up while train loss still falls is overfitting.")
    summary = {"dataset": cfg.dataset, "layers": "-".join(map(str, sizes)), "engine": cfg.engine,
               "test_accuracy": test["accuracy"], "test_loss": test["loss"], "best_val_accuracy": result["best"],
               "steps": result["steps"], "test_images": len(y_test)}
    if use_numpy:
        model.save(run / "model.npz")
    if cfg.engine == "both":
        summary["test_accuracy_torch"] = scores(predict_torch(twin, x_test, ctx.device), y_test)["accuracy"]
        records = run.metrics("train")
        first = [r for r in records if r["step"] < cfg.compare_steps and "loss_torch" in r]
        summary[f"max_loss_diff_first_{cfg.compare_steps}_steps"] = max(abs(r["loss"] - r["loss_torch"])
                                                                        for r in first)
        loss_comparison(records, run / "loss_numpy_vs_torch.png")
    return summary


def loss_comparison(records: list[dict], path) -> None:
    """Left: both training losses (they overlap when the engines agree). Right: their difference."""
    plots.twin_curves(records, ("loss", "loss_torch"), ("scratchlab.autograd", "PyTorch"), path, logy=True,
                      ylabel="cross-entropy", title="training loss, same init and batches",
                      caption="Training loss of the NumPy engine (solid) and of the same MLP in PyTorch (dashed, "
                      "hollow markers) from the same weights on the same batches: the dashed curve lies on the "
                      "solid one. Right: their difference at each step: float32 rounding (about 1e-7 to 1e-5) "
                      "where the engines agree, of the size of the loss itself where one is wrong.")
