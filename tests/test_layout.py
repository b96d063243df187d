"""The package's shape: its layering holds, and no module grows into the place everything goes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, need

MAX_LINES = 500


def test_the_layering_contracts_hold() -> None:
    # The contracts live in pyproject.toml ([tool.importlinter]); the tool beside this Python.
    beside = Path(sys.executable).parent / "lint-imports"
    tool = (
        str(beside)
        if beside.exists()
        else need("lint-imports", "run `make venv` (import-linter is a dev dependency)")
    )
    result = subprocess.run([tool], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_module_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in (ROOT / "generator").rglob("*.py")
    }
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}
