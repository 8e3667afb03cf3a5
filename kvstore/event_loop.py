"""The event loop long-running kvstore processes use: uvloop where it is installed.

uvloop (libuv) runs the same asyncio code with a fraction of the per-callback overhead, and
a node's CPU goes largely to callbacks (gRPC streams, futures, the tick loop). Where it is
missing (it does not build on Windows) the standard loop runs the same code.
"""

from __future__ import annotations

import asyncio
import atexit
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


_cli_runner: asyncio.Runner | None = None


def run_in_cli_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on the one loop this (short-lived, command-line) process keeps.

    grpc.aio's completion-queue poller serves every loop a process ever ran; an RPC that
    finishes after its ``asyncio.run`` loop closed makes the poller call into the closed
    loop, which prints an "Event loop is closed" traceback (seen after ``kvstore bench``).
    One loop for the whole process, closed at exit, cannot be closed under it."""
    global _cli_runner  # noqa: PLW0603 - one per process, by design
    if _cli_runner is None:
        _cli_runner = asyncio.Runner()
        atexit.register(_cli_runner.close)
    return _cli_runner.run(main)
