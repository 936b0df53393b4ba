"""Shared fixtures: every test keeps user state in a temporary INFER_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def infer_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "infer-home"
    home.mkdir()
    monkeypatch.setenv("INFER_HOME", str(home))
    for name in ("INFER_PROFILE", "INFER_HOST", "INFER_PORT", "INFER_VERBOSE"):
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("INFER_") and "__" in name:
            monkeypatch.delenv(name)
    yield home
