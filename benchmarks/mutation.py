"""Mutation testing of the core library with mutmut (3.x): which code changes do the fast tests not notice?

Copies the project into a work folder (mutmut writes ``mutants/`` next to the sources), mutates the chosen modules of
src/trajbench, runs each module's fast tests (``-m "not slow"``) against every mutant, one mutant at a time, and
prints the score and the surviving mutants with their diffs. Not part of CI: a full run takes hours on two cores.

    python benchmarks/mutation.py                      # every module below
    python benchmarks/mutation.py metrics io           # only these
    python benchmarks/mutation.py metrics --workdir /tmp/mut   # keep the work folder (rerun: reuses results)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Module -> the test files that exercise it (the fast ones; slow tests are deselected by marker anyway).
TESTS = {
    "io": ["tests/test_io.py", "tests/test_features.py"],
    # Not test_hub_download.py: its local hub server takes ~90 s a run, so the download paths' mutants would take
    # hours; those mutants show as "no tests" or survivors.
    "weights": ["tests/test_weights.py", "tests/test_standins.py"],
    "metrics": ["tests/test_metrics.py", "tests/test_compare.py", "tests/test_probe.py"],
    "probe": ["tests/test_probe.py", "tests/test_compare.py"],
    "compare": ["tests/test_compare.py", "tests/test_psnr_per_frame.py"],
    # Not test_features.py: with it, render's 1352 mutants take well over half an hour on two shared cores.
    "render": ["tests/test_render.py"],
    "checkpoint_magvit": ["tests/test_magvit_loader.py", "tests/test_magvit.py", "tests/test_standins.py"],
}
# What the tests read besides src/ and tests/ (mutmut copies those two itself).
ALSO_COPY = ["workflow", "config", "envs", "profiles", "Snakefile"]


# `mutmut results` and `mutmut show <name>` for every survivor (survived or no tests), in one process: a `show` call
# per survivor costs seconds each. Uses mutmut 3.x's own functions for both commands.
_SHOW_SURVIVORS = """
from mutmut.__main__ import SourceFileMutationData, get_diff_for_mutant, status_by_exit_code, walk_mutatable_files
survivors = []
for path in walk_mutatable_files():
    data = SourceFileMutationData(path=path)
    data.load()
    survivors += [(path, name, status_by_exit_code[code]) for name, code in data.exit_code_by_key.items()
                  if status_by_exit_code[code] in ("survived", "no tests")]
print(f"{len(survivors)} surviving mutant(s):")
for path, name, status in survivors:
    print(f"# {name}: {status}")
    print(get_diff_for_mutant(name, path=path))
"""


def _setup_cfg(modules: list[str]) -> str:
    tests = sorted({t for m in modules for t in TESTS[m]})
    lines = ["[mutmut]", "source_paths=src/trajbench",
             "only_mutate=" + "\n    ".join(f"src/trajbench/{m}.py" for m in modules),
             "also_copy=" + "\n    ".join(ALSO_COPY),
             "pytest_add_cli_args_test_selection=" + "\n    ".join(tests),
             "pytest_add_cli_args=\n    -m\n    not slow\n    -p\n    no:cacheprovider"]
    return "\n".join(lines) + "\n"


def _prepare(workdir: Path, modules: list[str]) -> None:
    for name in ("src", "tests", *ALSO_COPY):
        source, target = ROOT / name, workdir / name
        if target.exists():
            continue
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    # The project's pyproject.toml has no [tool.mutmut], so mutmut falls back to setup.cfg, written per run.
    shutil.copy2(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    (workdir / "setup.cfg").write_text(_setup_cfg(modules))


def _mutmut(workdir: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    # No PYTHONPATH to mutants/src: set before that folder exists, Python caches it as empty and the tests would
    # import the installed trajbench; mutmut puts mutants/src first on sys.path itself. Tests that start a fresh
    # interpreter therefore see the unmutated package and kill nothing.
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=workdir, env=env, text=True,
                          capture_output=capture, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(TESTS), choices=list(TESTS),
                        metavar="MODULE", help=f"modules of src/trajbench to mutate (default: all of {list(TESTS)})")
    parser.add_argument("--workdir", type=Path, help="work folder to use and keep (default: a temporary one)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (default 1)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="trajbench-mutation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    _prepare(workdir, args.modules)
    print(f"mutating {args.modules} in {workdir}", flush=True)

    run = _mutmut(workdir, "run", "--max-children", str(args.max_children))
    if run.returncode != 0:
        print(f"mutmut run failed (exit {run.returncode}); work folder kept: {workdir}", file=sys.stderr)
        return run.returncode
    _mutmut(workdir, "export-cicd-stats", capture=True)
    stats = json.loads((workdir / "mutants" / "mutmut-cicd-stats.json").read_text())
    # Mutants no test reaches count as survivors: nothing would notice them either.
    tested = stats["total"] - stats["skipped"]
    score = stats["killed"] + stats["timeout"] + stats["segfault"]
    print(f"\nscore: {score}/{tested} killed ({100 * score / max(tested, 1):.1f}%); stats: {json.dumps(stats)}")
    sys.stdout.flush()
    subprocess.run([sys.executable, "-c", _SHOW_SURVIVORS], cwd=workdir, check=True)
    if args.workdir is None:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
