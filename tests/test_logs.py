import subprocess
import sys

from conftest import ROOT


def test_an_uncaught_error_lands_in_the_job_log(tmp_path):
    log = tmp_path / "job.log"
    script = f"from trajbench import logs\nlogs.setup({str(log)!r})\nraise ValueError('models.clip: sha256 differs')\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 1
    text = log.read_text()
    assert "ValueError: models.clip: sha256 differs" in text and "Traceback" in text
    assert proc.stderr.count("sha256 differs") == 2  # the log line and its traceback, once: not printed twice over
