"""``PreciseTimer``: callbacks at a ``time.monotonic()`` instant, to within tens of µs.

Why: asyncio waits in ``epoll_wait``, whose timeout is whole milliseconds rounded *up*, so
``loop.call_later(0.030, ...)`` on an otherwise idle loop runs 0 to 1 ms late (0.3 to 0.5 ms at
the median in traces of the emulated WAN, paid by every held message, twice per write).
The emulated links must deliver at their configured delay, as a real link does, not at the
next millisecond tick. A Linux ``timerfd`` armed just before the absolute instant wakes
the loop's epoll, which spins the rest (``WAKE_EARLY_S``); where there is no timerfd
(another OS), it falls back to ``loop.call_at``.

One timer per event loop (``for_loop``); it is used only for the WAN emulation's holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import heapq
import itertools
import os
import time
import weakref
from collections.abc import Callable
from typing import Any

_CLOCK_MONOTONIC = 1  # the clock of time.monotonic() on Linux
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1
# Waking from a timer takes this VM 0.18-0.3 ms (measured: a timerfd due at T is seen at
# T+0.24 ms at the median). The timer is armed this much early and the rest is spun, so a
# held message leaves at its instant; the spin costs ~0.1 ms of CPU per expiry.
WAKE_EARLY_S = 0.0003


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc_timerfd() -> tuple[Callable[..., int], Callable[..., int]] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settime.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(_Itimerspec),
        ctypes.POINTER(_Itimerspec),
    ]
    settime.restype = ctypes.c_int
    return create, settime


_TIMERFD = _libc_timerfd()
_TIMERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PreciseTimer] = (
    weakref.WeakKeyDictionary()
)


class PreciseTimer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # A weak reference: the loop's reader holds this timer, and ``_TIMERS`` must not
        # keep a closed loop (one per test) alive through it.
        self._loop = weakref.ref(loop)
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()  # the timerfd is always armed for the heap's top
        self._fd = -1
        if _TIMERFD is not None:
            fd = _TIMERFD[0](_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                loop.add_reader(fd, self._expired)
                weakref.finalize(self, os.close, fd)

    @property
    def precise(self) -> bool:
        """Whether a timerfd backs this timer (else it is as coarse as ``loop.call_at``)."""
        return self._fd >= 0

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop at monotonic time ``when`` (not before)."""
        if self._fd < 0:
            loop = self._loop()
            if loop is not None:
                loop.call_at(loop.time() + (when - time.monotonic()), callback, *args)
            return
        entry = (when, next(self._order), callback, args)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._arm(when)

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        self.call_at(time.monotonic() + delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        await self.sleep_until(time.monotonic() + delay)

    async def sleep_until(self, when: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call_at(when, _wake, future)
        await future

    def _arm(self, due: float) -> None:
        assert _TIMERFD is not None
        when = max(0.0, due - WAKE_EARLY_S)
        seconds = int(when)
        spec = _Itimerspec(
            _Timespec(0, 0),
            # an all-zero it_value disarms: never ask for the instant 0
            _Timespec(seconds, max(1, int((when - seconds) * 1e9))),
        )
        if _TIMERFD[1](self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")

    def _expired(self) -> None:
        with contextlib.suppress(BlockingIOError):  # re-armed since it fired: nothing to read
            os.read(self._fd, 8)
        heap = self._heap
        while heap and heap[0][0] <= time.monotonic() + WAKE_EARLY_S:
            while time.monotonic() < heap[0][0]:
                os.sched_yield()  # the last fraction of a millisecond: see WAKE_EARLY_S
            _, _, callback, args = heapq.heappop(heap)
            try:
                callback(*args)
            except Exception as exc:  # one failing callback must not strand the others
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler(
                        {"message": "PreciseTimer callback failed", "exception": exc}
                    )
        if heap:
            self._arm(heap[0][0])


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def for_loop(loop: asyncio.AbstractEventLoop | None = None) -> PreciseTimer:
    """The running loop's timer (one timerfd per loop, made on first use)."""
    loop = loop or asyncio.get_running_loop()
    timer = _TIMERS.get(loop)
    if timer is None:
        timer = _TIMERS[loop] = PreciseTimer(loop)
    return timer
