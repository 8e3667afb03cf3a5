"""The event loop long-running kvstore processes use: uvloop where it is installed.

uvloop (libuv) runs the same asyncio code with a fraction of the per-callback overhead, and
a node's CPU goes largely to callbacks (gRPC streams, futures, the tick loop). Where it is
missing (it does not build on Windows) the standard loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop  # noqa: PLC0415 - optional, platform-dependent
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
