"""Environment check: prove the Python/torch/CUDA/flash-attn stack works before any long job, and pick a working path.

Every probe runs in its own Python subprocess with a timeout, so a broken binary that segfaults, aborts or hangs is
reported (classified, with a one-line remedy) instead of taking the check down. Nothing is trusted from metadata alone:
transformers' ``is_flash_attn_2_available()`` says "available" for a flash-attn build that cannot even be imported, so
flash-attn is imported and its kernel compared with torch's attention.

``run_checks`` runs the probes (the programs in trajbench.probes) and returns the report (``choice`` =
device/dtype/attention for model stages); ``build_report`` is its pure decision half, ``write_report`` writes JSON +
Markdown, which trajbench.runtime.load_choice reads back in model stages. ``rebuild_flash_attn`` rebuilds flash-attn
against the installed torch. Heavy packages are imported only inside probes: the check must survive a torch that
crashes on import.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping

from trajbench import probes as probe_programs
from trajbench.io import markdown_table, write_json, write_text
from trajbench.runtime import ATTENTIONS, DEVICES, DTYPES, HALF_DTYPES

logger = logging.getLogger(__name__)

DEFAULT_PROBE_TIMEOUT_S = 120.0
DEFAULT_MIN_GPU_MEMORY_GB = 8.0

# Compiled packages the workflow imports; a NumPy-1.x build among them fails only at import.
COMPILED_MODULES = ("numpy", "scipy", "sklearn", "skimage", "pandas", "matplotlib")
# Distribution names whose versions the report lists (importlib.metadata, read inside the probed interpreter).
DISTRIBUTIONS = (
    "torch", "numpy", "transformers", "huggingface_hub", "snakemake", "scikit-image", "scikit-learn", "scipy",
    "pandas", "matplotlib", "flash-attn",
)
# name (a probe in trajbench.probes) -> required; a failed required probe stops the workflow, a failed optional one
# only changes the choice.
PROBES = {"python": True, "torch": True, "compiled_deps": True, "flash_attn": False, "transformers": True}

# Accuracy allowed between attention implementations, relative to the output's largest magnitude (half precision
# rounds at ~1e-3 (fp16) / ~4e-3 (bf16) relative, and kernels accumulate in different orders).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 4e-2}

REBUILD_FLASH_ATTN = ("pip uninstall -y flash-attn && "
                      "MAX_JOBS=4 pip install --no-cache-dir --no-build-isolation flash-attn")

# Failure classes, checked in this order against the probe's output (most specific first); timeout and crash come from
# how the process ended. Each class has a one-line remedy.
_PATTERNS = (
    ("flash_attn_abi", r"undefined symbol"),
    ("numpy_abi", r"compiled using NumPy 1\.x|_ARRAY_API not found|numpy\.core\.multiarray failed to import"
                  r"|numpy\.dtype size changed"),
    ("transformers_torch_mismatch", r"flatten_with_keys_fn|register_pytree_node|requires (?:the )?(?:PyTorch|torch)\b"
                                    r"|PyTorch >= ?[\d.]+ is required|Disabling PyTorch because"),
    ("old_driver", r"driver version is insufficient|driver on your system is too old|DRIVER_MISMATCH"
                   r"|forward compatibility was attempted"),
    ("out_of_memory", r"out of memory|OutOfMemoryError|too little GPU memory"),
    ("no_cuda", r"not compiled with CUDA|no CUDA GPUs are available|no CUDA-capable device|Found no NVIDIA driver"
                r"|CUDA is not available|couldn't communicate with the NVIDIA driver|CPU-only build"),
    ("missing", r"No module named|not installed|PackageNotFoundError"),
)
REMEDIES = {
    "flash_attn_abi": "a compiled extension (usually flash-attn) was built against another torch: rebuild it against "
                      f"the installed torch (`{REBUILD_FLASH_ATTN}`, or set environment.rebuild_flash_attn: true); "
                      "never downgrade torch",
    "numpy_abi": "an extension was compiled for NumPy 1.x: reinstall the package named in the message "
                 "(`pip install --force-reinstall --no-cache-dir PACKAGE`) to get a NumPy-2 build, "
                 "or pin numpy<2 for the whole environment",
    "transformers_torch_mismatch": "this transformers release does not support the installed torch: install a "
                                   "transformers that does (e.g. `pip install 'transformers<4.50'` for torch < 2.3); "
                                   "do not downgrade torch",
    "no_cuda": "torch sees no usable CUDA device: check `nvidia-smi`, CUDA_VISIBLE_DEVICES and that torch is a CUDA "
               "build (torch.version.cuda is not None), or set runtime.device: cpu",
    "old_driver": "the NVIDIA driver is older than torch's CUDA build needs: upgrade the driver or install a torch "
                  "wheel built for the driver's CUDA version, or set runtime.device: cpu",
    "out_of_memory": "free the GPU (other processes in `nvidia-smi`), pick a larger one with CUDA_VISIBLE_DEVICES, "
                     "lower batch sizes or environment.min_gpu_memory_gb, or set runtime.device: cpu",
    "timeout": "the probe did not finish within environment.probe_timeout_s: check for a hung GPU/driver "
               "(`nvidia-smi`) or a slow filesystem, then rerun or raise environment.probe_timeout_s",
    "crash": "the probe killed the Python interpreter: a compiled extension is broken; the output tail shows where "
             "(faulthandler), reinstall that package",
    "missing": "install the package named in the message; flash-attn is optional "
               "(`MAX_JOBS=4 pip install flash-attn --no-build-isolation`), without it attention uses sdpa",
    "other": "unexpected failure: read the message and output tail in the report, fix the package it names, rerun",
}

_TAIL_CHARS = 4000
# The probe file runs by path, not as `-m trajbench.probes`: the probed interpreter need not have trajbench
# installed, and putting this package's folder (site-packages, when installed) on its PYTHONPATH would show it
# packages that are not its own. run_path, unlike `python FILE`, does not put trajbench/ (with its io.py and
# tokenize.py) ahead of the standard library on sys.path.
_LAUNCH = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"


class EnvironmentCheckError(RuntimeError):
    """The environment cannot run the workflow as configured; the message lists each problem with its remedy."""

    def __init__(self, problems: Iterable[str], report: dict | None = None):
        self.problems = list(problems)
        self.report = report
        lines = self.problems if len(self.problems) == 1 else [f"{len(self.problems)} problems:"] + [
            f"- {p}" for p in self.problems]
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------------------------------
# Probes


def classify(text: str, returncode: int | None = 0, timed_out: bool = False) -> str:
    """Failure class of a probe from its output text and how its process ended (see REMEDIES)."""
    if timed_out:
        return "timeout"
    for name, pattern in _PATTERNS:
        if re.search(pattern, text, flags=re.IGNORECASE):
            return name
    if (returncode is not None and returncode < 0) or "Fatal Python error" in text:
        return "crash"
    return "other"


def run_probe(name: str, args: Mapping[str, Any], *, python: str = sys.executable,
              env: Mapping[str, str] | None = None, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S) -> dict:
    """Run probe ``name`` (a key of PROBES) in a fresh ``python`` with ``env`` (None: this process's environment).

    Returns {"ok", "required", "class", "remedy", "message", "seconds", "returncode", "details", "output_tail"};
    ``details`` holds what the probe measured, also after a failure where it got that far.
    """
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; known: {', '.join(PROBES)}")
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("HF_HUB_OFFLINE", "1")  # probes build models from configs; they must never download
    command = [python, "-X", "faulthandler", "-c", _LAUNCH, probe_programs.__file__, name, json.dumps(dict(args))]
    returncode, stdout, stderr, timed_out, seconds = _run_process(command, child_env, timeout_s)
    details: dict = {}
    output_lines = []
    marker = probe_programs.MARKER
    for line in stdout.splitlines():
        if line.startswith(marker):
            details = json.loads(line[len(marker):])
        else:
            output_lines.append(line)
    output = "\n".join(output_lines).strip() + "\n" + stderr
    ok = returncode == 0 and not timed_out
    entry = {"ok": ok, "required": PROBES[name], "class": None, "remedy": None, "message": "ok",
             "seconds": round(seconds, 3), "returncode": returncode, "details": details,
             "output_tail": output.strip()[-_TAIL_CHARS:]}
    if not ok:
        entry["class"] = classify(output, returncode, timed_out)
        entry["remedy"] = REMEDIES[entry["class"]]
        entry["message"] = _failure_message(stderr, returncode, timed_out, timeout_s)
    logger.info("probe %s: %s in %.1f s%s", name, "ok" if ok else "FAILED", seconds,
                "" if ok else f" [{entry['class']}] {entry['message']}")
    return entry


def _run_process(command: list[str], env: dict, timeout_s: float) -> tuple[int | None, str, str, bool, float]:
    """Run ``command`` capturing output; on timeout kill its whole process group (a probe's children too)."""
    start = time.perf_counter()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                                   errors="replace", start_new_session=True)
    except OSError as exc:
        raise EnvironmentCheckError([f"cannot start the Python to check, {command[0]!r}: {exc}"]) from exc
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
        stdout, stderr = process.communicate()
    except BaseException:  # e.g. KeyboardInterrupt: leave no probe behind
        _kill_group(process)
        process.wait()
        raise
    return process.returncode, stdout, stderr, timed_out, time.perf_counter() - start


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def _failure_message(stderr: str, returncode: int | None, timed_out: bool, timeout_s: float) -> str:
    """One line: how the probe ended plus the last error line it printed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b.*:", line)
              or line.startswith("Fatal Python error")]
    last = errors[-1] if errors else (lines[-1] if lines else "")
    if timed_out:
        how = f"no answer within {timeout_s:g} s, killed"
    elif returncode is not None and returncode < 0:
        how = f"killed by signal {_signal_name(-returncode)}"
    else:
        return last or f"exit status {returncode}"
    return f"{how}; last output: {last}" if last else how


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def query_nvidia_smi(env: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> dict:
    """Driver and GPUs from ``nvidia-smi`` found on ``env``'s PATH: {"found", "driver", "gpus", "error"}."""
    path = shutil.which("nvidia-smi", path=(os.environ if env is None else env).get("PATH"))
    result: dict = {"found": path is not None, "driver": None, "gpus": [], "error": None}
    if path is None:
        return result
    try:
        done = subprocess.run([path, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=timeout_s, env=None if env is None else dict(env))
    except (OSError, subprocess.TimeoutExpired) as exc:
        result["error"] = f"nvidia-smi: {exc}"
        return result
    if done.returncode != 0:
        result["error"] = "nvidia-smi: " + (done.stdout + done.stderr).strip()
        return result
    for line in done.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3:
            result["gpus"].append({"name": fields[0], "memory_mib": fields[1]})
            result["driver"] = fields[2]
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Decisions


def run_checks(runtime: Mapping[str, Any], environment: Mapping[str, Any], python: str = sys.executable,
               env: Mapping[str, str] | None = None, *, compiled_modules: Iterable[str] = COMPILED_MODULES) -> dict:
    """Probe the environment of ``python`` (with ``env``) and choose device, dtype and attention.

    ``runtime``/``environment`` are the config sections (keys: device, dtype, attention, allow_slow_cpu /
    probe_timeout_s, min_gpu_memory_gb). Raises EnvironmentCheckError (class + remedy per problem) when a required
    probe fails or a forced choice cannot work; an unusable flash-attn only becomes a warning and a fallback.
    """
    settings = _settings(runtime, environment)
    timeout = settings["probe_timeout_s"]

    def probe(name: str, args: dict) -> dict:
        return run_probe(name, args, python=python, env=env, timeout_s=timeout)

    # The compiled-deps probe needs no device choice, so it runs alongside the chain that does.
    with ThreadPoolExecutor(max_workers=1) as pool:
        deps = pool.submit(probe, "compiled_deps", {"modules": list(compiled_modules)})
        nvidia = query_nvidia_smi(env, timeout)
        probes = {"python": probe("python", {"distributions": list(DISTRIBUTIONS)}),
                  "torch": probe("torch", {"device": settings["device"]})}
        # Later probes run on the device/dtype this choice gives; build_report repeats it (pure) to record its notes.
        device = _choose_device(settings, probes["torch"], nvidia, [], [])
        dtype = _choose_dtype(settings, device, _gpus(probes["torch"]), [])
        probes["flash_attn"] = probe("flash_attn", {"device": device, "dtype": dtype, "tolerance": TOLERANCE[dtype]})
        attentions = ["eager", "sdpa"]
        if probes["flash_attn"]["details"].get("kernel_checked") and probes["flash_attn"]["ok"]:
            attentions.append("flash_attention_2")  # transformers' own flash integration can fail on its own
        probes["transformers"] = probe("transformers", {"device": device, "dtype": dtype, "attentions": attentions,
                                                        "tolerance": TOLERANCE[dtype],
                                                        "hidden": hidden_modules(probes)})
        probes["compiled_deps"] = deps.result()
    return build_report(runtime, environment, {name: probes[name] for name in PROBES}, nvidia)


def build_report(runtime: Mapping[str, Any], environment: Mapping[str, Any], probes: Mapping[str, dict],
                 nvidia: Mapping[str, Any] | None = None) -> dict:
    """The report from probe results (the entries run_probe returns, one per PROBES name) and nvidia-smi facts.

    Raises EnvironmentCheckError listing every problem (failed required probes, forced choices that cannot work,
    too little GPU memory); the partial report is attached as ``.report``.
    """
    settings = _settings(runtime, environment)
    missing = [name for name in PROBES if name not in probes]
    if missing:
        raise ValueError(f"probe results lack {', '.join(missing)}; run_checks runs all of {', '.join(PROBES)}")
    nvidia = dict(nvidia or {"found": False, "driver": None, "gpus": [], "error": None})
    warnings: list[str] = []
    problems = [f"{name} probe failed [{entry['class']}]: {entry['message']}. Remedy: {entry['remedy']}"
                for name, entry in probes.items() if PROBES[name] and not entry["ok"]]
    gpus = _gpus(probes["torch"])
    device = _choose_device(settings, probes["torch"], nvidia, warnings, problems)
    dtype = _choose_dtype(settings, device, gpus, warnings)
    attention = _choose_attention(settings, device, dtype, probes, warnings, problems)
    torch_details = probes["torch"]["details"]
    report = {
        "choice": {"device": device, "dtype": dtype, "attention": attention, "hidden_modules": hidden_modules(probes)},
        "warnings": warnings,
        "settings": settings,
        "versions": {
            "python": probes["python"]["details"].get("python"),
            **probes["python"]["details"].get("versions", {}),
            "torch_cuda_build": torch_details.get("cuda_build"),
            "cudnn": torch_details.get("cudnn"),
            "nvidia_driver": nvidia.get("driver"),
        },
        "gpus": gpus,
        "nvidia_smi": nvidia,
        "probes": dict(probes),
    }
    for text in warnings:
        logger.warning("%s", text)
    if problems:
        raise EnvironmentCheckError(problems, report)
    logger.info("choice: device=%s dtype=%s attention=%s", device, dtype, attention)
    return report


def _settings(runtime: Mapping[str, Any], environment: Mapping[str, Any]) -> dict:
    """Config values with their defaults, validated; errors name the key, the value and what is allowed."""
    settings = {
        "device": runtime.get("device", "auto"),
        "dtype": runtime.get("dtype", "auto"),
        "attention": runtime.get("attention", "auto"),
        "allow_slow_cpu": runtime.get("allow_slow_cpu", False),
        "probe_timeout_s": environment.get("probe_timeout_s", DEFAULT_PROBE_TIMEOUT_S),
        "min_gpu_memory_gb": environment.get("min_gpu_memory_gb", DEFAULT_MIN_GPU_MEMORY_GB),
    }
    for key, allowed in (("device", DEVICES), ("dtype", DTYPES), ("attention", ("auto",) + ATTENTIONS)):
        if settings[key] not in allowed:
            raise ValueError(f"config runtime.{key} is {settings[key]!r}; use one of {', '.join(allowed)}")
    if not isinstance(settings["allow_slow_cpu"], bool):
        raise ValueError(f"config runtime.allow_slow_cpu is {settings['allow_slow_cpu']!r}; use true or false")
    for key, lowest, what in (("probe_timeout_s", 1e-9, "seconds > 0"), ("min_gpu_memory_gb", 0.0, "GiB >= 0")):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lowest:
            raise ValueError(f"config environment.{key} is {value!r}; use a number of {what}")
    return settings


def _gpus(torch_probe: dict) -> list[dict]:
    return torch_probe["details"].get("gpus", [])


def _choose_device(settings: dict, torch_probe: dict, nvidia: Mapping[str, Any], warnings: list[str],
                   problems: list[str]) -> str:
    requested = settings["device"]
    details = torch_probe["details"]
    if requested == "cpu" or not torch_probe["ok"]:  # a failed torch probe is already a problem
        return "cpu"
    if details.get("cuda_ok"):
        gpu = details["gpus"][0]
        minimum = settings["min_gpu_memory_gb"]
        if gpu["memory_gb"] < minimum:
            problems.append(f"too little GPU memory [out_of_memory]: {gpu['name']} has {gpu['memory_gb']:.1f} GiB, "
                            f"environment.min_gpu_memory_gb is {minimum:g}. Remedy: {REMEDIES['out_of_memory']}")
        elif gpu.get("free_memory_gb", minimum) < minimum:
            warnings.append(f"only {gpu['free_memory_gb']:.1f} GiB of {gpu['name']}'s {gpu['memory_gb']:.1f} GiB are "
                            f"free (environment.min_gpu_memory_gb is {minimum:g}); other processes use the GPU and "
                            f"jobs may run out of memory [out_of_memory]. Remedy: {REMEDIES['out_of_memory']}")
        return "cuda"
    reasons = [details.get("cuda_error"), *details.get("cuda_warnings", []), nvidia.get("error")]
    if not details.get("cuda_build"):
        reasons.append(f"torch {details.get('torch')} is a CPU-only build")
    reason = "; ".join(r for r in reasons if r) or "torch.cuda.is_available() is False"
    kind = classify(reason)
    kind = "no_cuda" if kind == "other" else kind
    text = f"CUDA is unusable [{kind}]: {reason}. Remedy: {REMEDIES[kind]}"
    if requested == "cuda":
        problems.append(f"runtime.device is 'cuda' but {text}")
    elif nvidia.get("gpus") or nvidia.get("error") or details.get("cuda_error") or details.get("cuda_warnings"):
        # Only warn where a GPU was evidently meant to work; a plain CPU machine needs no warning.
        warnings.append(f"runtime.device 'auto' falls back to cpu: {text}")
    return "cpu"


def _choose_dtype(settings: dict, device: str, gpus: list[dict], warnings: list[str]) -> str:
    requested = settings["dtype"]
    if device == "cpu":
        if requested in HALF_DTYPES:
            warnings.append(f"runtime.dtype {requested} is replaced by float32 on cpu (half precision on CPU is "
                            "slow and poorly supported)")
        return "float32"
    name, capability = gpus[0]["name"], tuple(gpus[0]["compute_capability"])
    native_bf16 = capability >= (8, 0)  # Ampere+; torch.cuda.is_bf16_supported() also counts slow emulation
    if requested == "auto":
        return "bfloat16" if native_bf16 else "float16"
    if requested == "bfloat16" and not native_bf16:
        warnings.append(f"{name} (compute capability {capability[0]}.{capability[1]}) has no native bfloat16, so it "
                        "is emulated and slow; consider runtime.dtype: float16 or auto")
    return requested


def _choose_attention(settings: dict, device: str, dtype: str, probes: Mapping[str, dict], warnings: list[str],
                      problems: list[str]) -> str | None:
    """First usable of ATTENTIONS (or the forced one); None only when the transformers probe failed (a problem)."""
    flash, tf = probes["flash_attn"], probes["transformers"]
    tested = tf["details"].get("attention", {})
    unusable = {}  # implementation -> why it cannot be used
    if device != "cuda":
        unusable["flash_attention_2"] = f"flash_attention_2 needs a CUDA device (chosen: {device})"
    elif dtype not in HALF_DTYPES:
        unusable["flash_attention_2"] = f"flash_attention_2 needs float16 or bfloat16 (chosen: {dtype})"
    elif not flash["ok"]:
        unusable["flash_attention_2"] = (f"flash-attn probe failed [{flash['class']}]: {flash['message']}. "
                                         f"Remedy: {flash['remedy']}")
    for name in ATTENTIONS:
        if name not in unusable and not tested.get(name, {}).get("ok"):
            error = tested.get(name, {}).get("error", "the transformers probe failed")
            unusable[name] = f"a tiny transformers model with attn_implementation={name} failed: {error}"
    if not flash["ok"] and flash["class"] != "missing":
        warnings.append(f"flash-attn is installed but unusable [{flash['class']}]: {flash['message']}. "
                        f"Remedy: {flash['remedy']}")
    requested = settings["attention"]
    if requested != "auto":
        if requested in unusable:
            problems.append(f"runtime.attention is '{requested}' but it cannot work here: {unusable[requested]}")
        return requested
    choice = next((name for name in ATTENTIONS if name not in unusable), None)
    if tf["ok"] and "sdpa" in unusable:
        warnings.append(f"sdpa attention is unusable, using {choice}: {unusable['sdpa']}")
    return choice


# ---------------------------------------------------------------------------------------------------------------------
# Report files


def write_report(report: Mapping[str, Any], json_path: str | os.PathLike, md_path: str | os.PathLike) -> None:
    """Write the report as JSON (for load_choice) and as readable Markdown."""
    write_json(json_path, report)
    write_text(md_path, render_markdown(report))


def render_markdown(report: Mapping[str, Any]) -> str:
    choice = report["choice"]
    lines = ["# Environment check", "", "## Choice", "",
             markdown_table(("device", "dtype", "attention"),
                            [(choice["device"], choice["dtype"], choice["attention"])]),
             "", "## Warnings", ""]
    lines += [f"- {' '.join(str(text).split())}" for text in report["warnings"]] or ["None."]
    lines += ["", "## Versions", "",
              markdown_table(("component", "version"),
                      [(name, "none" if value is None else value) for name, value in report["versions"].items()]),
              "", "## GPUs", ""]
    gpus = [(g["index"], g["name"], f"{g['memory_gb']:.1f}", ".".join(map(str, g["compute_capability"])))
            for g in report["gpus"]]
    header = ("index", "name", "memory (GiB)", "compute capability")
    lines += [markdown_table(header, gpus)] if gpus else ["None visible to torch."]
    lines += ["", "## Probes", "",
              markdown_table(("probe", "required", "status", "class", "seconds", "message", "remedy"),
                      [(name, "yes" if e["required"] else "no",
                        "ok" if e["ok"] else "FAILED" if e["required"] else "unavailable", e["class"] or "",
                        f"{e['seconds']:.1f}", e["message"], e["remedy"] or "")
                       for name, e in report["probes"].items()])]
    for name, entry in report["probes"].items():
        if not entry["ok"] and entry["output_tail"]:
            lines += ["", f"### {name}: output tail", "", "```", entry["output_tail"].replace("```", "'''"), "```"]
    return "\n".join(lines) + "\n"


def hidden_modules(probes: Mapping[str, dict]) -> list[str]:
    """Installed-but-broken optional extensions that model stages must not import (trajbench.runtime.hide_modules
    says why)."""
    flash = probes.get("flash_attn", {})
    return ["flash_attn"] if not flash.get("ok", True) and flash.get("class") != "missing" else []


# ---------------------------------------------------------------------------------------------------------------------
# flash-attn rebuild


def rebuild_flash_attn(jobs: int, log_path: str | os.PathLike, runtime: Mapping[str, Any] | None = None,
                       environment: Mapping[str, Any] | None = None, python: str = sys.executable, *,
                       env: Mapping[str, str] | None = None) -> dict:
    """Reinstall flash-attn built against the installed torch, then probe it; torch itself is never touched.

    Runs ``python -m pip uninstall -y flash-attn`` and ``python -m pip install --no-cache-dir --no-build-isolation
    flash-attn`` (no cache: a cached wheel would be the old, broken build) with MAX_JOBS=jobs, streaming their output
    to ``log_path``. ``-m pip``, not a ``pip`` found on PATH: only the interpreter's own pip is sure to install into
    its environment. Raises EnvironmentCheckError when pip fails (the log is kept). ``runtime``/``environment`` are
    the config sections (device and dtype as run_checks reads them; probe_timeout_s). Returns {"steps", "device",
    "dtype", "probe"} where probe is the flash_attn probe entry on the device/dtype the config gives.
    """
    if jobs < 1:
        raise ValueError(f"rebuild_flash_attn: jobs is {jobs}; use at least 1")
    settings = _settings(runtime or {}, environment or {})
    child_env = dict(os.environ if env is None else env)
    child_env["MAX_JOBS"] = str(jobs)  # flash-attn's build runs this many compilers; each can take several GiB RAM
    if shutil.which("ninja", path=child_env.get("PATH")) is None:
        logger.warning("ninja is not on PATH: the flash-attn build falls back to a serial compile that takes hours; "
                       "`pip install ninja` first")
    commands = [[python, "-m", "pip", "uninstall", "-y", "flash-attn"],
                [python, "-m", "pip", "install", "--no-cache-dir", "--no-build-isolation", "flash-attn"]]
    steps = []
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:  # written as it goes, so that a build of hours can be followed
        for command in commands:
            shown = f"MAX_JOBS={jobs} {shlex.join(command)}"
            logger.info("running %s (output: %s)", shown, log_path)
            log.write(f"$ {shown}\n")
            log.flush()
            start = time.perf_counter()
            returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=child_env).returncode
            steps.append({"command": shown, "returncode": returncode, "seconds": round(time.perf_counter() - start, 1)})
            if returncode != 0:
                break
    failed = [step for step in steps if step["returncode"] != 0]
    if failed:
        tail = Path(log_path).read_text(errors="replace")[-2000:]
        raise EnvironmentCheckError(
            [f"`{failed[0]['command']}` exited with status {failed[0]['returncode']}; full log: {log_path}. Fix what "
             "its end below names (often: no CUDA compiler nvcc, or too little memory for MAX_JOBS compilers: give the "
             "rule fewer threads), then rerun; or set environment.rebuild_flash_attn: false to run without flash-attn "
             f"(attention falls back to sdpa). The log's end:\n{tail}"], {"steps": steps})
    timeout = settings["probe_timeout_s"]
    torch_probe = run_probe("torch", {"device": settings["device"]}, python=python, env=env, timeout_s=timeout)
    device = _choose_device(settings, torch_probe, {}, [], [])  # problems with the device are check_environment's
    dtype = _choose_dtype(settings, device, _gpus(torch_probe), [])
    probe = run_probe("flash_attn", {"device": device, "dtype": dtype, "tolerance": TOLERANCE[dtype]},
                      python=python, env=env, timeout_s=timeout)
    return {"steps": steps, "device": device, "dtype": dtype, "probe": probe}
