"""The WAN emulation's timer: never early, in order, one failing callback strands nothing."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable

import pytest

from kvstore import precise_timer
from kvstore.precise_timer import PreciseTimer


def _timers() -> list[Callable[[asyncio.AbstractEventLoop], PreciseTimer]]:
    def fallback(loop: asyncio.AbstractEventLoop) -> PreciseTimer:
        saved = precise_timer._TIMERFD
        precise_timer._TIMERFD = None  # as on an OS without timerfd
        try:
            return PreciseTimer(loop)
        finally:
            precise_timer._TIMERFD = saved

    return [precise_timer.for_loop, fallback]


@pytest.mark.parametrize("make", _timers(), ids=["timerfd", "fallback"])
def test_callbacks_run_in_order_and_never_before_their_instant(
    make: Callable[[asyncio.AbstractEventLoop], PreciseTimer],
) -> None:
    async def run() -> None:
        timer = make(asyncio.get_running_loop())
        rng = random.Random(5)
        ran: list[tuple[float, float]] = []  # (due, when it ran)
        done = asyncio.Event()
        start = time.monotonic()
        dues = sorted(start + rng.uniform(0, 0.03) for _ in range(40))
        for due in rng.sample(dues, len(dues)):  # scheduled out of order
            timer.call_at(due, lambda due=due: ran.append((due, time.monotonic())))
        timer.call_at(dues[-1], done.set)
        await asyncio.wait_for(done.wait(), 5)
        await timer.sleep_until(time.monotonic() + 0.002)
        assert [due for due, _ in ran] == dues
        assert all(at >= due for due, at in ran), "a callback ran before its instant"

    asyncio.run(run())


def test_the_timer_is_a_timerfd_on_linux() -> None:
    async def run() -> None:
        assert precise_timer.for_loop().precise

    if sys.platform != "linux":
        pytest.skip("timerfd is Linux's")
    asyncio.run(run())


def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        reported: list[BaseException] = []
        loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))
        timer = precise_timer.for_loop()
        ran: list[int] = []
        now = time.monotonic()

        def fail() -> None:
            raise ValueError("boom")

        timer.call_at(now + 0.001, fail)
        timer.call_at(now + 0.001, ran.append, 1)
        timer.call_at(now + 0.004, ran.append, 2)
        await timer.sleep_until(now + 0.006)
        assert ran == [1, 2]
        assert [type(e) for e in reported] == [ValueError]

    asyncio.run(run())
