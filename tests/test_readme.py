"""The README's library example runs as written."""

from __future__ import annotations

import re
from pathlib import Path


def test_readme_library_example_runs(capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "model.fit" in b]
    assert len(blocks) == 1
    code = blocks[0].replace("epochs=3", "epochs=1")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert "nan" not in capsys.readouterr().out.lower()
