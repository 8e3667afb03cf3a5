"""The peer link's outgoing queue: ordering, emulated delay, and one live stream at a time."""

from __future__ import annotations

import asyncio
import random

from kvstore.net.peer_transport import LinkDelay, PeerLink
from paxos import Ballot, NodeId, TimeoutNow


def _msg(n: int) -> TimeoutNow:
    return TimeoutNow(src=NodeId(1), dst=NodeId(2), ballot=Ballot(n, NodeId(1)))


def test_a_new_stream_takes_over_from_a_stale_one() -> None:
    """grpc keeps pulling a finished call's request iterator when the call ended with OK
    (a proxy closed it): that stale reader must not swallow the new stream's messages."""

    async def run() -> None:
        link = PeerLink(2, LinkDelay(), random.Random(1))
        stale = link.batches("c", 1)
        assert not (await anext(stale)).messages  # hello
        waiting = asyncio.ensure_future(anext(stale))  # blocked: nothing queued
        await asyncio.sleep(0)
        fresh = link.batches("c", 1)
        assert not (await anext(fresh)).messages  # hello of the new stream
        link.offer(7, _msg(1))
        batch = await asyncio.wait_for(anext(fresh), 1)
        assert len(batch.messages) == 1 and batch.messages[0].shard_id == 7
        try:
            await asyncio.wait_for(waiting, 1)
            raise AssertionError("the stale stream got a batch")
        except StopAsyncIteration:
            pass

    asyncio.run(run())


def test_emulated_delay_holds_messages_back_in_order() -> None:
    async def run() -> None:
        link = PeerLink(2, LinkDelay(one_way_s=0.05, jitter_s=0.02), random.Random(3))
        stream = link.batches("c", 1)
        await anext(stream)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        for n in range(1, 21):
            link.offer(1, _msg(n))
            await asyncio.sleep(0.002)
        rounds: list[int] = []
        first_at = None
        while len(rounds) < 20:
            batch = await asyncio.wait_for(anext(stream), 1)
            first_at = first_at or loop.time()
            rounds += [m.timeout_now.ballot.round for m in batch.messages]
        assert rounds == list(range(1, 21))  # never reordered, whatever the jitter
        assert first_at - sent >= 0.03 - 0.002  # held for the delay minus jitter

    asyncio.run(run())


def test_probes_measure_a_round_trip() -> None:
    async def run() -> None:
        link = PeerLink(2, LinkDelay(), random.Random(1))
        link.probe()
        stream = link.batches("c", 1)
        await anext(stream)
        ping = (await anext(stream)).ping
        assert ping and not link.stats().rtt_ms
        await asyncio.sleep(0.01)
        link.answered(ping)
        assert link.stats().rtt_ms >= 10 and link.stats().rtt_avg_ms == link.stats().rtt_ms
        link.answered(ping)  # an unknown or repeated pong changes nothing

    asyncio.run(run())
