"""Every package the platform's code imports is a dependency it declares itself (pyproject.toml),
not one that merely arrives with another package. Imports are read from the source (the AST,
function-level imports included) and each module is traced to the distribution that installed it."""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {
        canonical(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        for requirement in project["dependencies"]
    }


def imported_modules(root: Path) -> dict[str, str]:
    """Dotted module -> the first file importing it, third-party only."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from google.cloud import bigquery`: the module may be the imported name itself.
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("taxi_platform", "__future__"):
                    continue
                found.setdefault(name, str(path.relative_to(REPO)))
    return found


def distribution_of(module: str, files: dict[Path, str]) -> str | None:
    """The distribution that installed `module`, or its closest parent that is a module file."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin is not None and spec.origin != "namespace":
            return files.get(Path(spec.origin).resolve())
    return None


def test_every_imported_package_is_declared() -> None:
    files = {  # locate_file is typed as SimplePath (not PathLike): hence str()
        Path(str(dist.locate_file(f))).resolve(): canonical(dist.metadata["Name"])
        for dist in md.distributions()
        for f in dist.files or []
        if str(f).endswith((".py", ".so", ".pyd"))
    }
    modules = imported_modules(REPO / "taxi_platform")
    assert {"duckdb.connect", "google.cloud.bigquery", "requests.Session"} & set(
        modules
    )  # the scan sees imports
    wanted = declared()
    missing = {}
    for module, where in modules.items():
        owner = distribution_of(module, files)
        assert owner is not None, f"{module} (imported in {where}) is not installed from a distribution"
        if owner not in wanted:
            missing[module] = f"{owner} (imported in {where})"
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"
