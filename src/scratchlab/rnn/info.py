"""What runs where on this machine (`scratchlab info`): the CPU's vector features, the compiled kernels' variant
and build, the kernel each recurrent layer's float32 steps take, and the libraries and thread counts."""

from __future__ import annotations

import platform


def layer_kernels(info: dict) -> dict[str, str]:
    """The step kernel of LSTM, GRU and RNN on float32 CPU input, as fast._step_kernel picks it (from `describe()`;
    before a load, what the build will have)."""
    python = "Python step loops (rnn/fast.py)"
    if info["status"].startswith(("off", "build failed")):
        return dict.fromkeys(("LSTM", "GRU", "RNN"), python)
    if info["packed"] if info["packed"] is not None else info["isa"] != "generic":
        return dict.fromkeys(("LSTM", "GRU", "RNN"), f"packed kernel, {info['isa']} variant (rnn/csrc/kernel.h)")
    return {"LSTM": "compiled library kernel (rnn/csrc/lstm.cpp: oneDNN or at::mm per step)", "GRU": python,
            "RNN": python}


def report(load: bool = True) -> str:
    """The lines `scratchlab info` prints; load=True builds or loads the kernels first (a build says so)."""
    import numpy
    import torch
    from threadpoolctl import threadpool_info

    from scratchlab.rnn import _cext

    info = _cext.describe(load=load)
    out = [f"CPU: {info['cpu']} ({info['machine']})",
           f"  vector features: {' '.join(info['features']) or 'unknown'}",
           f"  kernel variants it can run: {', '.join(info['supported'])}",
           f"kernels: {info['isa']} variant ({'forced by SCRATCHLAB_ISA' if info['forced'] else 'chosen from the CPU'})"
           + (f", the loaded library says {info['kernel_isa']}" if info["kernel_isa"] else ""),
           f"  build: {info['build']}", f"  status: {info['status']}",
           f"  flags: {' '.join(info['flags'])}"]
    out += [f"  {name}: {kernel}" for name, kernel in layer_kernels(info).items()]
    ops = _cext.ops() if info["status"] == "loaded" else None
    if ops is not None:
        bf16 = ops.bf16_available()
        out.append("  LSTM inference under CPU autocast to bf16: " + ("bf16 kernel (AVX512-BF16, rnn/csrc/lstm.cpp)"
                   if bf16 else "float32 kernels (this build has no AVX512-BF16)"))
    out += [f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads), numpy {numpy.__version__}, Python {platform.python_version()}"]
    for pool in threadpool_info():
        out.append(f"  {pool.get('user_api')}: {pool.get('internal_api')} {pool.get('version')}, "
                   f"{pool.get('num_threads')} threads ({pool.get('filepath')})")
    return "\n".join(out)
