"""``docs/plugins.md``: its python blocks run, and it documents every hookspec and built-in (datasette)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import rhvae
from rhvae import hookspecs
from rhvae.registry import KINDS, OWN_DISTRIBUTION

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
NO_RUN = "# doc: no-run"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced ```` ```python ```` block of ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)]


BLOCKS = python_blocks(GUIDE.read_text(encoding="utf-8"))
RUNNABLE = [pytest.param(line, code, id=f"line{line}") for line, code in BLOCKS if not code.startswith(NO_RUN)]


def test_the_guide_has_runnable_and_illustrative_blocks():
    assert len(RUNNABLE) >= 3 and len(RUNNABLE) < len(BLOCKS)


@pytest.mark.parametrize("line, code", RUNNABLE)
def test_python_block_runs(line, code):
    pytest.importorskip("rhvae_student_t", reason="the guide's example: pip install ./plugins/examples/rhvae-student-t")
    exec(compile("\n" * line + code, str(GUIDE), "exec"), {"__name__": "docs_plugins"})  # tracebacks cite the guide


def test_every_hookspec_is_documented():
    text = GUIDE.read_text(encoding="utf-8")
    specs = [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(f, f"{hookspecs.NAME}_spec")]
    assert specs == ["rhvae_register"]
    for name in specs:
        assert f"`{name}(registry)`" in text, f"hookspec {name} is not documented in {GUIDE.name}"


def test_every_builtin_component_is_documented():
    text = GUIDE.read_text(encoding="utf-8")
    builtins = [spec for spec in rhvae.get_registry().specs() if spec.distribution == OWN_DISTRIBUTION]
    assert {spec.kind for spec in builtins} == set(KINDS)
    missing = [f"{spec.kind}:{spec.name}" for spec in builtins if f"`{spec.kind}:{spec.name}`" not in text]
    assert not missing, f"built-in components missing from {GUIDE.name}: {', '.join(missing)}"


def test_every_kind_and_environment_variable_is_documented():
    text = GUIDE.read_text(encoding="utf-8")
    for word in [*(f"| `{kind}` |" for kind in KINDS), "RHVAE_DISABLE_PLUGIN_AUTOLOAD", "RHVAE_BLOCK_PLUGINS",
                 "rhvae plugins", "check_component"]:
        assert word in text, f"{word!r} is not in {GUIDE.name}"
