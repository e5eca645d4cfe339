"""Tests for trajbench.environment: real probes on this machine plus broken stand-in packages on a temporary PYTHONPATH.

One real run_checks (with a flash-attn stand-in whose binary has the torch-ABI "undefined symbol" error) is shared by
the decision tests, which swap single probe entries (real stand-in probes or GPU facts) into it and rebuild the report.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import runpy
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from trajbench import environment as envmod
from trajbench.environment import (
    REMEDIES, EnvironmentCheckError, RuntimeChoice, build_report, check_cpu_budget, classify, load_choice,
    query_nvidia_smi, rebuild_flash_attn, run_checks, run_probe, write_report,
)

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
    """One real run_checks on this CPU machine, with the broken flash-attn stand-in."""
    return run_checks({"device": "auto", "dtype": "auto", "attention": "auto"}, {"probe_timeout_s": 300},
                      env=_env(broken_flash))


def _rebuild(real: dict, runtime: dict | None = None, environment: dict | None = None, nvidia: dict | None = None,
             **probes: dict) -> dict:
    """build_report on the real probes with some entries replaced."""
    return build_report(runtime or {}, environment or {}, {**copy.deepcopy(real["probes"]), **probes}, nvidia)


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


def test_real_run_picks_cpu_float32_sdpa_and_reports_broken_flash(real):
    assert real["choice"] == {"device": "cpu", "dtype": "float32", "attention": "sdpa",
                              "hidden_modules": ["flash_attn"]}
    probes = real["probes"]
    for name in ("python", "torch", "compiled_deps", "transformers"):
        assert probes[name]["ok"], probes[name]
    assert probes["torch"]["details"]["torch"] == real["versions"]["torch"]
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
        from trajbench.environment import load_choice
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


def test_load_choice_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="missing.json"):
        load_choice(tmp_path / "missing.json")
    (tmp_path / "auto.json").write_text(json.dumps({"choice": {"device": "auto", "dtype": "float32",
                                                               "attention": "sdpa"}}))
    with pytest.raises(ValueError, match="auto.json.*not a concrete"):
        load_choice(tmp_path / "auto.json")


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


def test_forced_cuda_on_this_cpu_build_is_an_error(real):
    with pytest.raises(EnvironmentCheckError, match=r"\[no_cuda\].*CPU-only build") as caught:
        _rebuild(real, {"device": "cuda"})
    assert REMEDIES["no_cuda"] in str(caught.value)


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
    # nvidia-smi sees a GPU, this torch is a CPU-only build: auto falls back with a warning naming why
    report = _rebuild(real, nvidia=found)
    assert report["choice"]["device"] == "cpu" and report["versions"]["nvidia_driver"] == "535.104.05"
    assert any("[no_cuda]" in w and "CPU-only build" in w for w in report["warnings"])
    smi.write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\""
                   "\nexit 9\n")
    failed = query_nvidia_smi({"PATH": str(bin_dir)})
    assert failed["found"] and failed["gpus"] == [] and "couldn't communicate" in failed["error"]
    assert query_nvidia_smi({"PATH": str(tmp_path / "empty")})["found"] is False


# --- CPU budget ------------------------------------------------------------------------------------------------------


def test_check_cpu_budget(caplog):
    assert check_cpu_budget("cuda", 1e6, False, "magvit encode") is None
    assert check_cpu_budget("cuda:1", 1e6, False, "magvit encode") is None
    assert check_cpu_budget("cpu", 10.0, False, "tiny magvit") == pytest.approx(50.0)
    full = (4.47 + 6.19) * 1000  # full MagVit encode + decode of 1000 17x128x128 clips
    with pytest.raises(EnvironmentCheckError) as caught:
        check_cpu_budget("cpu", full, False, "magvit reconstruction")
    message = str(caught.value)
    assert "magvit reconstruction: 1.07e+04 TFLOP, about 14.8 h on cpu at an assumed 0.2 TFLOP/s" in message
    assert "runtime.allow_slow_cpu: true" in message and "runtime.device: cuda" in message
    with caplog.at_level(logging.WARNING, logger="trajbench.environment"):
        assert check_cpu_budget("cpu", full, True, "magvit reconstruction") == pytest.approx(full / 0.2)
    assert "allow_slow_cpu is true" in caplog.text
    with pytest.raises(EnvironmentCheckError, match="about 3.0 h on cpu at a measured 1 TFLOP/s"):
        check_cpu_budget("cpu", 10800.0, False, "x", cpu_tflops=1.0)
    assert check_cpu_budget("cpu", 10800.0, False, "x", cpu_tflops=1.0, max_cpu_seconds=4 * 3600) == 10800.0
    with pytest.raises(ValueError, match="cpu_tflops"):
        check_cpu_budget("cpu", 1.0, False, "x", cpu_tflops=0.0)


# --- flash-attn rebuild (fake pip) -----------------------------------------------------------------------------------


@pytest.fixture
def fake_python(tmp_path) -> Path:
    """A `python` that records and fakes `-m pip ...` (install fails when FAIL_INSTALL is set), else runs Python."""
    path = tmp_path / "python"
    path.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
            echo "MAX_JOBS=$MAX_JOBS $*" >> "$RECORD"
            echo "fake pip $3 output"
            if [ "$3" = "install" ] && [ -n "$FAIL_INSTALL" ]; then echo "error: nvcc not found" >&2; exit 1; fi
            exit 0
        fi
        exec {sys.executable} "$@"
        """))
    path.chmod(0o755)
    return path


def test_rebuild_flash_attn_runs_pip_then_probes(fake_python, tmp_path):
    working = _write(tmp_path / "working", {"flash_attn/__init__.py": "__version__ = '2.7.0'\n"})
    record = tmp_path / "record.txt"
    result = rebuild_flash_attn(3, tmp_path / "logs" / "build.log", python=str(fake_python),
                                env=_env(working, RECORD=str(record)), timeout_s=300)
    assert record.read_text().splitlines() == [
        "MAX_JOBS=3 -m pip uninstall -y flash-attn",
        "MAX_JOBS=3 -m pip install --no-cache-dir --no-build-isolation flash-attn",
    ]
    log = (tmp_path / "logs" / "build.log").read_text()
    assert log.index("$ MAX_JOBS=3 ") < log.index("fake pip uninstall output") < log.index("fake pip install output")
    assert [s["returncode"] for s in result["steps"]] == [0, 0]
    assert (result["device"], result["dtype"]) == ("cpu", "float32")
    assert result["probe"]["ok"] and result["probe"]["details"] == {"flash_attn": "2.7.0", "kernel_checked": False}


def test_rebuild_flash_attn_pip_failure_keeps_the_log(fake_python, tmp_path):
    record = tmp_path / "record.txt"
    with pytest.raises(EnvironmentCheckError, match=r"(?s)exited with status 1.*error: nvcc not found"):
        rebuild_flash_attn(2, tmp_path / "build.log", python=str(fake_python),
                           env=_env(RECORD=str(record), FAIL_INSTALL="1"))
    assert "error: nvcc not found" in (tmp_path / "build.log").read_text()
    assert len(record.read_text().splitlines()) == 2


# --- the thin Snakemake scripts --------------------------------------------------------------------------------------


class _Log(list):
    """Snakemake's log object: a list whose named entries are also attributes."""

    def __init__(self, **named):
        super().__init__(named.values())
        self.__dict__.update(named)


def _snakemake(tmp_path, **params) -> SimpleNamespace:
    return SimpleNamespace(
        params=SimpleNamespace(**params), threads=4,
        log=_Log(main=str(tmp_path / "rule.log"), build=str(tmp_path / "build.log")),
        output=SimpleNamespace(json=str(tmp_path / "out" / "environment.json"),
                               md=str(tmp_path / "out" / "environment.md")))


def test_check_environment_script(real, tmp_path, monkeypatch):
    script = str(REPO / "workflow" / "scripts" / "check_environment.py")
    smk = _snakemake(tmp_path, runtime={"device": "gpu"}, environment={})
    with pytest.raises(SystemExit) as caught:
        runpy.run_path(script, init_globals={"snakemake": smk})
    assert caught.value.code == 1 and not (tmp_path / "out").exists()
    assert "runtime.device is 'gpu'" in (tmp_path / "rule.log").read_text()

    calls = []
    monkeypatch.setattr(envmod, "run_checks", lambda runtime, environment: calls.append((runtime, environment)) or real)
    smk = _snakemake(tmp_path, runtime={"device": "auto"}, environment={"probe_timeout_s": 5})
    runpy.run_path(script, init_globals={"snakemake": smk})
    assert calls == [({"device": "auto"}, {"probe_timeout_s": 5})]
    assert json.loads(Path(smk.output.json).read_text())["choice"] == real["choice"]
    assert "| cpu | float32 | sdpa |" in Path(smk.output.md).read_text()


def test_rebuild_flash_attn_script(real, tmp_path, monkeypatch):
    script = str(REPO / "workflow" / "scripts" / "rebuild_flash_attn.py")
    calls = []

    def fake_rebuild(jobs, log_path, timeout_s):
        calls.append((jobs, log_path, timeout_s))
        return {"steps": [], "device": "cpu", "dtype": "float32", "probe": probe}

    monkeypatch.setattr(envmod, "rebuild_flash_attn", fake_rebuild)
    probe = real["probes"]["flash_attn"]  # still broken after the "rebuild"
    smk = _snakemake(tmp_path, environment={"probe_timeout_s": 7})
    with pytest.raises(SystemExit) as caught:
        runpy.run_path(script, init_globals={"snakemake": smk})
    assert caught.value.code == 1 and not Path(smk.output.json).exists()
    assert "still fails after the rebuild [flash_attn_abi]" in (tmp_path / "rule.log").read_text()
    assert calls == [(4, smk.log.build, 7)]

    probe = {**probe, "ok": True}
    runpy.run_path(script, init_globals={"snakemake": smk})
    assert json.loads(Path(smk.output.json).read_text())["probe"]["ok"] is True
