"""A server's supply of ids: ranges taken from a counter in the store, one ahead.

Rules:
- ``IdBlocks`` holds the range it mints from and takes the next one (``take(size)``, the
  store's ``Counters.Take``) in the background once fewer than ``ahead_at`` of the current
  range are left, so minting never waits for the store but at start-up or if the store is
  slower than the rest of a range lasts.
- Ranges never overlap (the counter's promise); a server that crashes loses the rest of its
  current range and the one it took ahead, never more, and never reuses either.
- ``on_range(start, end)`` is told each range taken (the server logs it).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

Take = Callable[[int], Awaitable[tuple[int, int]]]
RECENT = 16  # ranges kept for /healthz (the server logs each one)


class IdBlocks:
    def __init__(
        self,
        take: Take,
        size: int,
        *,
        ahead_at: float = 0.1,
        on_range: Callable[[int, int], None] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a range has at least one id, not {size}")
        self._take = take
        self.size = size
        self._ahead_at = max(1, int(size * ahead_at))
        self._on_range = on_range
        self._next = 0
        self._end = 0
        self._ahead: asyncio.Task[tuple[int, int]] | None = None
        self._switch = asyncio.Lock()
        self.ranges: collections.deque[tuple[int, int]] = collections.deque(maxlen=RECENT)
        self.ranges_taken = 0

    @property
    def left(self) -> int:
        return self._end - self._next

    async def prime(self) -> None:
        """Take the first range now (a server is ready once it has one)."""
        if self._next >= self._end:
            async with self._switch:
                if self._next >= self._end:
                    self._next, self._end = await self._upcoming()

    async def next_id(self) -> int:
        if self._next >= self._end:
            await self.prime()  # one caller takes the next range; the others wait for it
        minted = self._next
        self._next += 1
        ahead = self._ahead
        if ahead is not None and ahead.done() and not ahead.cancelled() and ahead.exception():
            self._ahead = None  # that take failed: try again
        if self.left < self._ahead_at and self._ahead is None:
            self._ahead = asyncio.ensure_future(self._taken())
        return minted

    async def close(self) -> None:
        if self._ahead is not None:
            self._ahead.cancel()
            await asyncio.gather(self._ahead, return_exceptions=True)

    async def _upcoming(self) -> tuple[int, int]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            try:
                return await ahead
            except Exception:
                pass
        return await self._taken()

    async def _taken(self) -> tuple[int, int]:
        start, end = await self._take(self.size)
        self.ranges.append((start, end))
        self.ranges_taken += 1
        if self._on_range is not None:
            self._on_range(start, end)
        return start, end
