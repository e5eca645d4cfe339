"""What model stages need at run time: the environment check's choice, the precision context and the CPU budget.

``load_choice`` reads the device/dtype/attention that the environment check (trajbench.environment) chose and hides
the extensions it found broken (``hide_modules``), so call it before importing transformers. ``autocast`` is the
precision context of every model forward; ``check_cpu_budget`` refuses full-size work on the CPU.

torch is imported only inside functions: trajbench.environment imports the constants from here and must survive a
torch that crashes on import.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "float32", "bfloat16", "float16")
HALF_DTYPES = ("float16", "bfloat16")
# Preference order for `runtime.attention: auto`.
ATTENTIONS = ("flash_attention_2", "sdpa", "eager")

ASSUMED_CPU_TFLOPS = 0.2
DEFAULT_MAX_CPU_SECONDS = 3600.0


class CpuBudgetError(RuntimeError):
    """Work estimated to take too long on the CPU; the message says how to run it anyway or elsewhere."""


@dataclass(frozen=True)
class RuntimeChoice:
    """Where and how model stages run, as decided by the environment check."""

    device: str
    dtype: "torch.dtype"
    attention: str
    hidden_modules: tuple[str, ...] = ()


def load_choice(json_path: str | os.PathLike) -> RuntimeChoice:
    """The device/dtype/attention chosen by the environment check, from its JSON report.

    It also hides the broken extensions the check found (:func:`hide_modules`), so call it before importing
    transformers.
    """
    import torch

    try:
        choice = json.loads(Path(json_path).read_text())["choice"]
        device, dtype_name, attention = choice["device"], choice["dtype"], choice["attention"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{json_path}: no valid environment report with choice.device/dtype/attention ({exc!r}); "
                         "rerun the environment check rule") from exc
    if device not in DEVICES[1:] or dtype_name not in DTYPES[1:] or attention not in ATTENTIONS:
        raise ValueError(f"{json_path}: choice {choice} is not a concrete device/dtype/attention; "
                         "rerun the environment check rule")
    runtime = RuntimeChoice(device=device, dtype=getattr(torch, dtype_name), attention=attention,
                            hidden_modules=tuple(choice.get("hidden_modules", ())))
    hide_modules(runtime)
    return runtime


def hide_modules(choice: RuntimeChoice) -> None:
    """Hide the installed-but-broken extensions the environment check found from this process.

    Some transformers releases import flash_attn while importing any model (and 5.x does when the package has no
    metadata), so a broken build would break every model, not only flash attention. Hiding it (``sys.modules[name]
    = None``) makes ``find_spec`` answer "not installed" and ``import`` fail cleanly, so sdpa/eager keep working.
    """
    for name in choice.hidden_modules:
        if sys.modules.get(name) is not None:
            continue  # already imported successfully here: nothing to protect against
        sys.modules[name] = None
        logger.warning("%s is installed but broken (see the environment report); hidden from this job", name)


def autocast(device: "str | torch.device", dtype: "torch.dtype") -> contextlib.AbstractContextManager:
    """The precision context of a model forward: autocast in ``dtype`` on accelerators, none for float32.

    Half precision on the CPU is refused rather than silently dropped: the environment check never chooses it there,
    so asking for it is a mistake in the caller or the config.
    """
    import torch

    device_type = torch.device(device).type
    if dtype == torch.float32:
        return contextlib.nullcontext()
    if device_type == "cpu":
        raise ValueError(f"models run in float32 on the CPU; got dtype {dtype} (set runtime.dtype: float32 or auto)")
    return torch.autocast(device_type=device_type, dtype=dtype)


CPU_THREADS = 1


@contextlib.contextmanager
def cpu_threads(device: "str | torch.device"):
    """Compute on the CPU in `CPU_THREADS` threads, whatever the job's thread count.

    Snakemake gives a job as many threads as ``--cores`` allows, and torch's CPU kernels split their sums by thread
    count: the same config would give other bytes under another ``--cores``. On accelerators nothing changes.
    """
    import torch

    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_cpu_budget(device: Any, tflop_total: float, allow_slow_cpu: bool, what: str, *,
                     cpu_tflops: float | None = None, max_cpu_seconds: float = DEFAULT_MAX_CPU_SECONDS) -> float | None:
    """Estimated CPU seconds for ``tflop_total`` TFLOP of work ``what``; None on a GPU, where no budget applies.

    Work estimated over ``max_cpu_seconds`` is refused (CpuBudgetError) unless ``allow_slow_cpu``.
    ``cpu_tflops`` is a measured throughput; None assumes ASSUMED_CPU_TFLOPS (and the message says so).
    """
    if str(device).split(":")[0] != "cpu":
        return None
    if tflop_total < 0:
        raise ValueError(f"{what}: tflop_total is {tflop_total}; it must be >= 0")
    rate = ASSUMED_CPU_TFLOPS if cpu_tflops is None else cpu_tflops
    if rate <= 0:
        raise ValueError(f"{what}: cpu_tflops is {rate}; it must be > 0")
    seconds = tflop_total / rate
    basis = f"an assumed {rate:g} TFLOP/s" if cpu_tflops is None else f"a measured {rate:g} TFLOP/s"
    estimate = f"{what}: {tflop_total:.3g} TFLOP, about {format_duration(seconds)} on cpu at {basis}"
    if seconds <= max_cpu_seconds:
        logger.info("%s", estimate)
    elif allow_slow_cpu:
        logger.warning("%s; runtime.allow_slow_cpu is true, so it runs anyway", estimate)
    else:
        raise CpuBudgetError(
            f"{estimate}, over the {format_duration(max_cpu_seconds)} allowed on cpu. Run it on a GPU "
            "(runtime.device: cuda or auto on a CUDA machine), make it smaller (fewer clips, a smaller config), or set "
            "runtime.allow_slow_cpu: true to run it anyway")
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
