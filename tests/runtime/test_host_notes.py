"""A ``Host`` note crosses the peer link whole: the shard, the descriptor it began with,
the disk the shard's configuration listed for the receiver, and the shard's descriptor now."""

from __future__ import annotations

import asyncio

import grpc

from cluster import RangeDescriptor
from kvstore.model.ranges import encode_descriptor
from kvstore.net.peer_transport import PeerTransport
from kvstore.v1 import peer_pb2_grpc
from tests import ports

BORN_AS = RangeDescriptor(7, b"k", b"", (1, 2, 3), generation=2)
NOW = RangeDescriptor(7, b"k", b"m", (1, 2, 3), generation=3)


async def _notes_heard(sent: list[tuple[int, bytes, int, bytes]]) -> list[tuple[object, ...]]:
    base = ports.free_base_port(lambda b: [f"127.0.0.1:{b + 1}", f"127.0.0.1:{b + 2}"])
    addresses = {1: f"127.0.0.1:{base + 1}", 2: f"127.0.0.1:{base + 2}"}
    heard: list[tuple[object, ...]] = []
    two = PeerTransport(
        "c", 2, addresses, lambda *_: None, host_heard=lambda *note: heard.append(note)
    )
    server = grpc.aio.server()
    peer_pb2_grpc.add_PeerServicer_to_server(two, server)
    server.add_insecure_port(addresses[2])
    await server.start()
    one = PeerTransport("c", 1, addresses, lambda *_: None)
    one.start()
    try:
        for shard, descriptor, incarnation, current in sent:
            one.send_host(2, shard, descriptor, incarnation, current)
        for _ in range(200):  # a note arrives within a few ms
            if len(heard) == len(sent):
                break
            await asyncio.sleep(0.01)
    finally:
        await one.stop()
        await server.stop(None)
    return heard


def test_a_question_and_answers_arrive_as_sent() -> None:
    born, now = encode_descriptor(BORN_AS), encode_descriptor(NOW)
    sent = [(7, b"", 0, b""), (7, born, 41, b""), (7, born, 41, now)]
    heard = asyncio.run(_notes_heard(sent))
    assert heard == [(1, *note) for note in sent]
