"""Peers tell clusters apart: a node of another cluster (another ``[cluster] id``) is refused on
the peer stream, and a peer whose data directory was replaced (a new incarnation) is noticed."""

from __future__ import annotations

import asyncio

import grpc
from structlog.testing import capture_logs

from kvstore.net.peer_transport import PeerTransport
from kvstore.v1 import peer_pb2_grpc
from paxos import Ballot, Message, NodeId, TimeoutNow
from tests import ports

MESSAGE = TimeoutNow(src=NodeId(1), dst=NodeId(2), ballot=Ballot(1, NodeId(1)))


async def _exchange(dialer: str, answerer: str, incarnations: tuple[int, ...]) -> list[Message]:
    """Node 1 (of cluster ``dialer``, restarted once per incarnation) sends a message to node 2
    (of cluster ``answerer``); what node 2 delivered."""
    base = ports.free_base_port(lambda b: [f"127.0.0.1:{b + 1}", f"127.0.0.1:{b + 2}"])
    addresses = {1: f"127.0.0.1:{base + 1}", 2: f"127.0.0.1:{base + 2}"}
    delivered: list[Message] = []
    two = PeerTransport(answerer, 2, addresses, lambda _, msg: delivered.append(msg))
    server = grpc.aio.server()
    peer_pb2_grpc.add_PeerServicer_to_server(two, server)
    server.add_insecure_port(addresses[2])
    await server.start()
    try:
        for incarnation in incarnations:
            one = PeerTransport(dialer, 1, addresses, lambda *_: None, incarnation=incarnation)
            one.start()
            before = len(delivered)
            one.send(2, [(1, MESSAGE)])
            for _ in range(100):  # a same-cluster message arrives within a few ms
                if len(delivered) > before:
                    break
                await asyncio.sleep(0.01)
            await one.stop()
    finally:
        await server.stop(None)
    return delivered


def test_a_node_of_another_cluster_is_refused() -> None:
    with capture_logs() as logs:
        delivered = asyncio.run(_exchange("cluster-b", "cluster-a", (7,)))
    assert delivered == []
    assert any(e["event"] == "peer_refused" and e["cluster"] == "cluster-b" for e in logs)


def test_a_node_of_the_same_cluster_is_heard_and_a_new_incarnation_noticed() -> None:
    with capture_logs() as logs:
        delivered = asyncio.run(_exchange("cluster-a", "cluster-a", (7, 8)))
    assert delivered == [MESSAGE, MESSAGE]
    changed = [e for e in logs if e["event"] == "peer_incarnation_changed"]
    assert [(e["peer"], e["was"], e["now"]) for e in changed] == [(1, 7, 8)]
