"""Which library code a workflow script runs: a static walk of its ``trajbench`` imports.

Snakemake reruns a job when its script file changes, not when the library it imports does. Each rule therefore
passes `script_hash` of its script as a param: the hash of every ``trajbench`` module the script imports, directly
or through other modules, found by reading the source (``ast``), never by importing it, so the Snakefile parses
without torch. Imports inside functions count too: a module imported lazily still runs.
"""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

PACKAGE = "trajbench"


def _module_file(src: Path, module: str) -> Path | None:
    """The file of dotted ``module`` under ``src`` (a module or a package's __init__), or None if not ours."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path, module: str | None) -> set[str]:
    """Dotted names of the trajbench modules that the file at ``path`` (module ``module``) imports."""
    found: set[str] = set()
    package = module.rpartition(".")[0] if module else ""
    if path.name == "__init__.py" and module:
        package = module
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package, level - 1 packages up
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from trajbench import io` imports the module trajbench.io
            found.update(f"{target}.{alias.name}" for alias in node.names)
    # every package above a module runs its __init__ first
    closed = set()
    for name in found:
        parts = name.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {name for name in closed if name == PACKAGE or name.startswith(PACKAGE + ".")}


def modules(script: str | os.PathLike, src: str | os.PathLike) -> dict[str, Path]:
    """{dotted name: file} of every trajbench module that ``script`` imports, transitively (under ``src``)."""
    src = Path(src)
    seen: dict[str, Path] = {}
    todo = sorted(_imported(Path(script), None))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(src, name)
        if path is None:  # a name imported from a module (a function, a class), not a module itself
            continue
        seen[name] = path
        todo.extend(sorted(_imported(path, name) - set(seen)))
    return dict(sorted(seen.items()))


def script_hash(script: str | os.PathLike, src: str | os.PathLike) -> str:
    """16 hex digits of sha256 over the names and bytes of the modules `modules` finds."""
    digest = hashlib.sha256()
    for name, path in modules(script, src).items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
