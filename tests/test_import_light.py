"""``import rhvae`` and its registry and CLI stay free of torch and jax (2 s and 0.8 s to import)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_rhvae_imports_neither_torch_nor_jax():
    code = (
        "import rhvae, rhvae.registry, rhvae.cli, sys; "
        "heavy = sorted(m for m in ('torch', 'jax') if m in sys.modules); "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
