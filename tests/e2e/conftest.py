"""Fixtures of the end-to-end tests: ``chromium`` (Chromium and Playwright are there, else skip; fail under CI)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.browser import (
    CHROMIUM,
    _missing,
)


@pytest.fixture
def chromium() -> str:
    """Chromium and Playwright are there (checked before the server starts); else skip, or fail under CI."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Python playwright is not installed (pip install -r requirements-dev.txt)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DCNVIZ_CHROMIUM)")
    return CHROMIUM
