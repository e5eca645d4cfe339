"""trajbench.runtime: the choice model stages read, hiding broken modules, the precision context, the CPU budget.
(load_choice on a real environment report is tested in test_environment.py.)"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

import pytest
import torch

from trajbench.runtime import CpuBudgetError, RuntimeChoice, autocast, check_cpu_budget, hide_modules, load_choice


def test_load_choice_reads_the_choice_and_rejects_bad_files(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "broken_ext_for_test", raising=False)  # restored when the test ends
    (tmp_path / "env.json").write_text(json.dumps({"choice": {
        "device": "cpu", "dtype": "float32", "attention": "sdpa", "hidden_modules": ["broken_ext_for_test"]}}))
    assert load_choice(tmp_path / "env.json") == RuntimeChoice("cpu", torch.float32, "sdpa", ("broken_ext_for_test",))
    assert sys.modules["broken_ext_for_test"] is None
    with pytest.raises(ValueError, match="missing.json.*rerun the environment check rule"):
        load_choice(tmp_path / "missing.json")
    (tmp_path / "auto.json").write_text(json.dumps({"choice": {"device": "auto", "dtype": "float32",
                                                               "attention": "sdpa"}}))
    with pytest.raises(ValueError, match="auto.json.*not a concrete"):
        load_choice(tmp_path / "auto.json")


def test_hide_modules_leaves_imported_modules_alone(monkeypatch, caplog):
    monkeypatch.delitem(sys.modules, "broken_ext_for_test", raising=False)
    with caplog.at_level(logging.WARNING, logger="trajbench.runtime"):
        hide_modules(RuntimeChoice("cpu", torch.float32, "sdpa", ("json", "broken_ext_for_test")))
    assert sys.modules["json"] is json and sys.modules["broken_ext_for_test"] is None
    assert "broken_ext_for_test is installed but broken" in caplog.text and "json is" not in caplog.text
    with pytest.raises(ImportError):
        import broken_ext_for_test  # noqa: F401


def test_autocast_in_half_precision_on_accelerators_only():
    with warnings.catch_warnings():  # a CPU-only torch warns that CUDA autocast is disabled
        warnings.simplefilter("ignore")
        context = autocast("cuda:0", torch.bfloat16)
    assert isinstance(context, torch.autocast) and context.device == "cuda" and context.fast_dtype == torch.bfloat16
    assert not isinstance(autocast("cuda:0", torch.float32), torch.autocast)
    assert not isinstance(autocast(torch.device("cpu"), torch.float32), torch.autocast)
    with pytest.raises(ValueError, match=r"float32 on the CPU; got dtype torch.float16 \(set runtime.dtype"):
        autocast("cpu", torch.float16)


def test_check_cpu_budget(caplog):
    assert check_cpu_budget("cuda", 1e6, False, "magvit encode") is None
    assert check_cpu_budget("cuda:1", 1e6, False, "magvit encode") is None
    assert check_cpu_budget("cpu", 10.0, False, "tiny magvit") == pytest.approx(50.0)
    full = (4.47 + 6.19) * 1000  # full MagVit encode + decode of 1000 17x128x128 clips
    with pytest.raises(CpuBudgetError) as caught:
        check_cpu_budget("cpu", full, False, "magvit reconstruction")
    message = str(caught.value)
    assert "magvit reconstruction: 1.07e+04 TFLOP, about 14.8 h on cpu at an assumed 0.2 TFLOP/s" in message
    assert "runtime.allow_slow_cpu: true" in message and "runtime.device: cuda" in message
    with caplog.at_level(logging.WARNING, logger="trajbench.runtime"):
        assert check_cpu_budget("cpu", full, True, "magvit reconstruction") == pytest.approx(full / 0.2)
    assert "allow_slow_cpu is true" in caplog.text
    with pytest.raises(CpuBudgetError, match="about 3.0 h on cpu at a measured 1 TFLOP/s"):
        check_cpu_budget("cpu", 10800.0, False, "x", cpu_tflops=1.0)
    assert check_cpu_budget("cpu", 10800.0, False, "x", cpu_tflops=1.0, max_cpu_seconds=4 * 3600) == 10800.0
    with pytest.raises(ValueError, match="cpu_tflops"):
        check_cpu_budget("cpu", 1.0, False, "x", cpu_tflops=0.0)


def test_runtime_does_not_import_torch_or_environment():
    """trajbench.environment imports runtime's constants and must survive a torch that crashes on import."""
    code = "import sys, trajbench.runtime; print(sorted({'torch', 'trajbench.environment'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
