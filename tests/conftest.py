"""Hypothesis profiles: ``ci`` (default; derandomized, so CI is reproducible), ``dev``, ``nightly``.

Pick one with ``HYPOTHESIS_PROFILE=nightly make test``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "nightly", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The browser test needs Playwright and a Chromium; ``make e2e`` installs the one, looks for
# the other, and sets KVSTORE_E2E. ``make test`` leaves it out.
collect_ignore = [] if os.environ.get("KVSTORE_E2E") else ["e2e"]
