"""One run across processes and machines (torchrun): who this process is, and how the processes stay one run.

    torchrun --standalone --nproc-per-node=N -m scratchlab run NAME [--set ...]

torchrun starts N copies of the command and tells each its place in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `World.from_env()` reads it; without it the world is one process and every
method below returns its input at once: no process group, no wrapper, no collective, nothing changed.

The rules of a data-parallel run, and who keeps each:

    rank 0 is the run      it claims and writes the run directory, evaluates, decides early stops, checkpoints;
                           the other ranks (followers) train beside it, write nothing there, and leave when the
                           training loop ends (`leave`: FollowerDone); what comes after the loop is rank 0's
    one global batch       every rank draws the step's whole batch from the seeded stream and keeps its rows
                           (`shard`), so together the ranks see the batch one process would see
    one set of weights     gradients are averaged before every optimiser step: by DDP (`wrap`) for a model with
                           one forward and one backward per step, else by `average_gradients_on_step` (the GAN
                           trainers: several nets and optimisers, a D called twice per loss, frozen or copied nets);
                           BatchNorm normalises over the global batch (`sync_batchnorm`)
    one verdict per step   `agree` averages the step's metrics over the ranks (one all-reduce of a few numbers):
                           the NaN guard, the log, Ctrl-C and early stops see the same numbers on every rank
    one start              `sync` copies rank 0's modules and random-number generators to the others when the loop
                           starts and after each evaluation (rank 0 evaluates alone), so they draw what it draws

A failure on a follower is posted to torchrun's store and rank 0's watchdog prints it and stops rank 0, so no rank
waits for a dead one; collectives time out after `SCRATCHLAB_DIST_TIMEOUT` seconds (default 600), so nothing waits
forever either. `SCRATCHLAB_FAULT=nan:RANK:STEP` (or `raise:RANK:STEP`) makes rank RANK report a NaN loss (raise)
at STEP: the tests' way of checking both paths.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import nn

from scratchlab.train import checkpoint
from scratchlab.train.device import backend_for

T = TypeVar("T")
FAILURES, ACK = "scratchlab/failures", "scratchlab/ack"  # keys in torchrun's store


class FollowerDone(BaseException):  # noqa: N818  (not an error: like SystemExit, it only unwinds the experiment)
    """Raised on ranks > 0 when the training loop ends: the rest of an experiment (test scores, figures, the
    summary) is rank 0's. A BaseException, so an experiment's `except Exception` does not catch it."""


@dataclass(frozen=True)
class Shard:
    """This rank's part of a global batch of n rows: `rows` (a slice), and `weight` = rows * world size / n, the
    factor that makes DDP's average of the ranks' mean losses the mean over the global batch (1.0 when the
    ranks' parts are equal, always in one process)."""

    rows: slice
    weight: float


class World:
    """This process's place in the run: rank, size, local rank, backend (None for one process)."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0, fault: str = ""):
        if not 0 <= rank < size:
            raise ValueError(f"RANK={rank} and WORLD_SIZE={size}: expected 0 <= RANK < WORLD_SIZE")
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.backend: str | None = None
        self.active = False  # started and not yet left: collectives run
        self._fault = _parse_fault(fault) if fault else None
        self._ctrl = self._store = self._watchdog_thread = None
        self._watchdog_stop = threading.Event()

    @classmethod
    def from_env(cls) -> World:
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK; one process when WORLD_SIZE is absent or 1."""
        env = os.environ
        try:
            size = int(env.get("WORLD_SIZE", "1"))
            rank, local = int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))
        except ValueError:
            raise ValueError(f"RANK, WORLD_SIZE, LOCAL_RANK must be integers, got RANK={env.get('RANK')!r} "
                             f"WORLD_SIZE={env.get('WORLD_SIZE')!r} LOCAL_RANK={env.get('LOCAL_RANK')!r}") from None
        if size <= 1:
            return cls()
        return cls(rank, size, local, env.get("SCRATCHLAB_FAULT", ""))

    def __deepcopy__(self, memo: dict) -> World:  # modules holding a World (SyncBatchNorm) are deep-copied (EMA)
        return self

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, backend={self.backend})"

    # ------------------------------------------------------------------------------------------ start and end
    def start(self, device: torch.device) -> World:
        """Join the process group (gloo on CPU, NCCL on CUDA) with a timeout; rank 0 starts its watchdog."""
        if self.size == 1:
            return self
        import torch.distributed as dist

        timeout = timedelta(seconds=float(os.environ.get("SCRATCHLAB_DIST_TIMEOUT", "600")))
        self.backend = backend_for(device)
        dist.init_process_group(self.backend, timeout=timeout)
        # Control traffic (metrics, flags, pickled objects) stays on the CPU, whatever the backend of the tensors.
        self._ctrl = dist.new_group(backend="gloo", timeout=timeout)
        try:
            self._store = dist.distributed_c10d._get_default_store()
        except (AttributeError, ValueError):  # a torch without it: failures still end in timeouts
            self._store = None
        self.active = True
        if self.is_main and self._store is not None:
            self._watchdog_thread = threading.Thread(target=self._watchdog, name="scratchlab-watchdog", daemon=True)
            self._watchdog_thread.start()
        return self

    def close(self) -> None:
        if self.backend is None:
            return
        import torch.distributed as dist

        self._watchdog_stop.set()
        if self._watchdog_thread is not None:  # out of its store call before the store goes
            self._watchdog_thread.join(timeout=5)
        self.active = False
        if dist.is_initialized():
            dist.destroy_process_group()

    def leave(self, result: T) -> T:
        """The end of the training loop: followers go (FollowerDone); rank 0 goes on alone, collectives off."""
        if self.size == 1:
            return result
        self.active = False
        if not self.is_main:
            raise FollowerDone
        return result

    # ------------------------------------------------------------------------------------------ failures
    @contextmanager
    def guard(self) -> Iterator[None]:
        """Around a follower's run: an error is posted to the store for rank 0 to report, then raised."""
        try:
            yield
        except (FollowerDone, KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as e:
            from scratchlab.train.loop import NonFiniteLoss

            if self.size > 1 and not self.is_main and self._store is not None and not isinstance(e, NonFiniteLoss):
                self._post(e)
            raise

    def _post(self, e: BaseException) -> None:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        try:
            self._store.set(f"scratchlab/failure/{self.rank}", f"{type(e).__name__}: {first}")
            self._store.add(FAILURES, 1)
            self._store.wait([ACK], timedelta(seconds=30))  # rank 0 has printed it (or is gone)
        except Exception:  # noqa: BLE001  the store or rank 0 is gone: torchrun is ending the run anyway
            pass

    def _watchdog(self) -> None:
        """Rank 0: a follower that failed cannot answer collectives any more; print its error and stop."""
        while not self._watchdog_stop.wait(0.5):
            try:
                if self._store.add(FAILURES, 0) == 0:
                    continue
                lines = []
                for r in range(1, self.size):
                    key = f"scratchlab/failure/{r}"
                    if self._store.check([key]):
                        lines.append(f"rank {r} of {self.size} failed: {self._store.get(key).decode()}")
                self._store.set(ACK, "1")
            except Exception:  # noqa: BLE001  the store is gone: torchrun is tearing the run down
                return
            print(f"scratchlab run: error: {'; '.join(lines)}; every rank stopped", file=sys.stderr,  # noqa: T201
                  flush=True)
            os._exit(1)

    # ------------------------------------------------------------------------------------------ data and models
    def shard(self, n: int) -> Shard:
        """Rows [n r / W, n (r + 1) / W) of a global batch of n rows (all of them in one process)."""
        if self.size == 1:
            return Shard(slice(0, n), 1.0)
        if n < self.size:
            raise ValueError(f"a batch of {n} rows cannot be split over {self.size} processes")
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return Shard(slice(lo, hi), (hi - lo) * self.size / n)

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around `module` (train with the wrapper, checkpoint the module: torch.nn's names, no `module.`);
        the module itself in one process."""
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        dev = next(module.parameters()).device
        return DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)

    def sync_batchnorm(self, module: nn.Module) -> nn.Module:
        """Every BatchNorm inside `module` normalises over the global batch while training (in place, same
        parameters and buffers, same names); unchanged in one process."""
        if self.size == 1:
            return module
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncBatchNorm):
                setattr(module, name, SyncBatchNorm(child, self))
            else:
                self.sync_batchnorm(child)
        return module

    def average_gradients_on_step(self, opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Before each `opt.step()`, replace every gradient of its parameters by the mean over the ranks (one
        all-reduce of them all): what DDP computes, for loops DDP's one-forward-one-backward contract does not fit.
        Gradients must not be clipped between backward and step (the GAN trainers do not clip)."""
        if self.size > 1:
            opt.register_step_pre_hook(lambda o, args, kwargs: self._average([p for g in o.param_groups
                                                                               for p in g["params"]]))
        return opt

    def _average(self, params: list[torch.Tensor]) -> None:
        if not self.active:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.size
            for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
                g.copy_(part.view_as(g))

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of `t` over the ranks, differentiable (its gradient is the mean of the ranks' gradients)."""
        if self.size == 1 or not self.active:
            return t
        return _AllReduceSum.apply(t) / self.size

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of `t` over the ranks, differentiable."""
        if self.size == 1 or not self.active:
            return t
        return _AllReduceSum.apply(t)

    # ------------------------------------------------------------------------------------------ agreement
    def agree(self, metrics: dict[str, float], step: int, stop: bool) -> tuple[dict[str, float], bool, list[int]]:
        """(the metrics averaged over the ranks, whether any rank was asked to stop, the ranks whose loss was not
        finite). One all-reduce on the CPU. In one process: the metrics as they are, `stop`, no ranks."""
        if self.size == 1:
            return metrics, stop, []
        import torch.distributed as dist

        if self._fault is not None and self._fault[1:] == (self.rank, step):
            if self._fault[0] == "raise":
                raise RuntimeError(f"injected failure (SCRATCHLAB_FAULT) on rank {self.rank} at step {step}")
            metrics = {k: math.nan if "loss" in k else v for k, v in metrics.items()}
        keys = list(metrics)
        bad = any("loss" in k and not math.isfinite(v) for k, v in metrics.items())
        crc = zlib.crc32(",".join(keys).encode()) % 2**20  # the same keys everywhere, or the sum below is wrong
        vec = torch.zeros(len(keys) + self.size + 2, dtype=torch.float64)
        vec[:len(keys)] = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
        vec[len(keys) + self.rank], vec[-2], vec[-1] = float(bad), float(stop), float(crc)
        dist.all_reduce(vec, group=self._ctrl)
        if vec[-1].item() != crc * self.size:
            raise RuntimeError(f"step {step}: the ranks returned different metrics (this rank: {keys})")
        mean = (vec[:len(keys)] / self.size).tolist()
        flags = vec[len(keys):len(keys) + self.size].tolist()
        return dict(zip(keys, mean, strict=True)), vec[-2].item() > 0, [r for r, f in enumerate(flags) if f > 0]

    def share(self, fn: Callable[[], T]) -> T:
        """fn() computed on rank 0 and handed to every rank (pickled); in one process, fn()."""
        if self.size == 1 or not self.active:
            return fn()
        import torch.distributed as dist

        box = [fn() if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self._ctrl)
        return box[0]

    def sync(self, state: dict[str, Any]) -> None:
        """Rank 0's parameters and buffers of every module in `state`, and its random-number generators, on
        every rank (in place)."""
        if self.size == 1 or not self.active:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for obj in state.values():
                if isinstance(obj, nn.Module):
                    for t in [*obj.parameters(), *obj.buffers()]:
                        dist.broadcast(t.data, src=0)
        self.sync_rng()

    def sync_rng(self) -> None:
        """Rank 0's torch, NumPy and Python generator states on every rank."""
        if self.size == 1 or not self.active:
            return
        state = self.share(checkpoint.rng_state)
        if not self.is_main:
            checkpoint.set_rng_state(state)

    def record(self, global_batch: int | None) -> dict[str, Any]:
        """What summary.json and meta.json say of the world: nothing in one process (its files are as always)."""
        if self.size == 1:
            return {}
        per_rank = None if global_batch is None else global_batch // self.size
        return {"world_size": self.size, "backend": self.backend, "per_rank_batch": per_rank,
                "global_batch": global_batch}


def _parse_fault(text: str) -> tuple[str, int, int]:
    try:
        kind, rank, step = text.split(":")
        if kind in ("nan", "raise"):
            return kind, int(rank), int(step)
    except ValueError:
        pass
    raise ValueError(f"SCRATCHLAB_FAULT={text!r}: expected nan:RANK:STEP or raise:RANK:STEP")


class _AllReduceSum(torch.autograd.Function):
    """y = sum over ranks of x; dL/dx = sum over ranks of dL/dy (every rank's y depends on this rank's x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        y = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm whose training statistics are the global batch's: with S_r the rows of rank r, n = sum |S_r|,

        mean = sum_r sum_{x in S_r} x / n,   var = sum_r sum_{x in S_r} (x - mean)^2 / n      (per channel)
        y = (x - mean) / sqrt(var + eps) * weight + bias

    (two all-reduces, differentiable, so the backward sums the ranks' contributions too), and running_var gets the
    unbiased var * n / (n - 1), as torch's BatchNorm. torch.nn.SyncBatchNorm does this on GPUs only; this one runs
    on any device. In eval mode, or once the ranks have parted, it is the BatchNorm it replaced.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, world: World):
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        self._kind = type(bn)  # BatchNorm1d, 2d or 3d: its shape check
        self.weight, self.bias = bn.weight, bn.bias  # the same Parameter objects: optimisers keep them
        self.running_mean, self.running_var = bn.running_mean, bn.running_var
        self.num_batches_tracked = bn.num_batches_tracked
        self.world = world
        self.train(bn.training)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        self._kind._check_input_dim(self, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.world.active):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.ndim)]  # every dimension but the channels
        shape = [1, -1, *([1] * (x.ndim - 2))]  # (1, C, 1, ...)
        sums = self.world.all_reduce_sum(torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.shape[1]])]))
        n = sums[-1].detach()  # the global batch's rows (times the spatial positions)
        mean = sums[:-1] / n
        var = self.world.all_reduce_sum(((x - mean.view(shape)) ** 2).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y
