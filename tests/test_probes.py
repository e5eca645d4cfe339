"""trajbench.probes in this process: the marker protocol and the probe registry (test_environment.py runs them as
the environment check does, in subprocesses)."""

from __future__ import annotations

import json

import pytest

from trajbench import environment, probes


def _details(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(probes.MARKER)]
    assert len(lines) == 1, stdout
    return json.loads(lines[0][len(probes.MARKER):])


def test_every_probe_the_check_runs_exists():
    assert set(probes.PROBES) == set(environment.PROBES)


def test_main_prints_details_on_the_marker_line(capsys):
    probes.main(["python", json.dumps({"distributions": ["pytest", "no-such-distribution"]})])
    details = _details(capsys.readouterr().out)
    assert details["versions"] == {"pytest": pytest.__version__, "no-such-distribution": None}


def test_main_prints_partial_details_when_the_probe_fails(capsys):
    with pytest.raises(ImportError, match="no_such_module_for_test: ModuleNotFoundError"):
        probes.main(["compiled_deps", json.dumps({"modules": ["json", "no_such_module_for_test"]})])
    assert _details(capsys.readouterr().out) == {"json": json.__version__, "no_such_module_for_test": None}
