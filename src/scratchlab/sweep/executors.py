"""Where a sweep's runs execute: in this process, in a local process pool, or as Ray tasks on a cluster.

    execute(jobs, kind="serial" | "local" | "ray", workers=0) -> yields (job, outcome) as runs finish

serial  one run after another in this process (debugging, tests, a single core).
local   a pool of spawned processes, `workers` of them (default: the cores this process may use,
        os.sched_getaffinity), each with cores // workers torch and BLAS threads, so workers x threads <= cores.
ray     Ray core tasks (`pip install scratchlab[ray]`), one CPU-slot of `threads` per run; `ray_address` joins a
        running cluster (`ray start --head` on one machine, `ray start --address=HEAD:6379` on the others), else a
        local Ray instance with the same number of CPUs is started. A task writes its run directory straight into
        the sweep's folder when it can see it (a shared file system: the driver leaves a token there to check); on
        a machine that cannot, it runs in a temporary folder and sends the folder back, which the driver unpacks
        into the sweep's folder. Every node needs scratchlab installed (and its data, for real-data experiments).

This module imports no torch at import time: a worker's thread settings are made before torch loads.
"""

from __future__ import annotations

import io
import os
import secrets
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

KINDS = ("serial", "local", "ray")
TOKEN = ".sweep-token"


def cores() -> int:
    """The CPUs this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def budget() -> int:
    """The threads a sweep may use in all: the cores this process may run on, or fewer when torch's thread count
    was lowered (`--threads N` sets it), so `--threads 1` means one worker with one thread."""
    torch = sys.modules.get("torch")
    return max(1, min(cores(), torch.get_num_threads() if torch is not None else cores()))


def plan_workers(n_jobs: int, workers: int = 0) -> tuple[int, int]:
    """(processes, threads per process): `workers`, else one per thread of the budget, never more than the jobs;
    threads per process fill the budget without oversubscribing it (at least one)."""
    if workers < 0:
        raise ValueError(f"--workers: expected 0 (one per core) or more, got {workers}")
    n = max(1, min(n_jobs, workers or budget()))
    return n, max(1, budget() // n)


_WORKER: dict[str, Any] = {"parent": None, "busy": False}  # in a worker: the sweep's pid, and whether a run is on


def _orphaned() -> bool:
    return _WORKER["parent"] is not None and os.getppid() != _WORKER["parent"]


def _stop_with_parent() -> None:
    """A worker stops when the sweep's process ends, however it ends (`kill PID`, a scheduler's kill, kill -9),
    instead of training on as an orphan into a folder the next `--resume` will want (measured: a sweep's main
    process killed with SIGTERM left its worker running for minutes, taking the runs already queued for it, and
    idle ones waiting forever on the task queue, whose write end each worker holds itself). A watcher thread polls
    the parent: once the worker is orphaned, a run in progress gets one SIGTERM, so it stops at its step boundary
    and saves, as a run alone does, and the worker then ends instead of taking another run (`_run_in_worker`); an
    idle worker ends at once. Not PR_SET_PDEATHSIG: it fires when the parent *thread* ends, once per exiting thread
    of a dying sweep, while getppid() still names the sweep (measured: the first signal stopped the run before its
    parent looked gone, so the worker took a queued run; a second one cut a step short, before it saved)."""
    import signal
    import threading
    import time

    _WORKER["parent"] = os.getppid()

    def watch() -> None:
        told = False
        while True:
            time.sleep(0.2)
            if not _orphaned():
                continue
            if not _WORKER["busy"]:
                os._exit(1)
            if not told:
                os.kill(os.getpid(), signal.SIGTERM)
                told = True

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def _start_worker(threads: int) -> None:
    _stop_with_parent()
    set_threads(threads)


def _run_in_worker(job: Any) -> dict[str, Any]:
    from scratchlab.sweep.engine import run_job

    if _orphaned():  # a run queued for this worker before the sweep ended: nobody wants its result
        os._exit(1)
    _WORKER["busy"] = True
    try:
        return run_job(job)
    finally:
        _WORKER["busy"] = False
        if _orphaned():
            os._exit(1)


def set_threads(threads: int) -> None:
    """torch's and BLAS's threads in a worker; called before the first run imports torch."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def execute(jobs: list, *, kind: str = "local", workers: int = 0,
            ray_address: str | None = None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Yield (job, outcome) for every job as it finishes; outcomes come from `engine.run_job`."""
    if kind not in KINDS:
        raise ValueError(f"--executor: expected one of {list(KINDS)}, got {kind!r}")
    if not jobs:
        return
    if kind == "serial":
        from scratchlab.sweep.engine import run_job

        for job in jobs:
            yield job, run_job(job)
    elif kind == "local":
        yield from _local(jobs, workers)
    else:
        yield from _ray(jobs, workers, ray_address)


# Kept between sweeps (`reproduce` starts its workers once), for as long as what a worker inherited at its start
# still holds: the folder and the environment (SCRATCHLAB_DATA, SCRATCHLAB_CACHE, ...).
_POOL: dict[tuple, ProcessPoolExecutor] = {}


def _pool(n: int, threads: int) -> tuple[tuple, ProcessPoolExecutor]:
    key = (n, threads, os.getcwd(), tuple(sorted(os.environ.items())))
    for k in [k for k, pool in _POOL.items() if k != key or getattr(pool, "_broken", False)]:
        _POOL.pop(k).shutdown(wait=True, cancel_futures=True)
    if key not in _POOL:
        _POOL[key] = ProcessPoolExecutor(n, mp_context=get_context("spawn"), initializer=_start_worker,
                                         initargs=(threads,))
    return key, _POOL[key]


def _local(jobs: list, workers: int) -> Iterator[tuple[Any, dict[str, Any]]]:

    n, threads = plan_workers(len(jobs), workers)
    (key, pool), ok = _pool(n, threads), False
    try:
        futures = {pool.submit(_run_in_worker, job): job for job in jobs}
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for f in finished:
                job = futures.pop(f)
                try:
                    outcome = f.result()
                except Exception as e:  # the worker process died (killed, out of memory)
                    outcome = {"status": "failed", "summary": None, "seconds": 0.0,
                               "error": f"worker process lost: {type(e).__name__}: {e}"}
                yield job, outcome
        ok = True
    finally:
        if not ok:  # interrupted, or a worker died: these processes are not to be trusted with the next sweep
            _POOL.pop(key, None)
            pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------------ Ray
def _ray_run(job: Any, token: str, threads: int) -> tuple[dict[str, Any], bytes | None]:
    """A Ray task: run the job where the sweep's folder is visible, else in a temporary folder sent back as a tar."""
    set_threads(threads)
    from scratchlab.sweep.engine import run_job

    out = Path(job.out)
    marker = out.parent.parent / TOKEN
    try:
        shared = marker.read_text() == token
    except OSError:
        shared = False
    if shared:
        return run_job(job), None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / out.parent.name / out.name
        outcome = run_job(replace(job, out=str(local), resume=False))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(local, arcname=".", filter=lambda m: None if m.name.endswith(".lock") else m)
        return outcome, buffer.getvalue()


def _unpack(data: bytes, dest: Path) -> None:
    """A run directory sent back by a remote task: regular files and folders only, nothing outside `dest`."""
    import shutil

    from scratchlab.data.archive import extract_tar

    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.NamedTemporaryFile(suffix=".tar.gz") as f:
        f.write(data)
        f.flush()
        extract_tar(Path(f.name), dest)


def _ray(jobs: list, workers: int, address: str | None) -> Iterator[tuple[Any, dict[str, Any]]]:
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install 'scratchlab[ray]'") from None
    n, threads = plan_workers(len(jobs), workers)
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=n * threads, include_dashboard=False, log_to_driver=False)
        started = True
    token = secrets.token_hex(16)
    sweep_dir = Path(jobs[0].out).parent.parent
    (sweep_dir / TOKEN).write_text(token)
    task = ray.remote(num_cpus=threads, max_retries=0)(_ray_run)
    try:
        refs = {task.remote(job, token, threads): job for job in jobs}
        while refs:
            finished, _ = ray.wait(list(refs), num_returns=1)
            for ref in finished:
                job = refs.pop(ref)
                try:
                    outcome, packed = ray.get(ref)
                    if packed is not None:
                        _unpack(packed, Path(job.out))
                except Exception as e:  # the task or its node died
                    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    outcome = {"status": "failed", "summary": None, "seconds": 0.0,
                               "error": f"ray task lost: {type(e).__name__}: {first}"}
                yield job, outcome
    finally:
        (sweep_dir / TOKEN).unlink(missing_ok=True)
        if started:
            ray.shutdown()
