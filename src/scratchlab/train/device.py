"""The one place a device is named: everything below takes its device from its input tensors."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cuda` without a GPU is an error, not a silent fallback.

    `local_rank` (a process of a data-parallel run, torchrun's LOCAL_RANK): CUDA means this machine's GPU number
    `local_rank`, made the current one; CPU stays CPU.
    """
    if name == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} was asked for, but torch sees no CUDA device (use auto or cpu)")
    elif name.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu or cuda, got {name!r}")
    else:
        dev = torch.device(name)
    if local_rank is None or dev.type != "cuda":
        return dev
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"LOCAL_RANK={local_rank}, but this machine has {torch.cuda.device_count()} CUDA "
                           "device(s): start at most that many processes per machine (--nproc-per-node)")
    dev = torch.device("cuda", local_rank)
    torch.cuda.set_device(dev)
    return dev


def backend_for(device: torch.device) -> str:
    """The torch.distributed backend for tensors on `device`: NCCL for CUDA, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"
