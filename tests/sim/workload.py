"""Clients that write keys, read them, and wait for each outcome, like real callers.

A client puts one key at a time, with a request id (its client id and a sequence number)
that a retry keeps, so the replicated session table makes every write apply once. It sends
the write to the node it believes leads the key's group: a refusal names the leader to try;
``Dropped`` (the slot it was proposed in was chosen without it) retries at once. The write
is acknowledged when the *first* replica applies it, wherever that is: kvstore's gateways
answer from a follower's apply when it comes before the leader's answer, so the checkers
hold every replica to acknowledgements made anywhere. A crash, pause or partition shows up
as a timeout, after which the client retries (the same bytes) somewhere else.

Between writes a client may read: it asks the node it believes leads the key's group for a
linearizable read point, and the read is served from that node's state when the node says
so; the checkers hold it to every write acknowledged before the read was invoked.

Some answers are lost (``lost_ack_permille``, drawn from a stream of its own): the client
hears nothing of that apply, times out and retries the same write, which the session table
must answer with the first execution's result, in whichever group the key lives by then.

Clients route by the true range map (``World.truth``), as if meta were always current, and a
write or read that reaches a group after a split moved its key (``OutOfRange``) goes again
to the key's group now, the write with the same request id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kvstore.model import ApplyResult, KvStateMachine, Put, PutResult, RequestId, encode_command
from kvstore.model.commands import OutOfRange
from kvstore.model.node import Accepted, Answer, Dropped, NotLeaderRefusal, Token
from paxos import NodeId, Slot, Value
from tests.sim.world import SimNode, World

KEYS = tuple(b"k%02d" % i for i in range(12))


@dataclass
class ClientState:
    client_id: int
    target: NodeId
    seq: int = 0
    done_ops: int = 0
    command: Put | None = None  # the write in flight, kept by every retry
    in_flight: bytes | None = None  # its bytes
    group: int = 0
    token: Token = 0
    finished: bool = False
    reading: tuple[int, bytes, int] | None = None  # a read in flight: (group, key, invoked_us)
    deaf: tuple[int, int] | None = None  # (group, slot) of an apply whose answer was lost


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
        lost_acks: tuple[random.Random, int] | None = None,
    ) -> None:
        """``lost_acks``: (its own random stream, how many answers in a thousand are lost)."""
        self._world = world
        self._rng = rng
        self._lost_acks = lost_acks
        self._ops_per_client = ops_per_client
        self._timeout_us = timeout_us
        self._think_us = think_us
        self.clients = [
            ClientState(client_id=c + 1, target=rng.choice(world.in_service))
            for c in range(clients)
        ]
        self.proposals = 0
        self.acks = 0
        self._in_flight: dict[bytes, ClientState] = {}  # command -> client
        self._tokens: dict[Token, ClientState] = {}
        world.on_applied = self._on_applied
        world.on_answer = self._on_answer
        world.on_read = self._on_read
        self.reads = 0

    def start(self) -> None:
        for client in self.clients:
            self._later(client, self._rng.randrange(0, 50_000))

    def stop_losing_answers(self) -> None:
        """Lost answers are a fault: the liveness phase has none."""
        self._lost_acks = None

    def all_done(self) -> bool:
        return all(c.finished for c in self.clients)

    def pending(self) -> int:
        return sum(1 for c in self.clients if not c.finished)

    def _later(self, client: ClientState, delay_us: int) -> None:
        self._world.schedule(self._world.now_us + delay_us, self._issue, client.client_id)

    def _issue(self, client_id: int) -> None:
        client = self.clients[client_id - 1]
        if client.finished:
            return
        world = self._world
        if client.command is None:  # a new write; a retry keeps its request id and bytes
            client.seq += 1
            key = self._rng.choice(KEYS)
            value = b"c%d-%d" % (client.client_id, client.done_ops)
            client.command = Put(RequestId(client.client_id, client.seq), key, value)
            client.group = world.group_of(key)
            client.in_flight = encode_command(client.command)
            self._in_flight[client.in_flight] = client
        command = client.command
        # Routed again at every attempt, as a gateway does: a merge may have retired the
        # group an earlier attempt went to (a tombstone may have no leader to refuse it).
        client.group = world.group_of(command.key)
        sim = world.nodes[client.target]
        if not sim.running:
            client.target = self._rng.choice(world.in_service)
            self._later(client, self._rng.randrange(5_000, 50_000))
            return
        self._tokens.pop(client.token, None)
        client.token = world.new_token()
        self._tokens[client.token] = client
        outcome = world.submit(client.target, client.group, command, client.token)
        match outcome:
            case Accepted():
                self.proposals += 1
                world.schedule(
                    world.now_us + self._timeout_us, self._timeout, client.client_id, client.token
                )
            case NotLeaderRefusal(leader_hint=hint):
                hinted = NodeId(hint) if hint else None
                client.target = hinted if hinted is not None else self._rng.choice(world.in_service)
                self._later(client, self._rng.randrange(1_000, 30_000))
            case _:
                self._later(client, self._rng.randrange(10_000, 100_000))

    def _on_applied(
        self,
        _sim: SimNode,
        group: int,
        slot: Slot,
        value: Value,
        results: list[tuple[RequestId | None, ApplyResult]],
    ) -> None:
        for command, (_, result) in zip(value, results, strict=True):
            client = self._in_flight.get(command)
            if client is None or client.command is None or client.deaf == (group, slot):
                continue
            lost = self._lost_acks
            if lost is not None and lost[0].randrange(1000) < lost[1]:
                client.deaf = (group, slot)  # nothing heard of it: a timeout, then a retry
                continue
            if isinstance(result, OutOfRange):
                # A split moved the key before this slot: the same write goes to its group now.
                if client.group == group:
                    client.group = self._world.group_of(client.command.key)
                    self._tokens.pop(client.token, None)
                    self._later(client, self._rng.randrange(1_000, 10_000))
                continue
            del self._in_flight[command]
            self._world.checkers[group].on_ack(command, slot)
            if isinstance(result, PutResult):
                self._world.keys.on_ack(client.command.key, client.command.value, result.revision)
            self.acks += 1
            client.done_ops += 1
            client.finished = client.done_ops >= self._ops_per_client
            client.command = client.in_flight = None
            self._tokens.pop(client.token, None)
            if not client.finished:
                if self._rng.random() < 0.5:
                    self._world.schedule(self._world.now_us, self._read, client.client_id)
                else:
                    self._later(client, self._rng.randrange(*self._think_us))

    # ------------------------------------------------------------------ reads

    def _read(self, client_id: int) -> None:
        client = self.clients[client_id - 1]
        world = self._world
        key = self._rng.choice(KEYS)
        group = world.group_of(key)
        sim = world.nodes[client.target]
        if not sim.running:
            client.target = self._rng.choice(world.in_service)
            self._later(client, self._rng.randrange(*self._think_us))
            return
        client.token = world.new_token()
        self._tokens[client.token] = client
        client.reading = (group, key, world.now_us)
        outcome = world.read(client.target, group, client.token)
        if isinstance(outcome, Accepted):
            world.schedule(
                world.now_us + self._timeout_us, self._read_timeout, client_id, client.token
            )
            return
        client.reading = None
        self._tokens.pop(client.token, None)
        if isinstance(outcome, NotLeaderRefusal) and outcome.leader_hint:
            client.target = NodeId(outcome.leader_hint)
        self._later(client, self._rng.randrange(*self._think_us))

    def _on_read(self, sim: SimNode, token: Token) -> None:
        client = self._tokens.pop(token, None)
        if client is None or client.token != token or client.reading is None:
            return
        group, key, invoked_us = client.reading
        client.reading = None
        world, node = self._world, sim.node
        assert node is not None
        # Served as the runtime serves it: from the state as applied, if the key is still
        # the group's (else the read goes again, to the key's group now).
        machine = KvStateMachine(sim.disk.kv.engine(group), initial=node.descriptor(group))
        if machine.owns(key) and not node.merged_away(group):
            world.checkers[group].on_read(sim.node_id, invoked_us, Slot(sim.committed[group]))
            world.keys.on_read(sim.node_id, key, invoked_us, machine.get(key))
            self.reads += 1
        self._later(client, self._rng.randrange(*self._think_us))

    def _read_timeout(self, client_id: int, token: Token) -> None:
        client = self.clients[client_id - 1]
        if client.token != token or client.reading is None:
            return
        client.reading = None
        self._tokens.pop(token, None)
        client.target = self._rng.choice(self._world.in_service)
        self._later(client, self._rng.randrange(*self._think_us))

    def _on_answer(self, token: Token, answer: Answer) -> None:
        client = self._tokens.get(token)
        if client is None or client.token != token:
            return
        if client.reading is not None:  # a read the node could not serve (lost leadership)
            self._tokens.pop(token)
            client.reading = None
            self._later(client, self._rng.randrange(*self._think_us))
            return
        if client.command is not None and isinstance(answer, Dropped):
            self._tokens.pop(token)  # chosen without it: retry, the same bytes
            self._later(client, self._rng.randrange(1_000, 10_000))

    def _timeout(self, client_id: int, token: Token) -> None:
        client = self.clients[client_id - 1]
        if client.token != token or client.command is None:
            return
        self._tokens.pop(token, None)
        client.target = self._rng.choice(self._world.in_service)
        self._later(client, self._rng.randrange(1_000, 20_000))
