"""What this machine can do fast, and how much memory a process has used: read by the
trainer (its dtype), the chat engine (the base model's dtype) and the benchmarks."""

from __future__ import annotations

import resource


def bf16_ok() -> bool:
    """bf16 where the hardware has fast kernels for it: a recent GPU, or a CPU with AMX
    or AVX512-BF16 (there bf16 matmuls run several times faster than fp32). Elsewhere
    bf16 is emulated and far slower than fp32, so models load in fp32."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def cpu_has_fast_bf16() -> bool:
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def peak_rss_mb() -> int:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec, where
    getrusage's ru_maxrss keeps the parent's peak at the fork: a trainer started by
    the app would report the app's memory as its own."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return round(int(line.split()[1]) / 1024)
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def describe_machine() -> str:
    """The processor, its cores and the torch version: every benchmark's and
    walkthrough's results name the machine they ran on."""
    import os
    import platform

    import torch

    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info
                    if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
