"""Data-parallel runs (torchrun, gloo on the CPU): two processes train what one process trains on the same global
batch, only rank 0 writes the run directory, and a NaN or a failure on rank 1 stops both with the message on rank 0.

Reference: the same run in one process (in this test's process, through the CLI), compared parameter by parameter.
Tolerance PARAM_TOL = 1e-5 (absolute, float32 weights of size <= 1): the two-process gradient is the mean of two
half-batch means where one process sums the same rows in another order, so gradients agree to ~1e-7 relative; Adam
and RMSprop divide by sqrt(v), which keeps that error relative, and after a few steps the weights differ by
1e-8..2e-6 (measured). A missing all-reduce, an overlapping or wrong shard, or per-rank BatchNorm statistics change
a step by up to the learning rate (1e-3 here) in every weight: 100 times the tolerance.
"""

import copy
import json
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from scratchlab.cli import main
from scratchlab.train.distributed import World

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed with gloo: no data-parallel "
                                "runs on the CPU to test")

PARAM_TOL = 1e-5
PALINDROME = ["palindrome", "--quick", "--no-progress", "--set", "eval_every=3", "--set", "eval_size=200",
              "--set", "test_size=200", "--set", "hidden=16", "--set", "batch=16"]


def torchrun(tmp_path, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 -m scratchlab run ARGS` in tmp_path (a free port; TMPDIR of its
    own, so the followers' temp folders can be checked for)."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "scratchlab", "run", *args]
    full = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, cwd=tmp_path, env=full, capture_output=True, text=True, timeout=240)


def last(path) -> dict:
    return torch.load(path / "last.pt", weights_only=True)


def max_difference(a: dict, b: dict, skip=()) -> tuple[float, str]:
    assert a.keys() == b.keys()
    diffs = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if k not in skip}
    worst = max(diffs, key=diffs.get)
    return diffs[worst], worst


def files(run) -> list[str]:
    """The run directory's files, the TensorBoard file's time/host/pid part masked."""
    return sorted(re.sub(r"tfevents\..*", "tfevents.*", p.name) for p in run.iterdir())


# ------------------------------------------------------------------------------------------------ one process
def test_one_process_world_changes_nothing():
    w = World()
    assert (w.size, w.rank, w.is_main, w.backend) == (1, 0, True, None)
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    assert w.wrap(m) is m and w.sync_batchnorm(m) is m and isinstance(m[1], torch.nn.BatchNorm1d)
    assert w.average_gradients_on_step(opt) is opt and not opt._optimizer_step_pre_hooks
    assert w.shard(7).rows == slice(0, 7) and w.shard(7).weight == 1.0
    metrics = {"loss": float("nan"), "accuracy": 0.5}
    assert w.agree(metrics, 3, True) == (metrics, True, []) and w.share(lambda: 42) == 42
    assert w.record(64) == {} and w.leave("result") == "result"


def test_shards_partition_the_batch_and_their_weighted_means_average_to_the_batch_mean():
    v = torch.randn(10, dtype=torch.float64)
    for size in (2, 3, 4):
        parts = [World(r, size).shard(10) for r in range(size)]
        assert [i for p in parts for i in range(10)[p.rows]] == list(range(10))
        # what DDP computes from the ranks' weighted mean losses: their mean
        assert sum(p.weight * v[p.rows].mean() for p in parts) / size == pytest.approx(v.mean().item(), abs=1e-12)
    with pytest.raises(ValueError, match="cannot be split over 2 processes"):
        World(1, 2).shard(1)


def test_world_from_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert World.from_env().size == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="0 <= RANK < WORLD_SIZE"):
        World.from_env()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("SCRATCHLAB_FAULT", "nan:1")
    with pytest.raises(ValueError, match="SCRATCHLAB_FAULT"):
        World.from_env()


# ------------------------------------------------------------------------------------------------ two processes
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sync_batchnorm_worker(rank: int, port: int, out: str) -> None:
    """Rank r holds rows [4r, 4r + 4) of x. Its SyncBatchNorm output and gradient of x's rows, the averaged weight
    gradient and the running statistics must be a float64 BatchNorm1d's over all 8 rows (the reference)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    world = World.from_env().start(torch.device("cpu"))
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, dtype=torch.float64) * 3 + 1  # (N, C, L): statistics over N and L
    w = torch.randn(8, 3, 5, dtype=torch.float64)
    ref = torch.nn.BatchNorm1d(3).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-1, 1)
    net = world.sync_batchnorm(torch.nn.Sequential(copy.deepcopy(ref)))
    opt = world.average_gradients_on_step(torch.optim.SGD(net.parameters(), lr=0.0))
    rows = slice(4 * rank, 4 * rank + 4)
    xr = x[rows].clone().requires_grad_()
    y = net(xr)
    (y * w[rows]).sum().backward()  # this rank's part of the global loss sum((BN(x) * w))
    opt.step()  # lr 0: only averages the weight gradients over the ranks
    xa = x.clone().requires_grad_()
    ya = ref(xa)
    (ya * w).sum().backward()
    bn = net[0]
    diffs = {"y": (y - ya[rows]).abs().max(), "grad_x": (xr.grad - xa.grad[rows]).abs().max(),
             "grad_weight": (bn.weight.grad - ref.weight.grad / 2).abs().max(),  # the mean of the ranks' parts
             "grad_bias": (bn.bias.grad - ref.bias.grad / 2).abs().max(),
             "running_mean": (bn.running_mean - ref.running_mean).abs().max(),
             "running_var": (bn.running_var - ref.running_var).abs().max()}
    torch.save({k: float(v) for k, v in diffs.items()}, f"{out}.{rank}")
    world.close()


def test_sync_batchnorm_and_gradient_averaging_match_one_batchnorm_over_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_sync_batchnorm_worker, args=(_free_port(), str(tmp_path / "diffs")), nprocs=2)
    for rank in (0, 1):
        diffs = torch.load(tmp_path / f"diffs.{rank}")
        assert max(diffs.values()) < 1e-12, (rank, diffs)  # float64: rounding only


def test_palindrome_two_processes_train_what_one_does_and_only_rank_0_writes(tmp_path):
    assert main(["run", *PALINDROME, "--set", "steps=6", "--out", "one"]) == 0
    done = torchrun(tmp_path, [*PALINDROME, "--set", "steps=6", "--out", "two"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory: two") == 1  # rank 0 reports, rank 1 is quiet
    one, two = tmp_path / "one", tmp_path / "two"
    err, where = max_difference(last(one)["model"], last(two)["model"])
    assert err < PARAM_TOL, (err, where)
    # Only rank 0 wrote: the files of a one-process run, one TensorBoard file (its name holds the writer's pid),
    # each metrics record once; rank 1's temp folder is gone.
    assert files(two) == files(one) and len(list(two.glob("events.out.tfevents.*"))) == 1
    records = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in records] == [(r["step"], r["split"]) for r in reference]
    for r, ref in zip(records, reference, strict=True):  # the global batch's loss, as one process measures it
        assert r["loss"] == pytest.approx(ref["loss"], abs=1e-5)
    assert not list((tmp_path / "tmp").glob("scratchlab-*"))
    summary, meta = (json.loads((two / f).read_text()) for f in ("summary.json", "meta.json"))
    for record in (summary, meta):
        assert (record["world_size"], record["backend"], record["per_rank_batch"], record["global_batch"]) == \
            (2, "gloo", 8, 16)
    assert "world_size" not in json.loads((one / "summary.json").read_text())  # one process: as always


def test_resume_under_torchrun_continues_a_one_process_run(tmp_path):
    """Checkpoints keep torch.nn's names (no `module.`): a one-process last.pt resumes on two processes, and
    the result is the uninterrupted one-process run's."""
    assert main(["run", *PALINDROME, "--set", "steps=6", "--out", "whole"]) == 0
    assert main(["run", *PALINDROME, "--set", "steps=3", "--out", "half"]) == 0
    done = torchrun(tmp_path, [*PALINDROME, "--set", "steps=6", "--resume", "--out", "half"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stderr and done.stderr.count("resuming") == 1
    err, where = max_difference(last(tmp_path / "whole")["model"], last(tmp_path / "half")["model"])
    assert err < PARAM_TOL, (err, where)
    assert set(last(tmp_path / "half")["model"]) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
                                                      "rnn.bias_hh_l0", "head.weight", "head.bias"}


def test_imdb_attention_model_two_processes_train_what_one_does(tmp_path):
    # dropout 0: each rank's dropout masks come from the generator the ranks share, so they would differ from
    # the masks one process draws for the whole batch. 150 training reviews: batches 32, ..., 22 (split 11 + 11).
    args = ["imdb", "--quick", "--no-progress", "--set", "model=lstm-attention", "--set", "synthetic_train=200",
            "--set", "synthetic_test=100", "--set", "epochs=1", "--set", "dropout=0", "--set", "batch_size=32",
            "--set", "figure_reviews=0"]
    assert main(["run", *args, "--out", "one"]) == 0
    done = torchrun(tmp_path, [*args, "--out", "two"])
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = last(tmp_path / "one"), last(tmp_path / "two")
    assert one["step"] == two["step"] == 4
    err, where = max_difference(one["model"], two["model"])
    assert err < PARAM_TOL, (err, where)


GAN = ["gan", "--quick", "--no-progress", "--set", "steps=4", "--set", "eval_every=2", "--set", "eval_samples=50",
       "--set", "n_eval=100", "--set", "n_train=500", "--set", "classifier_n_train=500", "--set", "batch_size=16"]


def test_vanilla_gan_two_processes_train_what_one_does(tmp_path):
    from scratchlab.gan import classifier as clf
    from scratchlab.gan.nets import Generator, NetConfig

    # The judge first: a run that trains it draws other random numbers before G's init than one that loads it.
    clf.load_or_train("fashion-mnist", "mlp", seed=0, epochs=1, n_train=500)
    assert main(["run", *GAN, "--out", "one"]) == 0
    done = torchrun(tmp_path, [*GAN, "--out", "two"])
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = last(tmp_path / "one"), last(tmp_path / "two")
    assert one["updates"] == two["updates"] == {"d_updates": 4, "g_updates": 4}
    err, where = max_difference(one["discriminator"], two["discriminator"])
    assert err < PARAM_TOL, (err, where)
    # G: a Linear's bias in front of a BatchNorm has no gradient in exact arithmetic (the mean is subtracted right
    # after it), so Adam's steps on it are normalised rounding noise (up to lr a step, in one process as in two),
    # and the running means follow those biases. They are left out; G's output on a fixed batch in training mode
    # (batch statistics: the biases cancel) must agree, and the rest parameter by parameter.
    net = NetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in one["config"]["net"].items()})
    G = Generator(net)
    before_bn = {f"net.{i - 1}.bias" for i, m in enumerate(G.net) if isinstance(m, torch.nn.BatchNorm1d)}
    skip = before_bn | {f"net.{int(k.split('.')[1]) + 1}.running_mean" for k in before_bn}
    err, where = max_difference(one["generator"], two["generator"], skip=skip)
    assert err < PARAM_TOL and len(before_bn) == 3, (err, where)
    z = torch.randn(64, net.latent, generator=torch.Generator().manual_seed(5))
    outputs = []
    for state in (one, two):
        G.load_state_dict(state["generator"])
        outputs.append(G.train()(z))
    assert (outputs[0] - outputs[1]).abs().max().item() < PARAM_TOL


def test_nan_on_rank_1_stops_both_ranks_with_the_message_on_rank_0(tmp_path):
    done = torchrun(tmp_path, [*PALINDROME, "--set", "steps=6", "--out", "nan"], env={"SCRATCHLAB_FAULT": "nan:1:4"})
    assert done.returncode != 0
    message = "train loss = nan at step 4 on rank 1 of 2; training stopped. Last good checkpoint: nan/checkpoint.pt"
    assert done.stderr.count(message) == 1, done.stderr[-3000:]  # said once, by rank 0
    run = tmp_path / "nan"
    assert not (run / "summary.json").exists() and last(run)["step"] == 2  # the last evaluation's state is kept


def test_failure_on_rank_1_stops_rank_0_with_its_message(tmp_path):
    done = torchrun(tmp_path, [*PALINDROME, "--set", "steps=6", "--out", "fail"],
                    env={"SCRATCHLAB_FAULT": "raise:1:4"})
    assert done.returncode != 0
    assert ("scratchlab run: error: rank 1 of 2 failed: RuntimeError: injected failure (SCRATCHLAB_FAULT) on rank 1 "
            "at step 4; every rank stopped") in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "fail" / "summary.json").exists()
