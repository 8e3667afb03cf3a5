"""Clients that propose unique commands and wait for their outcome, like real callers.

A client sends one command at a time to the replica it believes leads. ``NotLeader`` sends it
to the hinted replica; ``Proposed(slot)`` means "watch that slot": when that replica applies
the slot without the command, the attempt failed and is retried. The command is
acknowledged when the *first* replica applies it, wherever that is: kvstore's gateways
answer from a follower's apply when it comes before the leader's answer, so the checkers
must hold every replica to acknowledgements made anywhere. A crash, pause or partition
shows up as a timeout, after which the client retries (with a new attempt id, so every
attempt's bytes are unique) somewhere else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from paxos import NodeId, NotLeader, Proposed, Slot, Value
from tests.sim.world import SimNode, World


@dataclass
class ClientState:
    client_id: int
    target: NodeId
    done_ops: int = 0
    attempt: int = 0
    in_flight: bytes | None = None
    finished: bool = False


class Workload:
    def __init__(
        self,
        world: World,
        rng: random.Random,
        *,
        clients: int,
        ops_per_client: int,
        timeout_us: int = 2_000_000,
        think_us: tuple[int, int] = (1_000, 60_000),
    ) -> None:
        self._world = world
        self._rng = rng
        self._ops_per_client = ops_per_client
        self._timeout_us = timeout_us
        self._think_us = think_us
        self.clients = [
            ClientState(client_id=c, target=rng.choice(world.voters)) for c in range(clients)
        ]
        self.proposals = 0
        self.acks = 0
        self._in_flight: dict[bytes, int] = {}  # command -> client
        world.on_applied = self._on_applied

    def start(self) -> None:
        for client in self.clients:
            self._later(client, self._rng.randrange(0, 50_000))

    def all_done(self) -> bool:
        return all(c.finished for c in self.clients)

    def pending(self) -> int:
        return sum(1 for c in self.clients if not c.finished)

    def _later(self, client: ClientState, delay_us: int) -> None:
        self._world.schedule(self._world.now_us + delay_us, self._issue, client.client_id)

    def _issue(self, client_id: int) -> None:
        client = self.clients[client_id]
        if client.finished or client.in_flight is not None:
            return
        world = self._world
        node = world.nodes[client.target]
        if not node.running or node.replica is None:
            client.target = self._rng.choice(world.voters)
            self._later(client, self._rng.randrange(5_000, 50_000))
            return
        command = f"c{client.client_id}-{client.done_ops}-a{client.attempt}".encode()
        outcome = node.replica.propose(command)
        world.drain(client.target)
        match outcome:
            case Proposed(slot=slot):
                self.proposals += 1
                client.in_flight = command
                self._in_flight[command] = client.client_id
                node.awaiting.setdefault(slot, []).append((client.client_id, command))
                world.schedule(
                    world.now_us + self._timeout_us, self._timeout, client.client_id, command
                )
            case NotLeader(leader_hint=hint):
                client.target = hint if hint is not None else self._rng.choice(world.voters)
                self._later(client, self._rng.randrange(1_000, 30_000))
            case _:
                self._later(client, self._rng.randrange(10_000, 100_000))

    def _on_applied(self, node: SimNode, slot: Slot, value: Value) -> None:
        for command in value:
            client_id = self._in_flight.pop(command, None)
            if client_id is not None:
                client = self.clients[client_id]
                self._world.checker.on_ack(command, slot)
                self.acks += 1
                client.done_ops += 1
                client.attempt = 0
                client.finished = client.done_ops >= self._ops_per_client
                self._next(client)
        for client_id, command in node.awaiting.pop(slot, ()):
            client = self.clients[client_id]
            if client.in_flight == command:  # the slot was filled without it
                client.attempt += 1
                self._next(client)

    def _next(self, client: ClientState) -> None:
        if client.in_flight is not None:
            self._in_flight.pop(client.in_flight, None)
            client.in_flight = None
        if not client.finished:
            self._later(client, self._rng.randrange(*self._think_us))

    def _timeout(self, client_id: int, command: bytes) -> None:
        client = self.clients[client_id]
        if client.in_flight != command:
            return
        self._in_flight.pop(command, None)
        client.in_flight = None
        client.attempt += 1
        client.target = self._rng.choice(self._world.voters)
        self._later(client, self._rng.randrange(1_000, 20_000))
