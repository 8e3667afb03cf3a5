"""One seed, end to end: draw the world from the seed, run faults, then demand liveness.

Phase 1 (safety): clients propose while the nemesis injects faults for ``SAFETY_US``.
Phase 2 (liveness): the nemesis stops and heals a random quorum; within
``LIVENESS_TICKS_MAX`` nominal ticks a leader must exist in that quorum, every client must
have every one of its commands acknowledged, and the quorum's replicas must have applied the
same chosen prefix. Then the final checks run (acknowledged commands survive everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cluster import History
from kvstore.model import KvStateMachine, snapshot
from kvstore.model.node import Node
from paxos import NodeId
from tests.sim.detacher import SimDetacher
from tests.sim.leaser import SimLeaser
from tests.sim.locker import SimLocker
from tests.sim.members import Membership
from tests.sim.merger import Merger
from tests.sim.mover import Mover, draws_spares
from tests.sim.nemesis import Nemesis, NemesisPlan
from tests.sim.rng import sub_rng
from tests.sim.splitter import NO_SPLITS, Splitter
from tests.sim.watcher import SimWatcher
from tests.sim.workload import Workload
from tests.sim.world import ReplicaFactory, World, WorldParams, default_factory

SAFETY_US = 10_000_000
LIVENESS_TICKS_MAX = 1_500  # nominal ticks (15 s of simulated time at 10 ms a tick)
CLIENTS = 8
OPS_PER_CLIENT = 26  # 208 acknowledged commands a seed, more proposals with retries
LOST_ACK_PERMILLE = 100  # answers the client never hears: it retries the same write
NO_MOVES = -1  # ``run_seed(moves=...)``: a world without spare nodes or replica moves


@dataclass
class SeedResult:
    seed: int
    replicas: int
    violations: list[str]
    digest: str
    proposals: int
    acks: int
    chosen_slots: int
    events: int
    faults: tuple[str, ...]
    liveness_ticks: int | None
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def draw_params(seed: int, replicas: int | None) -> WorldParams:
    rng = sub_rng(seed, "params")
    n = replicas if replicas is not None else rng.choice((3, 3, 3, 5))
    one_way: dict[tuple[int, int], int] = {}
    for a in range(3):
        for b in range(a, 3):
            one_way[(a, b)] = rng.randrange(100, 800) if a == b else rng.randrange(2_000, 30_000)
    compact = rng.random() < 0.5
    # A stream of its own, so every other draw is what it was before automatic splits.
    split_size = sub_rng(seed, "sharding").choice((0, 0, 20, 36))
    # Likewise: history kept as configured by default (nothing compacts in a run), or
    # compacted by a short window, a small revision cap, or both.
    retention_s, revisions_max = sub_rng(seed, "history").choice(
        ((3600.0, 1_000_000), (1.0, 0), (0.0, 20), (2.0, 50))
    )
    # Likewise: a spare node in each datacenter, and replica moves onto them.
    spares = 3 if draws_spares(sub_rng(seed, "membership")) else 0
    return WorldParams(
        spares=spares,
        split_size_bytes=split_size,
        history=History(retention_s, revisions_max),
        replicas=n,
        dcs=3,
        groups=rng.choice((1, 2, 3)),
        tick_us=10_000,
        drift_permille=100,
        one_way_us=one_way,
        jitter_us=rng.choice((200, 2_000, 8_000)),
        disk_latency_us=(100, rng.choice((500, 2_000, 8_000))),
        compact_every=rng.choice((5, 20)) if compact else 0,
        config_overrides={
            "heartbeat_ticks": 3,
            "election_ticks_min": 15,
            "election_ticks_max": 30,
            "lease_ticks": 11,
            "clock_drift_max_permille": 100,
            "inflight_slots_max": rng.choice((1, 4, 32)),
            "batch_commands_max": rng.choice((1, 8, 512)),
            "catchup_slots_max": rng.choice((2, 64)),
        },
    )


def lan_worst_case_clocks(params: WorldParams) -> WorldParams:
    """Sub-millisecond links, clocks at the drift extremes, a narrow election window.

    Where the lease's safety margin is thinnest: elections finish almost as soon as the
    guard lets them, and the leader's clock may be the slowest allowed.
    """
    params.one_way_us = dict.fromkeys(params.one_way_us, 100)
    params.jitter_us = 100
    params.disk_latency_us = (50, 200)
    params.drift_extreme = True
    params.config_overrides["election_ticks_max"] = params.config_overrides["election_ticks_min"]
    return params


def run_seed(
    seed: int,
    *,
    replicas: int | None = None,
    factory: ReplicaFactory = default_factory,
    trace: Callable[[str], None] | None = None,
    params_hook: Callable[[WorldParams], WorldParams] | None = None,
    plan_hook: Callable[[NemesisPlan], NemesisPlan] | None = None,
    node_class: type[Node] = Node,
    machine_class: type[KvStateMachine] = KvStateMachine,
    splits: int = 0,
    merges: int = 0,
    watcher_skips: bool = False,
    lease_client: bool = True,
    moves: int = 0,
    concurrent_moves: bool = False,
) -> SeedResult:
    """``splits``: how many splits the schedule holds (0: as the seed draws, 1 to 4;
    ``NO_SPLITS``: none, automatic ones included, and no merges); ``merges`` likewise (0:
    as the seed draws, 1 or 2). ``watcher_skips``: the planted watch bug
    (``tests.sim.watcher``). ``lease_client``: run the lease client (``tests.sim.leaser``;
    a planted bug of one Paxos group is looked for without it, in the worlds it was found
    in). ``moves``: how many replica moves (0: as the seed draws; a positive number gives
    every world spare nodes; ``NO_MOVES``: none, and no spare nodes); ``concurrent_moves``:
    each move proposes two different changes of one range at once (a planted bug's
    worlds)."""
    params = draw_params(seed, replicas)
    if moves > 0:
        params.spares = params.dcs
    elif moves == NO_MOVES:
        params.spares = 0
    if splits == NO_SPLITS:
        params.split_size_bytes = 0
        params.spares = 0  # the Paxos layer alone: no replica moves either
    if params_hook is not None:
        params = params_hook(params)
    world = World(
        seed,
        params,
        factory=factory,
        trace=trace,
        node_class=node_class,
        machine_class=machine_class,
    )
    plan = NemesisPlan.draw(sub_rng(seed, "plan"))
    if plan_hook is not None:
        plan = plan_hook(plan)
    nemesis = Nemesis(world, sub_rng(seed, "nemesis"), plan)
    window = (300_000, SAFETY_US - 1_000_000)
    splitter = Splitter(world, sub_rng(seed, "splits"), window, splits)
    merger = Merger(world, sub_rng(seed, "merges"), window, merges)
    mover = Mover(
        world, sub_rng(seed, "moves"), window, merger.busy, moves, concurrent=concurrent_moves
    )
    merger.moving = mover.moving
    membership = Membership(world, sub_rng(seed, "node_events"), window, mover)
    workload = Workload(
        world,
        sub_rng(seed, "workload"),
        clients=CLIENTS,
        ops_per_client=OPS_PER_CLIENT,
        lost_acks=(sub_rng(seed, "lost_acks"), LOST_ACK_PERMILLE),
    )
    watcher = SimWatcher(world, sub_rng(seed, "watcher"), skips_after_reconnect=watcher_skips)
    leaser = SimLeaser(world, sub_rng(seed, "leases"), window)
    locker = SimLocker(world, sub_rng(seed, "locks"), leaser)
    SimDetacher(world)
    world.trace(0, "seed", f"{seed} replicas={params.replicas} faults={','.join(plan.enabled)}")
    nemesis.start()
    splitter.start()
    mover.start()
    membership.start()
    if splits != NO_SPLITS:
        merger.start()
    workload.start()
    watcher.start()
    if lease_client:
        leaser.start()
    world.run_until(SAFETY_US)

    core = nemesis.heal_core()
    workload.stop_losing_answers()
    liveness_start = world.now_us
    deadline = liveness_start + LIVENESS_TICKS_MAX * params.tick_us

    def converged() -> bool:
        return (
            workload.all_done()
            and leaser.all_ended()
            and merger.idle()
            and _core_converged(world, core)
            and world.directory_current()
        )

    world.run_until(deadline, stop=converged)
    liveness_ticks: int | None = (world.now_us - liveness_start) // params.tick_us
    if not converged():
        liveness_ticks = None
        applied = {v: {g: len(a) for g, a in world.nodes[v].applied.items()} for v in core}
        world.fail(
            "liveness",
            f"after {LIVENESS_TICKS_MAX} ticks: "
            f"leaders={ {g: world.leader(g) for g in world.groups} } core={core} "
            f"clients_pending={workload.pending()} "
            f"applied={applied}",
        )
    for group, checker in world.checkers.items():
        checker.check_acked_survive(
            {v: world.nodes[v].applied.get(group, []) for v in core if v in world.members(group)}
        )
    _check_converged_state(world, core)
    _check_keys(world, core)
    if liveness_ticks is not None:
        watcher.finish(core)
        leaser.finish(core)
    locker.finish()
    membership.finish(core)
    world.check_directory()
    return SeedResult(
        seed=seed,
        replicas=params.replicas,
        violations=[str(v) for v in world.violations],
        digest=world.digest(),
        proposals=workload.proposals,
        acks=workload.acks,
        chosen_slots=world.chosen_slots,
        events=world.events,
        faults=plan.enabled,
        liveness_ticks=liveness_ticks,
        stats={
            "merged": len(world.retired) - len(world.ended),
            "reconfigured": len(world.ended),
            "groups": len(world.truth),
            "watched": watcher.delivered,
            "watch_moves": watcher.reconnects,
            "watch_spans": watcher.spans,
            "leases_ended": leaser.ended,
            "lock_holds": len(locker.holds),
            "joined": len(membership.joined),
            "removed": len(membership.removed),
            "drained": membership.drained,
        },
    )


def wipe_often(plan: NemesisPlan) -> NemesisPlan:
    """Disks wiped between every other fault, and faults come twice as often: where the rules
    for rejoining after a lost disk are exercised hardest."""
    plan.enabled = (
        *(f for f in plan.enabled if f != "wipe"),
        *("wipe",) * max(1, len(plan.enabled)),
    )
    plan.interval_us = (plan.interval_us[0] // 2, plan.interval_us[1] // 2)
    return plan


def _core_converged(world: World, core: list[NodeId]) -> bool:
    for group in world.groups:
        if world.leader(group) not in core:
            return False
        members = [v for v in core if v in world.members(group)]
        lengths = {len(world.nodes[v].applied.get(group, [])) for v in members}
        chosen = set()
        for v in members:
            replica = world.nodes[v].replica(group)
            if replica is not None:
                chosen.add(replica.chosen_through)
            node = world.nodes[v].node
            if node is not None and node.hosts(group) and node.awaiting(group):
                return False  # its first state is still on its way (an install in flight)
        if not (len(lengths) == 1 and len(chosen) == 1 and lengths == chosen):
            return False
        # Everything chosen anywhere (a slot chosen with replicas outside the core is re-
        # proposed by the core's leader): not just a prefix the core agrees on.
        checker = world.checkers.get(group)
        if checker is not None and max(chosen) < max(checker.chosen, default=0):
            return False
    return True


def _check_converged_state(world: World, core: list[NodeId]) -> None:
    """Replicas that applied the same slots hold the same state: every group's data and
    metadata (revision, sessions) alike on every core node (the state machine is a function
    of the log, and snapshots carry it whole)."""
    for group in world.groups:
        states = {}
        for v in core:
            if v not in world.members(group):
                continue
            sim = world.nodes[v]
            if sim.node is None or not sim.node.hosts(group):
                continue
            engine = sim.disk.kv.engine(group)
            descriptor = sim.node.descriptor(group)
            states[v] = (len(sim.applied.get(group, [])), snapshot.dump(engine, descriptor))
        if (
            len({applied for applied, _ in states.values()}) == 1
            and len({state for _, state in states.values()}) > 1
        ):
            world.checkers[group].fail(
                "diverged", f"replicas {sorted(states)} applied the same slots, differ in state"
            )


def _check_keys(world: World, core: list[NodeId]) -> None:
    """Every key's latest acknowledged write is where the key lives now, on every core node
    (across every split since it was written), and its history holds every acknowledged
    write from the compacted revision on, at its revision."""
    for key in sorted(world.keys.acked):
        group = world.group_of(key)
        for v in core:
            if v not in world.members(group):
                continue
            sim = world.nodes[v]
            if sim.node is None or not sim.node.hosts(group) or sim.node.awaiting(group):
                world.fail("liveness", f"n{v} of the healed core does not serve g{group}")
                continue
            machine = KvStateMachine(sim.disk.kv.engine(group), initial=sim.node.descriptor(group))
            if not machine.owns(key):
                world.fail("ownership", f"n{v}: g{group} does not hold {key!r} at the end")
                continue
            world.keys.check_final(v, key, machine.get(key))
            world.keys.check_history(v, key, machine)


def repro_command(seed: int, replicas: int | None) -> str:
    extra = f" --replicas {replicas}" if replicas is not None else ""
    return f"python -m tests.sim --seed {seed}{extra} --trace"
