"""A lock client in the simulated world, built as ``kvstore.concurrency`` builds locks, and
the check that no two holders ever believe they hold the lock at once.

Each lease the lease client is granted contends for one lock, the key ``lock``: a Txn "if
its create revision is 0, put it under my lease, else get it", sent to the key's leader and
retried with the same request id until answered. Won: the contender holds the lock, with
the key's create revision as its fencing token. Lost: it polls the key with linearizable
reads (as a watch would tell it) and tries again once the key is gone. Half the holders let
go after a while with the guarded delete ``kvstore.concurrency`` releases with; the others
hold until their lease lapses. A contender behaves as a paused process: once its lease's
keep-alives stop it asks nothing more, but still believes it holds the lock for as long as
its lease may live.

A holder's belief lasts from the moment it hears its Txn won until it sends its release or
its lease may have lapsed by its own count (one TTL after the last keep-alive it sent and
had answered), whichever is first. Checks: no two holders' beliefs overlap (``lock-overlap``),
and tokens strictly increase from holder to holder (``lock-token``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

from kvstore.model import KvStateMachine, RequestId
from kvstore.model.commands import (
    Compare,
    CompareOp,
    LeaseGone,
    OpKind,
    Target,
    Txn,
    TxnOp,
    TxnResult,
)
from kvstore.model.node import Accepted
from tests.sim.leaser import SimLease, SimLeaser
from tests.sim.world import SimNode, World

LOCK_KEY = b"lock"
LOCK_CLIENT_ID = 78_000_001  # plus the contender's index: its request ids
POLL_US = 50_000
RETRY_US = 20_000
TIMEOUT_US = 300_000


@dataclass
class _Hold:
    lease: SimLease
    token: int
    start_us: int
    released_us: int | None = None

    @property
    def end_us(self) -> int:
        lapses = self.lease.valid_from_us + self.lease.ttl_ms * 1000
        return lapses if self.released_us is None else min(self.released_us, lapses)


@dataclass
class _Contender:
    lease: SimLease
    client_id: int
    seq: int = 0
    command: Txn | None = None  # the Txn in flight, kept by every retry
    pending: int = 0  # the token of the request or read awaited (0: none)
    done: bool = False


class SimLocker:
    def __init__(self, world: World, rng: random.Random, leaser: SimLeaser) -> None:
        self._world = world
        self._rng = rng
        self._contenders: list[_Contender] = []
        self.holds: list[_Hold] = []
        leaser.on_granted = self._granted

    def _granted(self, lease: SimLease) -> None:
        contender = _Contender(lease, LOCK_CLIENT_ID + len(self._contenders))
        self._contenders.append(contender)
        self._try(contender)

    def _asking(self, c: _Contender) -> bool:
        """Still a live process: its lease kept alive, and by its count not lapsed."""
        now = self._world.now_us
        lease = c.lease
        return now <= lease.keep_until_us and now < lease.valid_from_us + lease.ttl_ms * 1000

    def _leader(
        self, c: _Contender, again: Callable[[_Contender], None], wait_us: int
    ) -> tuple[int, SimNode] | None:
        """The lock key's group and a node leading it to ask (None: ``again`` later)."""
        world = self._world
        group = world.group_of(LOCK_KEY)
        v = world.leader(group)
        if v is None or world.nodes[v].paused or world.nodes[v].node is None:
            world.schedule(world.now_us + wait_us, again, c)
            return None
        return group, world.nodes[v]

    # ------------------------------------------------------------------ taking the lock

    def _try(self, c: _Contender) -> None:
        """Send the Txn (again: the same request id until it is answered)."""
        world = self._world
        if c.done or not self._asking(c):
            c.done = True
            return
        if c.command is None:
            c.seq += 1
            c.command = Txn(
                RequestId(c.client_id, c.seq),
                (Compare(LOCK_KEY, Target.CREATE_REVISION, CompareOp.EQUAL, number=0),),
                (TxnOp(OpKind.PUT, LOCK_KEY, b"%d" % c.lease.lease_id, c.lease.lease_id),),
                (TxnOp(OpKind.GET, LOCK_KEY),),
            )
        found = self._leader(c, self._try, RETRY_US)
        if found is None:
            return
        group, sim = found
        token = c.pending = world.new_token()
        world.answer_to[token] = lambda answer: self._answered(c, token, answer)
        outcome = world.submit(sim.node_id, group, c.command, token)
        self._await(c, token, outcome, self._try, RETRY_US)

    def _answered(self, c: _Contender, token: int, answer: object) -> None:
        world = self._world
        if c.pending != token:
            return
        c.pending = 0
        if isinstance(answer, LeaseGone):
            c.done = True
            return
        if not isinstance(answer, TxnResult):  # refused, dropped, moved (OutOfRange): again
            world.schedule(world.now_us + RETRY_US, self._try, c)  # the same bytes again
            return
        c.command = None
        if not answer.succeeded:
            world.schedule(world.now_us + POLL_US, self._poll, c)
            return
        hold = _Hold(c.lease, answer.revision, world.now_us)
        self.holds.append(hold)
        c.done = True
        world.trace(0, "lock", f"lease {c.lease.lease_id} holds, token {hold.token}")
        if self._rng.random() < 0.5:
            later = world.now_us + self._rng.randrange(1, 2 * c.lease.ttl_ms * 1000)
            world.schedule(later, self._release, c, hold)

    def _await(
        self,
        c: _Contender,
        token: int,
        outcome: object,
        again: Callable[[_Contender], None],
        refused_us: int,
    ) -> None:
        """The node took the request (wait for it, ``again`` if it times out) or refused it
        at once (``again`` after ``refused_us``)."""
        world = self._world
        if isinstance(outcome, Accepted):
            world.schedule(world.now_us + TIMEOUT_US, self._timed_out, c, token, again)
            return
        self._forget(c, token)
        world.schedule(world.now_us + refused_us, again, c)

    def _forget(self, c: _Contender, token: int) -> None:
        c.pending = 0
        self._world.answer_to.pop(token, None)
        self._world.read_to.pop(token, None)

    def _timed_out(self, c: _Contender, token: int, again: Callable[[_Contender], None]) -> None:
        if c.pending == token:
            self._forget(c, token)
            again(c)

    # ------------------------------------------------------------------ waiting

    def _poll(self, c: _Contender) -> None:
        """A linearizable read of the key; once it is gone, try again."""
        world = self._world
        if not self._asking(c):
            c.done = True
            return
        found = self._leader(c, self._poll, POLL_US)
        if found is None:
            return
        group, sim = found
        token = c.pending = world.new_token()
        world.read_to[token] = lambda served: self._read(c, token, group, served)
        world.answer_to[token] = lambda _refused: self._refused(c, token)
        outcome = world.read(sim.node_id, group, token)
        self._await(c, token, outcome, self._poll, POLL_US)

    def _refused(self, c: _Contender, token: int) -> None:
        if c.pending == token:
            c.pending = 0
            self._world.read_to.pop(token, None)
            self._world.schedule(self._world.now_us + POLL_US, self._poll, c)

    def _read(self, c: _Contender, token: int, group: int, sim: SimNode) -> None:
        world = self._world
        if c.pending != token:
            return
        c.pending = 0
        world.answer_to.pop(token, None)
        node = sim.node
        assert node is not None
        machine = KvStateMachine(sim.disk.kv.engine(group), initial=node.descriptor(group))
        if machine.owns(LOCK_KEY) and not node.merged_away(group) and machine.get(LOCK_KEY) is None:
            self._try(c)
        else:
            world.schedule(world.now_us + POLL_US, self._poll, c)

    # ------------------------------------------------------------------ letting go

    def _release(self, c: _Contender, hold: _Hold) -> None:
        """The guarded delete ``kvstore.concurrency`` lets go with: sent once (if it is lost,
        the lease's end deletes the key); the belief ends as it is sent."""
        world = self._world
        if not self._asking(c):
            return  # paused: it never gets to let go
        hold.released_us = world.now_us
        found = self._leader(c, lambda _c: None, 0)  # no leader: the lease's end lets go
        if found is None:
            return
        group, sim = found
        c.seq += 1
        release = Txn(
            RequestId(c.client_id, c.seq),
            (Compare(LOCK_KEY, Target.CREATE_REVISION, CompareOp.EQUAL, number=hold.token),),
            (TxnOp(OpKind.DELETE, LOCK_KEY),),
            (),
        )
        token = world.new_token()
        world.answer_to[token] = lambda _answer: None
        if not isinstance(world.submit(sim.node_id, group, release, token), Accepted):
            world.answer_to.pop(token, None)

    # ------------------------------------------------------------------ the check

    def finish(self) -> None:
        """No two holders believed they held the lock at once; tokens only grew."""
        held = sorted((h for h in self.holds if h.start_us < h.end_us), key=lambda h: h.start_us)
        for before, after in itertools.pairwise(held):
            if after.start_us < before.end_us:
                self._world.fail(
                    "lock-overlap",
                    f"lease {after.lease.lease_id} took the lock at {after.start_us} us while"
                    f" lease {before.lease.lease_id} held it ({before.start_us}.."
                    f"{before.end_us} us)",
                )
            if after.token <= before.token:
                self._world.fail(
                    "lock-token",
                    f"lease {after.lease.lease_id}'s token {after.token} after lease"
                    f" {before.lease.lease_id}'s {before.token}",
                )
