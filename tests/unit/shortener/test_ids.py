"""A server's ids: consecutive within a range, the next range taken ahead once 10 % is left
(so minting does not wait for it), every id minted once even with many concurrent callers,
and a failed take ahead retried."""

from __future__ import annotations

import asyncio

from examples.shortener.ids import IdBlocks


class FakeCounter:
    def __init__(self) -> None:
        self.value = 0
        self.takes = 0
        self.fail_next = False
        self.gate: asyncio.Event | None = None

    async def take(self, n: int) -> tuple[int, int]:
        self.takes += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("store down")
        start = self.value
        self.value += n
        return start, start + n


def test_ids_are_consecutive_and_the_next_range_is_taken_ahead() -> None:
    async def main() -> None:
        counter = FakeCounter()
        counter.value = 500
        ids = IdBlocks(counter.take, 100)
        await ids.prime()
        got = [await ids.next_id() for _ in range(90)]
        assert got == list(range(500, 590)) and counter.takes == 1
        await ids.next_id()  # 9 left: below 10 %, the next range is taken ahead
        await asyncio.sleep(0)
        assert counter.takes == 2
        rest = [await ids.next_id() for _ in range(20)]
        assert rest == list(range(591, 611))
        assert list(ids.ranges) == [(500, 600), (600, 700)] and ids.ranges_taken == 2
        await ids.close()

    asyncio.run(main())


def test_concurrent_callers_each_get_a_distinct_id_across_range_switches() -> None:
    async def main() -> None:
        counter = FakeCounter()
        ids = IdBlocks(counter.take, 7)
        counter.gate = asyncio.Event()
        waiting = [asyncio.ensure_future(ids.next_id()) for _ in range(50)]
        await asyncio.sleep(0)
        counter.gate.set()
        got = await asyncio.gather(*waiting)
        assert sorted(got) == list(range(len(got))) and len(set(got)) == 50
        assert all(end - start == 7 for start, end in ids.ranges)
        await ids.close()

    asyncio.run(main())


def test_a_failed_take_ahead_is_retried() -> None:
    async def main() -> None:
        counter = FakeCounter()
        ids = IdBlocks(counter.take, 10)
        await ids.prime()
        counter.fail_next = True
        got = [await ids.next_id() for _ in range(25)]
        assert got == list(range(25))  # the failed take cost nothing
        await ids.close()

    asyncio.run(main())
