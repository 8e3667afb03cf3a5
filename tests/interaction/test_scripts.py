"""Golden interaction scripts over real replicas (``testdata/*.txt``; see tests/datadriven.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datadriven import run_file
from tests.interaction.env import Env

SCRIPTS = sorted((Path(__file__).parent / "testdata").glob("*.txt"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script(path: Path) -> None:
    run_file(path, Env().handle)
