"""Tests for trajbench.environment: real probes on this machine plus broken stand-in packages on a temporary PYTHONPATH.

One real run_checks on the CPU (with a flash-attn stand-in whose binary has the torch-ABI "undefined symbol" error) is
shared by the decision tests, which swap single probe entries (real stand-in probes, or GPU and CUDA facts) into it and
rebuild the report. Nothing assumes a CPU-only torch or a machine without a GPU: such facts are simulated. The rules
run through Snakemake in a copied project, with stand-ins for torch and pip.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow, snakemake
from trajbench import environment as envmod
from trajbench.environment import (
    REMEDIES, EnvironmentCheckError, build_report, classify, query_nvidia_smi, run_checks, run_probe, write_report,
)
from trajbench.runtime import RuntimeChoice, load_choice

REPO = Path(__file__).resolve().parents[1]
UNDEFINED_SYMBOL = ("/opt/venv/lib/python3.11/site-packages/flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so: "
                    "undefined symbol: _ZNK3c106SymInt6sym_neERKS0_")
NUMPY_BANNER = ("A module that was compiled using NumPy 1.x cannot be run in\\n"
                "NumPy 2.0.0 as it may crash. To support both 1.x and 2.x\\n"
                "versions of NumPy, modules must be compiled with NumPy 2.0.\\n")


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _env(*paths: Path, **extra: str) -> dict[str, str]:
    """This process's environment with stand-in folders first on PYTHONPATH (trajbench's src stays importable)."""
    pythonpath = [str(p) for p in paths] + [str(REPO / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath), **extra}


@pytest.fixture(scope="module")
def broken_flash(tmp_path_factory) -> Path:
    """flash-attn 2.6.3 'installed' (metadata present, as transformers checks) whose CUDA binary fails to load."""
    return _write(tmp_path_factory.mktemp("broken_flash"), {
        "flash_attn/__init__.py": "from flash_attn.flash_attn_interface import flash_attn_func\n",
        "flash_attn/flash_attn_interface.py": "import flash_attn_2_cuda\n",
        "flash_attn_2_cuda.py": f"raise ImportError({UNDEFINED_SYMBOL!r})\n",
        "flash_attn-2.6.3.dist-info/METADATA": "Metadata-Version: 2.1\nName: flash_attn\nVersion: 2.6.3\n",
    })


@pytest.fixture(scope="module")
def real(broken_flash) -> dict:
    """One real run_checks on the CPU (whatever GPU this machine has), with the broken flash-attn stand-in."""
    return run_checks({"device": "cpu", "dtype": "auto", "attention": "auto"}, {"probe_timeout_s": 300},
                      env=_env(broken_flash))


def _rebuild(real: dict, runtime: dict | None = None, environment: dict | None = None, nvidia: dict | None = None,
             **probes: dict) -> dict:
    """build_report on the real probes with some entries replaced."""
    return build_report(runtime or {}, environment or {}, {**copy.deepcopy(real["probes"]), **probes}, nvidia)


def _cpu_only_torch(real: dict) -> dict:
    """The real torch probe as a CPU-only torch build would read under runtime.device auto."""
    torch_probe = copy.deepcopy(real["probes"]["torch"])
    torch_probe["details"].update(torch="2.4.0+cpu", cuda_build=None, cuda_available=False, cuda_warnings=[])
    return torch_probe


def _public_version(version: str) -> str:
    """'2.9.1+cu128' -> '2.9.1': importlib.metadata and torch.__version__ differ only in the local build label."""
    return version.split("+")[0]


def _gpu_probes(real: dict, *, capability=(8, 0), memory_gb=80.0, free_gb=79.0, flash_ok=True,
                flash_tf_ok=True) -> dict:
    """The real probes as they would read on a CUDA machine (GPU facts only; the numbers come from the CPU run)."""
    torch_probe = copy.deepcopy(real["probes"]["torch"])
    torch_probe["details"].update(cuda_build="12.4", cuda_available=True, cuda_ok=True, gpus=[{
        "index": 0, "name": "NVIDIA TEST", "memory_gb": memory_gb, "free_memory_gb": free_gb,
        "compute_capability": list(capability)}])
    flash = copy.deepcopy(real["probes"]["flash_attn"])
    if flash_ok:
        flash.update(ok=True, **{"class": None, "remedy": None, "message": "ok"},
                     details={"flash_attn": "2.6.3", "kernel_checked": True, "max_abs_error": 1e-3})
    tf = copy.deepcopy(real["probes"]["transformers"])
    tf["details"]["attention"]["flash_attention_2"] = (
        {"ok": True, "max_abs_diff_vs_eager": 1e-3} if flash_tf_ok else {"ok": False, "error": "ValueError: nope"})
    return {"torch": torch_probe, "flash_attn": flash, "transformers": tf}


# --- the real run --------------------------------------------------------------------------------------------------


def test_real_run_on_cpu_picks_float32_sdpa_and_reports_broken_flash(real):
    assert real["choice"] == {"device": "cpu", "dtype": "float32", "attention": "sdpa",
                              "hidden_modules": ["flash_attn"]}
    probes = real["probes"]
    for name in ("python", "torch", "compiled_deps", "transformers"):
        assert probes[name]["ok"], probes[name]
    assert _public_version(probes["torch"]["details"]["torch"]) == _public_version(real["versions"]["torch"])
    assert real["versions"]["python"] == "%d.%d.%d" % sys.version_info[:3]
    # The probed interpreter's metadata (stand-in included) says flash-attn is installed; the import shows it is broken.
    assert real["versions"]["flash-attn"] == "2.6.3"
    flash = probes["flash_attn"]
    assert (flash["ok"], flash["class"], flash["remedy"]) == (False, "flash_attn_abi", REMEDIES["flash_attn_abi"])
    assert "undefined symbol: _ZNK3c106SymInt6sym_neERKS0_" in flash["message"]
    assert "pip uninstall -y flash-attn" in flash["remedy"] and "--no-build-isolation" in flash["remedy"]
    assert len(real["warnings"]) == 1 and "[flash_attn_abi]" in real["warnings"][0]
    attention = probes["transformers"]["details"]["attention"]
    assert attention["eager"]["max_abs_diff_vs_eager"] == 0.0
    assert attention["sdpa"]["ok"] and attention["sdpa"]["max_abs_diff_vs_eager"] < 1e-4
    assert "flash_attention_2" not in attention  # never tried on cpu
    assert set(probes["compiled_deps"]["details"]) == set(envmod.COMPILED_MODULES)
    assert all(probes["compiled_deps"]["details"].values())


def test_torch_probe_under_auto_agrees_with_itself_on_any_build(real):
    """Whatever torch build and GPUs this machine has: the CUDA facts agree and auto picks cuda exactly when it works."""
    probe = run_probe("torch", {"device": "auto"}, timeout_s=300)
    details = probe["details"]
    assert probe["ok"], probe
    if details["cuda_build"] is None:
        assert details["cuda_available"] is False
    if details["cuda_available"]:
        assert details["gpus"] and ("cuda_ok" in details) != ("cuda_error" in details)
    else:
        assert "gpus" not in details
    report = _rebuild(real, environment={"min_gpu_memory_gb": 0}, torch=probe)
    assert report["choice"]["device"] == ("cuda" if details.get("cuda_ok") else "cpu")


def test_write_report_and_load_choice(real, tmp_path):
    write_report(real, tmp_path / "env" / "environment.json", tmp_path / "env" / "environment.md")
    assert json.loads((tmp_path / "env" / "environment.json").read_text()) == json.loads(json.dumps(real))
    md = (tmp_path / "env" / "environment.md").read_text()
    assert "| cpu | float32 | sdpa |" in md
    assert f"| torch | {real['versions']['torch']} |" in md
    assert "| flash_attn | no | unavailable | flash_attn_abi |" in md
    assert "_ZNK3c106SymInt6sym_neERKS0_" in md
    assert sorted(p.name for p in (tmp_path / "env").iterdir()) == ["environment.json", "environment.md"]
    import torch

    # load_choice hides the broken flash_attn in this process: this test must leave sys.modules as it found it.
    before = sys.modules.get("flash_attn", "absent")
    try:
        choice = load_choice(tmp_path / "env" / "environment.json")
        assert choice == RuntimeChoice("cpu", torch.float32, "sdpa", ("flash_attn",))
        assert sys.modules["flash_attn"] is None
    finally:
        if before == "absent":
            sys.modules.pop("flash_attn", None)
        else:
            sys.modules["flash_attn"] = before


def test_model_stage_survives_a_broken_flash_attn_without_metadata(real, tmp_path):
    """A source build without metadata is imported by transformers 5.x's availability check while importing any
    model; the model stage hides it as the environment check says, and a transformers model still runs."""
    broken = _write(tmp_path / "site", {"flash_attn/__init__.py": f"raise ImportError({UNDEFINED_SYMBOL!r})\n"})
    write_report(real, tmp_path / "environment.json", tmp_path / "environment.md")
    script = textwrap.dedent(f"""
        from trajbench.runtime import load_choice
        choice = load_choice({str(tmp_path / "environment.json")!r})
        import torch
        from transformers import CLIPVisionConfig, CLIPVisionModel
        config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=32, patch_size=8)
        model = CLIPVisionModel(config).eval()
        print(tuple(model(pixel_values=torch.zeros(1, 3, 32, 32)).last_hidden_state.shape))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=_env(broken), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "(1, 17, 32)"
    assert "hidden from this job" in proc.stderr


# --- stand-in failures -------------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_missing_flash_attn_is_quiet_fallback(real):
    flash = run_probe("flash_attn", {"device": "cpu", "dtype": "float32", "tolerance": 1e-4})
    assert (flash["ok"], flash["class"], flash["remedy"]) == (False, "missing", REMEDIES["missing"])
    report = _rebuild(real, flash_attn=flash)
    assert report["choice"]["attention"] == "sdpa" and report["warnings"] == []


def test_numpy_abi_in_a_compiled_dep_is_fatal(real, tmp_path):
    standin = _write(tmp_path, {"old_ext/__init__.py": f"""
        import sys
        sys.stderr.write("{NUMPY_BANNER}")
        raise ImportError("numpy.core.multiarray failed to import")
        """})
    deps = run_probe("compiled_deps", {"modules": ["json", "old_ext"]}, env=_env(standin))
    assert (deps["ok"], deps["class"], deps["remedy"]) == (False, "numpy_abi", REMEDIES["numpy_abi"])
    assert deps["details"]["json"] and deps["details"]["old_ext"] is None
    assert "old_ext: ImportError: numpy.core.multiarray failed to import" in deps["message"]
    with pytest.raises(EnvironmentCheckError, match=r"compiled_deps probe failed \[numpy_abi\]") as caught:
        _rebuild(real, compiled_deps=deps)
    assert REMEDIES["numpy_abi"] in str(caught.value)
    assert caught.value.report["probes"]["compiled_deps"] is not real["probes"]["compiled_deps"]


def test_segfault_in_a_compiled_dep_is_a_crash(real, tmp_path):
    standin = _write(tmp_path, {"segv_ext.py": "import ctypes\nctypes.string_at(0)\n"})
    deps = run_probe("compiled_deps", {"modules": ["json", "segv_ext"]}, env=_env(standin))
    assert (deps["ok"], deps["class"]) == (False, "crash")
    assert deps["returncode"] < 0 and deps["message"].startswith("killed by signal SIGSEGV")
    assert "probe: importing segv_ext" in deps["output_tail"]  # names the culprit
    with pytest.raises(EnvironmentCheckError, match=r"compiled_deps probe failed \[crash\]"):
        _rebuild(real, compiled_deps=deps)


def test_flash_attn_that_aborts_falls_back_to_sdpa(real, tmp_path):
    standin = _write(tmp_path, {"flash_attn/__init__.py": "import os\nos.abort()\n"})
    flash = run_probe("flash_attn", {"device": "cpu", "dtype": "float32", "tolerance": 1e-4}, env=_env(standin))
    assert (flash["ok"], flash["class"], flash["remedy"]) == (False, "crash", REMEDIES["crash"])
    assert "SIGABRT" in flash["message"]
    report = _rebuild(real, flash_attn=flash)
    assert report["choice"]["attention"] == "sdpa"
    assert [w for w in report["warnings"] if "[crash]" in w]


def test_flash_attn_that_hangs_is_killed_with_its_children(real, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    standin = _write(tmp_path, {"flash_attn/__init__.py": f"""
        import subprocess, sys, time
        # Detached from the probe's pipes, so only killing the whole process group ends it.
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(120)
        """})
    flash = run_probe("flash_attn", {"device": "cpu", "dtype": "float32", "tolerance": 1e-4}, env=_env(standin),
                      timeout_s=3)
    assert (flash["ok"], flash["class"], flash["remedy"]) == (False, "timeout", REMEDIES["timeout"])
    assert flash["message"].startswith("no answer within 3 s, killed")
    grandchild = int(pid_file.read_text())
    for _ in range(100):  # the kill is asynchronous; wait until the process is gone or a zombie
        status = Path(f"/proc/{grandchild}/status")
        if not status.exists() or "\nState:\tZ" in status.read_text():
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the probe's child process {grandchild} survived the timeout")
    report = _rebuild(real, flash_attn=flash)
    assert report["choice"]["attention"] == "sdpa" and "[timeout]" in report["warnings"][0]


def test_run_checks_raises_cleanly_when_torch_segfaults(tmp_path):
    standin = _write(tmp_path, {"torch/__init__.py": "import ctypes\nctypes.string_at(0)\n"})
    with pytest.raises(EnvironmentCheckError) as caught:
        run_checks({}, {"probe_timeout_s": 60}, env=_env(standin), compiled_modules=["json"])
    message = str(caught.value)
    assert "torch probe failed [crash]: killed by signal SIGSEGV" in message
    assert "transformers probe failed [crash]" in message and REMEDIES["crash"] in message
    assert "compiled_deps" not in message
    assert caught.value.report["probes"]["torch"]["returncode"] < 0


def test_unstartable_python_is_a_clear_error():
    with pytest.raises(EnvironmentCheckError, match="cannot start the Python to check, '/nonexistent/python'"):
        run_probe("python", {"distributions": []}, python="/nonexistent/python")


@pytest.mark.parametrize("text, returncode, timed_out, expected", [
    (f"ImportError: {UNDEFINED_SYMBOL}", 1, False, "flash_attn_abi"),
    ("AttributeError: _ARRAY_API not found", 1, False, "numpy_abi"),
    ("A module that was compiled using NumPy 1.x cannot be run in NumPy 2.1.0", 1, False, "numpy_abi"),
    ("TypeError: register_pytree_node() got an unexpected keyword argument 'flatten_with_keys_fn'", 1, False,
     "transformers_torch_mismatch"),
    ("ImportError: AutoModel requires the PyTorch library but it was not found in your environment.", 1, False,
     "transformers_torch_mismatch"),
    ("RuntimeError: The NVIDIA driver on your system is too old (found version 11040).", 1, False, "old_driver"),
    ("RuntimeError: CUDA error: CUDA driver version is insufficient for CUDA runtime version", 1, False, "old_driver"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", 1, False, "out_of_memory"),
    ("AssertionError: Torch not compiled with CUDA enabled", 1, False, "no_cuda"),
    ("RuntimeError: No CUDA GPUs are available", 1, False, "no_cuda"),
    ("ModuleNotFoundError: No module named 'sklearn'", 1, False, "missing"),
    ("anything at all", -9, True, "timeout"),
    ("Fatal Python error: Segmentation fault", -11, False, "crash"),
    ("", -6, False, "crash"),
    ("ValueError: something else", 1, False, "other"),
])
def test_classify(text, returncode, timed_out, expected):
    assert classify(text, returncode, timed_out) == expected
    assert REMEDIES[expected]


# --- decisions on GPU facts ----------------------------------------------------------------------------------------


def test_gpu_auto_prefers_flash_attention_2_in_bfloat16(real):
    report = _rebuild(real, **_gpu_probes(real))
    assert report["choice"] == {"device": "cuda", "dtype": "bfloat16", "attention": "flash_attention_2",
                                "hidden_modules": []}
    assert report["warnings"] == [] and report["gpus"][0]["name"] == "NVIDIA TEST"
    assert report["versions"]["torch_cuda_build"] == "12.4"


def test_gpu_without_native_bf16_uses_float16_and_warns_on_forced_bf16(real):
    probes = _gpu_probes(real, capability=(7, 5))
    assert _rebuild(real, **probes)["choice"]["dtype"] == "float16"
    report = _rebuild(real, {"dtype": "bfloat16"}, **probes)
    assert report["choice"]["dtype"] == "bfloat16" and "no native bfloat16" in report["warnings"][0]


def test_gpu_with_broken_flash_falls_back_to_sdpa(real):
    probes = _gpu_probes(real, flash_ok=False)  # keeps the real flash_attn_abi entry
    report = _rebuild(real, **probes)
    assert report["choice"] == {"device": "cuda", "dtype": "bfloat16", "attention": "sdpa",
                                "hidden_modules": ["flash_attn"]}
    assert "[flash_attn_abi]" in report["warnings"][0]
    with pytest.raises(EnvironmentCheckError, match=r"runtime.attention is 'flash_attention_2'.*flash_attn_abi"):
        _rebuild(real, {"attention": "flash_attention_2"}, **probes)
    # flash-attn works but transformers' integration of it does not
    report = _rebuild(real, **_gpu_probes(real, flash_tf_ok=False))
    assert report["choice"]["attention"] == "sdpa"


def test_gpu_memory_limits(real):
    with pytest.raises(EnvironmentCheckError, match=r"too little GPU memory \[out_of_memory\].*6.0 GiB.*is 8"):
        _rebuild(real, **_gpu_probes(real, memory_gb=6.0, free_gb=6.0))
    assert _rebuild(real, environment={"min_gpu_memory_gb": 4}, **_gpu_probes(real, memory_gb=6.0, free_gb=6.0))
    report = _rebuild(real, **_gpu_probes(real, free_gb=2.0))
    assert report["choice"]["device"] == "cuda" and "only 2.0 GiB" in report["warnings"][0]


def test_old_driver_fails_forced_cuda_and_warns_on_auto(real):
    torch_probe = copy.deepcopy(real["probes"]["torch"])
    torch_probe["details"].update(cuda_build="12.4", cuda_available=False, cuda_warnings=[
        "CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). Please update your "
        "GPU driver."])
    with pytest.raises(EnvironmentCheckError, match=r"runtime.device is 'cuda' but CUDA is unusable \[old_driver\]"):
        _rebuild(real, {"device": "cuda"}, torch=torch_probe)
    report = _rebuild(real, torch=torch_probe)
    assert report["choice"]["device"] == "cpu"
    assert any("[old_driver]" in w and REMEDIES["old_driver"] in w for w in report["warnings"])


def test_forced_cuda_on_a_cpu_only_build_is_an_error(real):
    with pytest.raises(EnvironmentCheckError, match=r"\[no_cuda\].*torch 2.4.0\+cpu is a CPU-only build") as caught:
        _rebuild(real, {"device": "cuda"}, torch=_cpu_only_torch(real))
    assert REMEDIES["no_cuda"] in str(caught.value)
    # A plain CPU machine (no nvidia-smi, no CUDA complaints) needs no warning under auto.
    assert _rebuild(real, torch=_cpu_only_torch(real))["warnings"] == real["warnings"]


def test_forced_attention_and_dtype_on_cpu(real):
    with pytest.raises(EnvironmentCheckError, match="flash_attention_2 needs a CUDA device"):
        _rebuild(real, {"attention": "flash_attention_2"})
    assert _rebuild(real, {"attention": "eager"})["choice"]["attention"] == "eager"
    tf = copy.deepcopy(real["probes"]["transformers"])
    tf["details"]["attention"]["sdpa"] = {"ok": False, "error": "RuntimeError: no sdpa kernel"}
    with pytest.raises(EnvironmentCheckError, match="runtime.attention is 'sdpa'.*no sdpa kernel"):
        _rebuild(real, {"attention": "sdpa"}, transformers=tf)
    report = _rebuild(real, transformers=tf)
    assert report["choice"]["attention"] == "eager" and any("sdpa attention is unusable" in w
                                                             for w in report["warnings"])
    report = _rebuild(real, {"dtype": "float16"})
    assert report["choice"]["dtype"] == "float32" and any("replaced by float32" in w for w in report["warnings"])


@pytest.mark.parametrize("runtime, environment, key", [
    ({"device": "gpu"}, {}, "runtime.device"),
    ({"dtype": "fp16"}, {}, "runtime.dtype"),
    ({"attention": "flash"}, {}, "runtime.attention"),
    ({"allow_slow_cpu": "yes"}, {}, "runtime.allow_slow_cpu"),
    ({}, {"probe_timeout_s": 0}, "environment.probe_timeout_s"),
    ({}, {"min_gpu_memory_gb": -1}, "environment.min_gpu_memory_gb"),
])
def test_config_errors_name_the_key(runtime, environment, key):
    with pytest.raises(ValueError, match=key):
        run_checks(runtime, environment, python="/nonexistent/python")


def test_nvidia_smi_facts_and_failures(real, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA A100-SXM4-80GB, 81920, 535.104.05'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    found = query_nvidia_smi({"PATH": str(bin_dir)})
    assert found == {"found": True, "driver": "535.104.05", "gpus": [{"name": "NVIDIA A100-SXM4-80GB",
                                                                      "memory_mib": "81920"}], "error": None}
    # nvidia-smi sees a GPU, torch is a CPU-only build: auto falls back with a warning naming why
    report = _rebuild(real, nvidia=found, torch=_cpu_only_torch(real))
    assert report["choice"]["device"] == "cpu" and report["versions"]["nvidia_driver"] == "535.104.05"
    assert any("[no_cuda]" in w and "CPU-only build" in w for w in report["warnings"])
    smi.write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\""
                   "\nexit 9\n")
    failed = query_nvidia_smi({"PATH": str(bin_dir)})
    assert failed["found"] and failed["gpus"] == [] and "couldn't communicate" in failed["error"]
    assert query_nvidia_smi({"PATH": str(tmp_path / "empty")})["found"] is False


# --- the rules, run by Snakemake in a copied project ---------------------------------------------------------------


@pytest.mark.slow  # Snakemake runs the rule twice in a copied project (~25 s)
def test_check_environment_rule(tmp_path):
    work = copy_workflow(tmp_path / "project")
    target = ("--cores", "1", "results/env/environment.json", "--configfile", "config/demo.yaml")
    crashing = _write(tmp_path / "crashing", {"torch/__init__.py": "import ctypes\nctypes.string_at(0)\n"})
    proc = snakemake(*target, cwd=work, check=False, env=_env(crashing))
    assert proc.returncode != 0 and "logs/check_environment.log" in proc.stderr
    log = (work / "logs" / "check_environment.log").read_text()
    assert "torch probe failed [crash]: killed by signal SIGSEGV" in log and REMEDIES["crash"] in log
    assert "torch probe output tail:" in log and "Fatal Python error: Segmentation fault" in log
    assert not (work / "results" / "env" / "environment.json").exists()

    snakemake(*target, cwd=work)
    report = json.loads((work / "results" / "env" / "environment.json").read_text())
    assert {key: report["choice"][key] for key in ("device", "dtype", "attention")} == {
        "device": "cpu", "dtype": "float32", "attention": "sdpa"}
    assert "| cpu | float32 | sdpa |" in (work / "results" / "env" / "environment.md").read_text()


# Found by `python -m pip` ahead of the real pip (PYTHONPATH comes first on sys.path): records its arguments, then
# acts as the test's PIP_OUTCOME says on the stand-in flash_attn next to it.
STANDIN_PIP = f"""
import os, pathlib, sys
site = pathlib.Path(__file__).resolve().parents[1]
with open(site / "pip_calls.txt", "a") as record:
    record.write(f"MAX_JOBS={{os.environ.get('MAX_JOBS')}} {{' '.join(sys.argv[1:])}}\\n")
print("stand-in pip", sys.argv[1], "output", flush=True)
outcome, init = os.environ["PIP_OUTCOME"], site / "flash_attn" / "__init__.py"
if sys.argv[1] == "uninstall":
    init.unlink()
elif outcome == "fails":
    sys.exit("error: nvcc not found")
else:
    init.write_text("__version__ = '2.7.0'\\n" if outcome == "works" else "raise ImportError({UNDEFINED_SYMBOL!r})\\n")
"""


@pytest.mark.parametrize("outcome", ["works", "fails", "still_broken"])
def test_rebuild_flash_attn_rule(outcome, tmp_path):
    site = _write(tmp_path / "site", {"flash_attn/__init__.py": f"raise ImportError({UNDEFINED_SYMBOL!r})\n",
                                      "pip/__init__.py": "", "pip/__main__.py": STANDIN_PIP})
    work = copy_workflow(tmp_path / "project")
    (work / "extra.yaml").write_text(yaml.safe_dump({"environment": {"rebuild_flash_attn": True}}))
    proc = snakemake("--cores", "2", "results/env/flash_attn_rebuild.json", "--configfile", "config/demo.yaml",
                     "extra.yaml", cwd=work, check=False, env=_env(site, PIP_OUTCOME=outcome))
    assert (site / "pip_calls.txt").read_text().splitlines() == [  # the rule's 4 threads, capped by --cores 2
        "MAX_JOBS=2 uninstall -y flash-attn", "MAX_JOBS=2 install --no-cache-dir --no-build-isolation flash-attn"]
    build_log = (work / "logs" / "flash_attn_build.log").read_text()
    assert (build_log.index(f"$ MAX_JOBS=2 {sys.executable} -m pip uninstall -y flash-attn")
            < build_log.index("stand-in pip uninstall output") < build_log.index("stand-in pip install output"))
    log = (work / "logs" / "rebuild_flash_attn.log").read_text()
    result = work / "results" / "env" / "flash_attn_rebuild.json"
    if outcome == "works":
        assert proc.returncode == 0, proc.stderr[-3000:]
        rebuilt = json.loads(result.read_text())
        assert (rebuilt["device"], rebuilt["dtype"]) == ("cpu", "float32")  # runtime.device: cpu in the demo config
        assert [step["returncode"] for step in rebuilt["steps"]] == [0, 0]
        assert rebuilt["probe"]["ok"] and rebuilt["probe"]["details"] == {"flash_attn": "2.7.0",
                                                                          "kernel_checked": False}
        assert "flash-attn works after the rebuild (cpu, float32)" in log
        return
    assert proc.returncode != 0 and "logs/rebuild_flash_attn.log" in proc.stderr and not result.exists()
    assert "environment.rebuild_flash_attn: false" in log  # the way out when the build cannot be fixed
    if outcome == "fails":
        assert "-m pip install --no-cache-dir --no-build-isolation flash-attn` exited with status 1" in log
        assert "full log: logs/flash_attn_build.log" in log and "error: nvcc not found" in log
        assert "error: nvcc not found" in build_log
    else:
        assert "flash-attn still fails after the rebuild [flash_attn_abi]" in log and "undefined symbol" in log
        assert "build flash-attn by hand" in log and "Build log: logs/flash_attn_build.log" in log
