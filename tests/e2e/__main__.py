"""``make e2e``: the shortener's browser test, if a Chromium is here; else one line on what
to install (exit 1: nothing was tested)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.e2e.browser import find_chromium


def main() -> int:
    try:
        import playwright  # noqa: F401 - only to say what is missing
    except ImportError:
        print("e2e: Playwright is missing: .venv/bin/pip install -e '.[e2e]' (make e2e does)")
        return 1
    chromium = find_chromium()
    if chromium is None:
        print(
            "e2e: no Chromium found: install one with `apt-get install chromium`"
            " (or `.venv/bin/playwright install chromium`), then run make e2e again"
        )
        return 1
    print(f"e2e: Chromium at {chromium}", flush=True)
    env = os.environ | {"KVSTORE_E2E": "1", "KVSTORE_CHROMIUM": chromium}
    pytest = shutil.which("pytest", path=os.path.dirname(sys.executable)) or "pytest"
    return subprocess.call([pytest, "-p", "no:xdist", "-q", "tests/e2e"], env=env)


if __name__ == "__main__":
    sys.exit(main())
