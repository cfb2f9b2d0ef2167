"""How a sweep's trials share this machine's GPUs, said once when the sweep starts: how much GPU memory each
trial can count on. Ray shares a GPU by counting fractions (``resources.gpu: 0.25`` puts four trials on
one); it does not divide the memory, so a trial that takes more than its share leaves the others less."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class Gpus:
    """This machine's GPUs, as the driver sees them: how many, and the name and memory of the smallest."""

    count: int
    name: str
    memory_bytes: int


def trials_per_gpu(gpu: float) -> int:
    """How many trials share one GPU at ``resources.gpu`` (a fraction 1/N, checked by the spec; 1 otherwise)."""
    return round(1 / gpu) if 0 < gpu < 1 else 1


def memory_per_trial_line(gpus: Gpus, gpu: float) -> str:
    """The line printed at the start of a sweep with ``resources.gpu`` = ``gpu`` above 0."""
    n = trials_per_gpu(gpu)
    where = f"GPU: {gpus.count} x {gpus.name}, {gpus.memory_bytes / GIB:.1f} GiB each; resources.gpu {gpu:g}"
    if n == 1:
        return f"{where}: one trial (or data-parallel worker) per GPU, {gpus.memory_bytes / GIB:.1f} GiB of GPU memory each"
    return (
        f"{where}: {n} trials per GPU, {gpus.memory_bytes / n / GIB:.1f} GiB of GPU memory left per trial "
        "(total / trials per GPU; not enforced: a trial that runs out fails with 'out of GPU memory')"
    )


def parse_nvidia_smi(output: str) -> Gpus | None:
    """``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`` (MiB) -> ``Gpus``."""
    rows = [line.rsplit(",", 1) for line in output.strip().splitlines() if "," in line]
    sizes = [(int(float(mib)) * 1024**2, name.strip()) for name, mib in rows if mib.strip().replace(".", "", 1).isdigit()]
    if not sizes:
        return None
    memory, name = min(sizes)
    return Gpus(len(sizes), name, memory)


def announce(gpu: float, echo: Callable[[str], None], gpus: Gpus | None = None) -> None:
    """Print the memory line on a machine with GPUs, for a sweep whose trials use them (``gpu`` above 0)."""
    gpus = gpus or (local_gpus() if gpu > 0 else None)
    if gpu > 0 and gpus is not None:
        echo(memory_per_trial_line(gpus, gpu))


def local_gpus() -> Gpus | None:
    """This machine's GPUs, read with ``nvidia-smi`` (no CUDA context is made in the driver, whose memory
    would be taken from the trials); None where there is none or the tool is missing."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else None
