"""What the admin service does with ``Effects.leases_to_detach``, in the simulated world.

The meta leader names ended leases; ``DetachLease`` of each goes to every range's leader
(ranges that split or merged meanwhile are done again, by id and generation, as
``AdminService.detach_leases`` does), then ``LeasesEnded`` to the meta leader. One pass at
a time; a pass that meets a range without a leader, or a refusal, gives up: the meta
leader names the leases again the next second.
"""

from __future__ import annotations

from cluster import META_RANGE_ID
from kvstore.model import RequestId
from kvstore.model.commands import DetachLease, LeaseDetached, LeasesEnded
from kvstore.model.node import Accepted
from paxos import NodeId
from tests.sim.world import World

PASSES_MAX = 8  # a split or merge per pass at most, in practice
STALE_US = 2_000_000  # a pass unanswered this long met a crash: it is given up


class SimDetacher:
    def __init__(self, world: World) -> None:
        self._world = world
        self._busy = False
        self._pass_id = 0  # answers of a pass given up count for nothing
        self._started_us = 0
        world.on_leases_to_detach = self._wanted

    def _wanted(self, v: NodeId, lease_ids: list[int]) -> None:
        now = self._world.now_us
        if self._busy and now - self._started_us < STALE_US:
            return
        self._busy = True
        self._pass_id += 1
        self._started_us = now
        self._pass(tuple(lease_ids), set(), 0)

    def _pass(self, lease_ids: tuple[int, ...], done: set[tuple[int, int]], passes: int) -> None:
        world = self._world
        pending = [d for d in world.truth.values() if (d.range_id, d.generation) not in done]
        if not pending:
            self._ended(lease_ids)
            return
        if passes >= PASSES_MAX:
            self._busy = False
            return
        waiting = {(d.range_id, d.generation): len(lease_ids) for d in pending}
        failed = False
        this_pass = self._pass_id

        def answered(key: tuple[int, int], answer: object) -> None:
            nonlocal failed
            if this_pass != self._pass_id:
                return  # given up
            if not isinstance(answer, LeaseDetached):
                failed = True
            waiting[key] -= 1
            if not waiting[key]:
                del waiting[key]
                if not failed:
                    done.add(key)
            if not waiting:
                if failed:
                    self._busy = False  # asked again next second
                else:
                    self._pass(lease_ids, done, passes + 1)

        for d in pending:
            key = (d.range_id, d.generation)
            leader = world.leader(d.range_id)
            for lease_id in lease_ids:
                if leader is None:
                    answered(key, None)
                    continue
                token = world.new_token()
                world.answer_to[token] = lambda answer, key=key: answered(key, answer)
                command = DetachLease(RequestId(0, 0), lease_id)
                if not isinstance(world.submit(leader, d.range_id, command, token), Accepted):
                    world.answer_to.pop(token, None)
                    answered(key, None)

    def _ended(self, lease_ids: tuple[int, ...]) -> None:
        world = self._world
        self._busy = False
        leader = world.leader(META_RANGE_ID)
        if leader is None:
            return
        token = world.new_token()
        world.answer_to[token] = lambda _answer: None
        if not isinstance(
            world.submit(leader, META_RANGE_ID, LeasesEnded(RequestId(0, 0), lease_ids), token),
            Accepted,
        ):
            world.answer_to.pop(token, None)
