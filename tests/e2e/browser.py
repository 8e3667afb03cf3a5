"""Where a Chromium for Playwright is: the system's, or one Playwright downloaded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def find_chromium() -> str | None:
    named = os.environ.get("KVSTORE_CHROMIUM")
    if named and Path(named).exists():
        return named
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    cache = Path.home() / ".cache" / "ms-playwright"
    for candidate in sorted(cache.glob("chromium-*/chrome-linux*/chrome")):
        return str(candidate)
    return None
