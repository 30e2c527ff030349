"""The layers of docs/architecture.md: no import runs back up them.

A module may import modules of its own package and of the layers below it,
never above: a layer that needs something from above defines a Protocol that
the layer above implements. Imports under ``if TYPE_CHECKING:`` count too: a
type on the wrong side of a seam is as much a dependency as a call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dicomweb_gw"

#: Each top-level module or package of dicomweb_gw/ and its rank: it may import only
#: what ranks lower (or itself). Written once, here and in docs/architecture.md.
LAYERS: dict[str, int] = {
    "__init__": 0, "model": 0, "errors": 0, "settings": 0, "redaction": 0,
    "codecs": 1, "audit_log": 1, "logs": 1,
    "cache": 2,
    "metrics": 3,
    "pacs": 4,
    "dicomweb": 5,
    "http": 6, "cluster": 6,
    "app": 7, "demo": 7,
    "admin": 8,
    "cli": 9,
    "__main__": 10,
}


def _layer_of(module: str) -> str:
    """'dicomweb_gw.pacs.dimse' -> 'pacs'; 'dicomweb_gw' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _own_module(path: Path, package: Path = PACKAGE) -> str:
    relative = path.relative_to(package.parent).with_suffix("")
    return ".".join(part for part in relative.parts if part != "__init__") or "dicomweb_gw"


def _imports(path: Path, package_root: Path) -> list[tuple[int, str]]:
    """(line, module) for every dicomweb_gw import in ``path``, relative ones resolved."""
    own = _own_module(path, package_root).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *(node.module or "").split(".")]).rstrip(".")
            else:
                module = node.module or ""
            if node.module is None or module == "dicomweb_gw":
                # "from dicomweb_gw import x": x may be a subpackage.
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return sorted((line, module) for line, module in found
                  if module.split(".")[0] == "dicomweb_gw")


def _violations(package: Path) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        here = _layer_of(_own_module(path, package))
        for line, module in _imports(path, package):
            there = _layer_of(module)
            if there == here or there not in LAYERS:
                continue
            if LAYERS[there] >= LAYERS[here]:
                problems.append(f"{path.relative_to(package.parent)}:{line}: {here} "
                                f"(rank {LAYERS[here]}) imports {module} (rank {LAYERS[there]})")
    return problems


def test_every_top_level_module_has_a_layer() -> None:
    names = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
             if (path.suffix == ".py" or (path / "__init__.py").exists())}
    assert names - set(LAYERS) == set(), "add the new module to LAYERS and docs/architecture.md"


def test_no_import_runs_back_up_the_layers() -> None:
    assert _violations(PACKAGE) == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "dicomweb_gw"
    (package / "pacs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "pacs" / "__init__.py").write_text("")
    (package / "pacs" / "storescp.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from dicomweb_gw.cluster.moves import MoveRouting\n"
        "from ..http import errors\n"
        "from dicomweb_gw.model import RetrieveKeys\n")
    problems = _violations(package)
    assert len(problems) == 2
    assert "pacs/storescp.py:3: pacs (rank 4) imports dicomweb_gw.cluster.moves" in problems[0]
    assert "imports dicomweb_gw.http" in problems[1]


@pytest.mark.parametrize(("library", "allowed"), [
    ("starlette", {"http", "app"}),
    ("pynetdicom", {"pacs", "demo"}),
    ("redis", {"cluster"}),
])
def test_frameworks_stay_in_their_layer(library: str, allowed: set[str]) -> None:
    users = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            if any(name.split(".")[0] == library for name in names):
                users.add(_layer_of(_own_module(path)))
    assert users <= allowed
