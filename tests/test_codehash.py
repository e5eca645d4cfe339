"""trajbench.codehash: the library modules each workflow script runs, found without importing anything."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from trajbench import codehash

SCRIPTS = sorted((ROOT / "workflow/scripts").glob("*.py"))


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_walk_follows_every_kind_of_import(tmp_path):
    src = _package(tmp_path / "src", {
        "trajbench/__init__.py": "",
        "trajbench/a.py": "from trajbench import b\n",
        "trajbench/b.py": "def f():\n    from trajbench.sub import c  # lazy: still runs\n",
        "trajbench/sub/__init__.py": "",
        "trajbench/sub/c.py": "from . import d\nfrom .d import name\n",
        "trajbench/sub/d.py": "import json\nname = 1\n",
        "trajbench/unused.py": "",
    })
    script = tmp_path / "script.py"
    script.write_text("import numpy\nfrom trajbench.a import something\n")
    assert list(codehash.modules(script, src)) == [
        "trajbench", "trajbench.a", "trajbench.b", "trajbench.sub", "trajbench.sub.c", "trajbench.sub.d"]
    before = codehash.script_hash(script, src)
    (src / "trajbench/unused.py").write_text("x = 1\n")  # a module the script never runs
    assert codehash.script_hash(script, src) == before
    (src / "trajbench/sub/d.py").write_text("import json\nname = 2\n")
    assert codehash.script_hash(script, src) != before


@pytest.mark.slow  # a fresh interpreter importing torch per script
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_walk_finds_every_module_a_script_really_loads(script):
    """Importing what a script imports at its top (in a fresh interpreter) loads no trajbench module that the static
    walk missed."""
    tree = ast.parse(script.read_text())
    targets = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trajbench"):
            targets += [f"{node.module}.{a.name}" if node.module == "trajbench" else node.module for a in node.names]
        elif isinstance(node, ast.Import):
            targets += [a.name for a in node.names if a.name.startswith("trajbench")]
    program = (f"import importlib, json, sys\nfor name in {targets!r}:\n    importlib.import_module(name)\n"
               "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'trajbench')))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                                       cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src")}).stdout)
    assert loaded and set(loaded) <= set(codehash.modules(script, ROOT / "src")), script.name
