"""The layout's promises, checked on the source: the core imports no backend, the modules around
``RHVAE`` import it only for type hints (no import circle), and no module reaches into another
object's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "rhvae"
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def _modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Modules imported outside ``if TYPE_CHECKING:`` blocks (function bodies included)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for b in node.body for n in ast.walk(b))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_the_core_imports_the_model_only_for_type_hints_and_no_backend(path):
    imports = _runtime_imports(ast.parse(path.read_text()))
    assert not {m for m in imports if m.split(".")[0] in ("torch", "jax", "rhvae_torch", "rhvae_jax")}
    if path.name not in ("model.py", "__init__.py"):
        assert "rhvae.model" not in imports, f"{path.name} imports rhvae.model at run time: an import circle"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_no_module_uses_another_objects_private_names(path):
    """``obj._name`` only on ``self``/``cls`` (and the NamedTuple API ``_replace``, ``_asdict``, ...)."""
    offending = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and node.attr not in NAMEDTUPLE_API
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            offending.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not offending, offending
