"""The cluster configuration: datacenters, nodes, shards. Parsed from TOML text, validated.

The same file is given to every node. Validation refuses, with one readable message each:
unknown or duplicate datacenters, nodes, addresses and shard ids; ids out of the wire's range;
shard ranges with a gap or an overlap, or that do not cover the whole key space; a shard whose
replicas are not one per datacenter; an unknown node or datacenter anywhere; and any key or
table the format below does not name (a misspelt ``tick_msx`` would otherwise be a silent
default). Reading the file is the caller's job.

Format (keys are UTF-8 strings; ``end = ""`` means the end of the key space)::

    [cluster]
    name = "local"
    id = "5f0c9a..."       # optional: tells this cluster from any other (default: its name)
    tick_ms = 10

    [[datacenters]]
    name = "dc1"

    [[nodes]]
    id = 1
    dc = "dc1"
    address = "127.0.1.1:7001"

    [[shards]]
    id = 1
    start = ""
    end = "b"
    replicas = [1, 2, 3]
    leader_dc = "dc1"      # optional leader preference

    [wan]                  # optional: emulated WAN delay between datacenters (local tests)
    latency_ms = 30        # one way, between any two datacenters (a round trip is twice it)
    jitter_ms = 3          # each message: +- up to this much, never reordering a link

    [[wan.links]]          # optional: one pair's own one-way latency
    between = ["dc1", "dc3"]
    latency_ms = 80

    [limits]               # optional; these are the defaults
    key_bytes_max = 4096
    value_bytes_max = 1048576
    scan_keys_max = 10000

    [storage]              # optional
    map_size_mb = 65536    # the most one node's LMDB may hold (reserved, not allocated)

    [history]              # optional; these are the defaults (0 turns a bound off)
    retention_s = 3600     # reads and watches may start this far back ...
    revisions_max = 1000000  # ... but never more revisions back than this
"""

from __future__ import annotations

import itertools
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cluster.keys import END_OF_KEYSPACE, KeySpan


class ClusterConfigError(ValueError):
    """The configuration cannot be used; the message says exactly why, in one line."""


# The wire's ranges: shard ids are uint32 in every message and the LMDB key prefix; node ids
# are uint64 on the wire, kept below 2**63 so that no signed consumer can misread one.
SHARD_ID_MAX = (1 << 32) - 1
NODE_ID_MAX = (1 << 63) - 1

# Every key each table may hold (a closed set: anything else is a mistake, named).
_KEYS: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "cluster",
            "datacenters",
            "nodes",
            "shards",
            "wan",
            "limits",
            "storage",
            "sharding",
            "history",
            "placement",
        }
    ),
    "[cluster]": frozenset({"name", "id", "tick_ms"}),
    "[storage]": frozenset({"map_size_mb"}),
    "[[datacenters]]": frozenset({"name"}),
    "[[nodes]]": frozenset({"id", "dc", "address"}),
    "[[shards]]": frozenset({"id", "start", "end", "replicas", "leader_dc"}),
    "[wan]": frozenset({"latency_ms", "jitter_ms", "links"}),
    "[[wan.links]]": frozenset({"between", "latency_ms"}),
    "[limits]": frozenset({"key_bytes_max", "value_bytes_max", "scan_keys_max"}),
    "[sharding]": frozenset({"split_size_mb", "split_ops_per_s", "merge_size_mb", "merge_after_s"}),
    "[history]": frozenset({"retention_s", "revisions_max"}),
    "[placement]": frozenset({"replicas_per_dc", "moves_at_once"}),
}


# LMDB reserves this much address space and grows its file only as data arrives, so a large
# default costs nothing; a store that fills it stops its node with one line until it is
# raised (``[storage] map_size_mb``).
MAP_SIZE_MB_DEFAULT = 64 << 10  # 64 GiB


@dataclass(frozen=True, slots=True)
class NodeSpec:
    node_id: int
    dc: str
    address: str


@dataclass(frozen=True, slots=True)
class ShardSpec:
    shard_id: int
    span: KeySpan
    replicas: tuple[int, ...]
    leader_dc: str | None


# The most the state machine executes (``kvstore.model.commands.oversized``): storage holds
# any key and value up to these, and a configured limit may not exceed them. A command
# beyond them is refused the same way on every replica, never by an exception out of apply.
KEY_BYTES_HARD_MAX = 64 << 10
VALUE_BYTES_HARD_MAX = 64 << 20  # all the values of one command together


@dataclass(frozen=True, slots=True)
class Limits:
    """What a client request may carry (``[limits]`` in the config; these are the defaults)."""

    key_bytes_max: int = 4 << 10
    value_bytes_max: int = 1 << 20
    scan_keys_max: int = 10_000


REPLICAS_PER_DC_MAX = 3
MOVES_AT_ONCE_MAX = 64


@dataclass(frozen=True, slots=True)
class Placement:
    """Where replicas go (``[placement]``, ``cluster.replica_placement``):
    ``replicas_per_dc`` replicas of every range in each datacenter (1..3), and at most
    ``moves_at_once`` replica changes in flight across the cluster (1..64), the rebalancer's
    rate limit."""

    replicas_per_dc: int = 1
    moves_at_once: int = 1


@dataclass(frozen=True, slots=True)
class Sharding:
    """When a shard splits by itself (``[sharding]``; 0 turns a trigger off): past
    ``split_size_mb`` of keys and values, or past ``split_ops_per_s`` commands a second.

    And when a range split off another merges back into its left neighbour by itself: both
    unchanged for ``merge_after_s``, together under ``merge_size_mb`` (and under a quarter
    of ``split_size_mb``, so a merged range must grow four-fold before it splits again: no
    flapping), and together under half of ``split_ops_per_s`` if that is set. The configured
    layout's boundaries are never merged away by themselves."""

    split_size_mb: float = 64.0
    split_ops_per_s: float = 0.0
    merge_size_mb: float = 16.0
    merge_after_s: float = 60.0

    def wants_split(self, size_bytes: int, ops_per_s: float) -> bool:
        too_big = self.split_size_mb > 0 and size_bytes > self.split_size_mb * (1 << 20)
        too_hot = self.split_ops_per_s > 0 and ops_per_s > self.split_ops_per_s
        return too_big or too_hot

    def wants_merge(self, size_bytes: int, ops_per_s: float) -> bool:
        """Whether two neighbours of these sizes and load together should be one."""
        limit = self.merge_size_mb
        if self.split_size_mb > 0:
            limit = min(limit, self.split_size_mb / 4)
        if limit <= 0 or size_bytes >= limit * (1 << 20):
            return False
        return self.split_ops_per_s <= 0 or ops_per_s < self.split_ops_per_s / 2


@dataclass(frozen=True, slots=True)
class History:
    """How much of each shard's past is kept for reads and watches at a revision
    (``[history]``): the revisions of the last ``retention_s`` seconds, but never more than
    ``revisions_max`` revisions back (0 turns a bound off; both 0: keep everything)."""

    retention_s: float = 3600.0
    revisions_max: int = 1_000_000

    def compact_to(self, revision: int, samples: Sequence[tuple[float, int]], now_s: float) -> int:
        """The revision to compact to: the newest sampled ``(at_s, revision)`` at least
        ``retention_s`` old, raised to ``revision - revisions_max`` (0: nothing to forget)."""
        target = 0
        if self.retention_s > 0:
            aged = [rev for at_s, rev in samples if at_s <= now_s - self.retention_s]
            target = max(aged, default=0)
        elif self.revisions_max <= 0:
            return 0
        if self.revisions_max > 0:
            target = max(target, revision - self.revisions_max)
        return max(target, 0)


@dataclass(frozen=True, slots=True)
class WanConfig:
    """Emulated one-way delay between datacenters, applied by the nodes themselves.

    For a local cluster that should behave like three real datacenters (``kvstore up
    --wan-latency-ms``). A real deployment leaves it out: its network has its own latency.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    links: tuple[tuple[frozenset[str], float], ...] = ()

    def one_way_ms(self, a: str, b: str) -> float:
        if a == b:
            return 0.0
        pair = frozenset((a, b))
        return next((ms for link, ms in self.links if link == pair), self.latency_ms)

    def jitter_between_ms(self, a: str, b: str) -> float:
        """The +- jitter of a link: inter-datacenter links only, like the delay itself."""
        return 0.0 if a == b else self.jitter_ms

    @property
    def enabled(self) -> bool:
        return self.latency_ms > 0 or self.jitter_ms > 0 or any(ms > 0 for _, ms in self.links)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    tick_ms: int
    datacenters: tuple[str, ...]
    nodes: tuple[NodeSpec, ...]
    shards: tuple[ShardSpec, ...]
    limits: Limits = Limits()
    wan: WanConfig = WanConfig()
    cluster_id: str = ""  # [cluster] id; "" for configs written before it existed
    map_size_mb: int = MAP_SIZE_MB_DEFAULT  # [storage]: the most LMDB may hold, per node
    sharding: Sharding = Sharding()
    history: History = History()
    placement: Placement = Placement()

    @property
    def identity(self) -> str:
        """What tells this cluster from any other: its ``id``, else (older configs) its name.
        Stamped into every data directory and every peer handshake."""
        return self.cluster_id or self.name

    def admit(self, spec: NodeSpec) -> bool:
        """Add a node that joined (``kvstore serve --join``; the meta range gave it its id).
        The one change a config sees at run time: every part of a node shares its config,
        so all see the node at once. False: known already (or its datacenter is not one of
        the cluster's)."""
        if spec.dc not in self.datacenters or any(n.node_id == spec.node_id for n in self.nodes):
            return False
        object.__setattr__(self, "nodes", (*self.nodes, spec))  # frozen but for this
        return True

    def node(self, node_id: int) -> NodeSpec:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def shards_of(self, node_id: int) -> tuple[ShardSpec, ...]:
        return tuple(s for s in self.shards if node_id in s.replicas)

    def shard(self, shard_id: int) -> ShardSpec:
        for s in self.shards:
            if s.shard_id == shard_id:
                return s
        raise KeyError(shard_id)

    def leader_dc(self, shard_id: int, placed: str | None) -> str:
        """Where the shard's leader should be: ``placed`` (set at run time through the
        shard's log: ``kvstore placement set``) if any, else the default below."""
        return placed or self.default_leader_dc(shard_id)

    def default_leader_dc(self, shard_id: int) -> str:
        """The configured ``leader_dc``, else one spread evenly: shards in key order take
        the datacenters in turn."""
        spec = self.shard(shard_id)
        if spec.leader_dc is not None:
            return spec.leader_dc
        index = next(i for i, s in enumerate(self.shards) if s.shard_id == shard_id)
        return self.datacenters[index % len(self.datacenters)]


def parse_cluster_config(text: str) -> ClusterConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClusterConfigError(f"not valid TOML: {exc}") from None
    _known_keys(raw, "")
    cluster = _table(raw, "cluster")
    _known_keys(cluster, "[cluster]")
    name = _str(cluster, "name", "cluster")
    cluster_id = _str(cluster, "id", "cluster") if "id" in cluster else ""
    tick_ms = _int(cluster.get("tick_ms", 10), "cluster.tick_ms")
    if not 1 <= tick_ms <= 1000:
        raise ClusterConfigError(f"cluster.tick_ms must be within 1..1000, not {tick_ms}")

    dcs = tuple(
        _str(d, "name", "datacenters") for d in _array(raw, "datacenters", "[[datacenters]]")
    )
    _unique(dcs, "datacenter")
    if not dcs:
        raise ClusterConfigError("no [[datacenters]] given")

    nodes = tuple(
        NodeSpec(
            node_id=_int(n.get("id"), "nodes.id"),
            dc=_str(n, "dc", "nodes"),
            address=_str(n, "address", "nodes"),
        )
        for n in _array(raw, "nodes", "[[nodes]]")
    )
    if not nodes:
        raise ClusterConfigError("no [[nodes]] given")
    _unique([n.node_id for n in nodes], "node id")
    _unique([n.address for n in nodes], "node address")
    for n in nodes:
        if not 1 <= n.node_id <= NODE_ID_MAX:
            raise ClusterConfigError(f"node ids must be within 1..2**63-1 (node {n.node_id})")
        if n.dc not in dcs:
            raise ClusterConfigError(f"node {n.node_id} is in unknown datacenter {n.dc!r}")
        host, _, port = n.address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ClusterConfigError(f"node {n.node_id} address {n.address!r} is not host:port")

    dc_of = {n.node_id: n.dc for n in nodes}
    placement = _placement(raw.get("placement", {}))
    shards = tuple(
        _shard(s, dc_of, dcs, placement.replicas_per_dc)
        for s in _array(raw, "shards", "[[shards]]")
    )
    if not shards:
        raise ClusterConfigError("no [[shards]] given")
    _unique([s.shard_id for s in shards], "shard id")
    _check_coverage(shards)
    ordered = tuple(sorted(shards, key=lambda s: s.span.start))
    return ClusterConfig(
        name,
        tick_ms,
        dcs,
        nodes,
        ordered,
        _limits(raw.get("limits", {})),
        _wan(raw, dcs),
        cluster_id,
        _map_size_mb(raw.get("storage", {})),
        _sharding(raw.get("sharding", {})),
        _history(raw.get("history", {})),
        placement,
    )


def _placement(raw: object) -> Placement:
    if not isinstance(raw, dict):
        raise ClusterConfigError("[placement] must be a table")
    _known_keys(raw, "[placement]")
    defaults = Placement()
    per_dc = _int(raw.get("replicas_per_dc", defaults.replicas_per_dc), "placement.replicas_per_dc")
    if not 1 <= per_dc <= REPLICAS_PER_DC_MAX:
        raise ClusterConfigError(
            f"placement.replicas_per_dc must be within 1..{REPLICAS_PER_DC_MAX}, not {per_dc}"
        )
    moves = _int(raw.get("moves_at_once", defaults.moves_at_once), "placement.moves_at_once")
    if not 1 <= moves <= MOVES_AT_ONCE_MAX:
        raise ClusterConfigError(
            f"placement.moves_at_once must be within 1..{MOVES_AT_ONCE_MAX}, not {moves}"
        )
    return Placement(per_dc, moves)


def _history(raw: object) -> History:
    if not isinstance(raw, dict):
        raise ClusterConfigError("[history] must be a table")
    _known_keys(raw, "[history]")
    defaults = History()
    retention = raw.get("retention_s", defaults.retention_s)
    if (
        isinstance(retention, bool)
        or not isinstance(retention, int | float)
        or not 0 <= retention < float("inf")
    ):
        raise ClusterConfigError(
            f"history.retention_s must be a number >= 0 (0: off), not {retention!r}"
        )
    revisions = _int(raw.get("revisions_max", defaults.revisions_max), "history.revisions_max")
    if revisions < 0:
        raise ClusterConfigError(f"history.revisions_max must be >= 0 (0: off), not {revisions}")
    return History(float(retention), revisions)


def _sharding(raw: object) -> Sharding:
    if not isinstance(raw, dict):
        raise ClusterConfigError("[sharding] must be a table")
    _known_keys(raw, "[sharding]")
    values = {}
    for key, value in raw.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < float("inf")  # nan and inf too
        ):
            raise ClusterConfigError(
                f"sharding.{key} must be a number >= 0 (0: off), not {value!r}"
            )
        values[key] = float(value)
    return Sharding(**values)


def _map_size_mb(raw: object) -> int:
    if not isinstance(raw, dict):
        raise ClusterConfigError("[storage] must be a table")
    _known_keys(raw, "[storage]")
    size = _int(raw.get("map_size_mb", MAP_SIZE_MB_DEFAULT), "storage.map_size_mb")
    if not 1 <= size <= 1 << 30:
        raise ClusterConfigError(f"storage.map_size_mb must be within 1..{1 << 30}, not {size}")
    return size


def _wan(raw: dict[str, Any], dcs: tuple[str, ...]) -> WanConfig:
    table = raw.get("wan", {})
    if not isinstance(table, dict):
        raise ClusterConfigError("[wan] must be a table")
    _known_keys(table, "[wan]")
    latency = _ms(table.get("latency_ms", 0), "wan.latency_ms")
    jitter = _ms(table.get("jitter_ms", 0), "wan.jitter_ms")
    links: list[tuple[frozenset[str], float]] = []
    for link in _array(table, "links", "[[wan.links]]"):
        between = link.get("between")
        if (
            not isinstance(between, list)
            or len(between) != 2
            or len(set(between)) != 2
            or not all(dc in dcs for dc in between)
        ):
            raise ClusterConfigError(
                f"wan.links: between must name two different datacenters, not {between!r}"
            )
        pair = frozenset(between)
        if any(pair == seen for seen, _ in links):
            raise ClusterConfigError(f"wan.links: {sorted(pair)} given twice")
        links.append((pair, _ms(link.get("latency_ms"), "wan.links.latency_ms")))
    return WanConfig(latency, jitter, tuple(links))


def _ms(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10_000:
        raise ClusterConfigError(f"{where} must be a number of ms within 0..10000, not {value!r}")
    return float(value)


def _limits(raw: object) -> Limits:
    if not isinstance(raw, dict):
        raise ClusterConfigError("[limits] must be a table")
    assert _KEYS["[limits]"] == set(Limits.__dataclass_fields__)  # one list, kept in step
    _known_keys(raw, "[limits]")
    values = {k: _int(v, f"limits.{k}") for k, v in raw.items()}
    for key, value in values.items():
        if value <= 0:
            raise ClusterConfigError(f"limits.{key} must be positive, not {value}")
    for key, most in (
        ("key_bytes_max", KEY_BYTES_HARD_MAX),
        ("value_bytes_max", VALUE_BYTES_HARD_MAX),
    ):
        if values.get(key, 0) > most:
            raise ClusterConfigError(
                f"limits.{key} {values[key]} is over {most}, the most the store executes"
            )
    return Limits(**values)


def _shard(
    raw: dict[str, Any], dc_of: dict[int, str], dcs: tuple[str, ...], replicas_per_dc: int
) -> ShardSpec:
    shard_id = _int(raw.get("id"), "shards.id")
    where = f"shard {shard_id}"
    if not 1 <= shard_id <= SHARD_ID_MAX:
        raise ClusterConfigError(f"shard ids must be within 1..{SHARD_ID_MAX} (shard {shard_id})")
    start = _str(raw, "start", where, allow_empty=True).encode()
    end = _str(raw, "end", where, allow_empty=True).encode()
    if end != END_OF_KEYSPACE and end <= start:
        raise ClusterConfigError(f"{where}: end {end!r} is not after start {start!r}")
    replicas_raw = raw.get("replicas")
    if not isinstance(replicas_raw, list) or not replicas_raw:
        raise ClusterConfigError(f"{where}: replicas must be a non-empty list of node ids")
    replicas = tuple(_int(r, f"{where}.replicas") for r in replicas_raw)
    _unique(replicas, f"{where} replica")
    for r in replicas:
        if r not in dc_of:
            raise ClusterConfigError(f"{where}: replica {r} is not a configured node")
    per_dc = Counter(dc_of[r] for r in replicas)
    crowded = sorted(dc for dc, count in per_dc.items() if count > replicas_per_dc)
    if crowded:
        many = "two replicas" if replicas_per_dc == 1 else f"over {replicas_per_dc} replicas"
        raise ClusterConfigError(
            f"{where}: {many} in datacenter {crowded[0]!r} ([placement] replicas_per_dc ="
            f" {replicas_per_dc})"
        )
    leader_dc = raw.get("leader_dc")
    if leader_dc is not None and leader_dc not in dcs:
        raise ClusterConfigError(f"{where}: leader_dc {leader_dc!r} is not a datacenter")
    return ShardSpec(shard_id, KeySpan(start, end), replicas, leader_dc)


def _check_coverage(shards: tuple[ShardSpec, ...]) -> None:
    ordered = sorted(shards, key=lambda s: s.span.start)
    if ordered[0].span.start != b"":
        raise ClusterConfigError(f"gap: keys before {ordered[0].span.start!r} belong to no shard")
    for left, right in itertools.pairwise(ordered):
        if left.span.end == END_OF_KEYSPACE or left.span.end > right.span.start:
            raise ClusterConfigError(
                f"overlap: shards {left.shard_id} {left.span} and {right.shard_id} {right.span}"
            )
        if left.span.end < right.span.start:
            raise ClusterConfigError(
                f"gap: keys in [{left.span.end!r}, {right.span.start!r}) belong to no shard"
            )
    if ordered[-1].span.end != END_OF_KEYSPACE:
        raise ClusterConfigError(f"gap: keys from {ordered[-1].span.end!r} on belong to no shard")


def _known_keys(raw: dict[str, Any], table: str) -> None:
    """Refuse the first key of ``raw`` that ``table`` may not hold (sorted: deterministic)."""
    unknown = sorted(set(raw) - _KEYS[table])
    if unknown:
        where = f"in table {table}" if table else "at the top level"
        raise ClusterConfigError(
            f"unknown key {unknown[0]!r} {where}; known: {', '.join(sorted(_KEYS[table]))}"
        )


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ClusterConfigError(f"missing [{key}] table")
    return value


def _array(raw: dict[str, Any], key: str, table: str) -> list[dict[str, Any]]:
    """The array of tables ``raw[key]`` (``table`` names it), each holding only known keys."""
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ClusterConfigError(f"{table} must be an array of tables")
    for item in value:
        _known_keys(item, table)
    return value


def _str(raw: dict[str, Any], key: str, where: str, *, allow_empty: bool = False) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ClusterConfigError(
            f"{where}: {key} must be {'a string' if allow_empty else 'a non-empty string'}"
        )
    return value


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ClusterConfigError(f"{where} must be an integer, not {value!r}")
    return value


def _unique(values: Any, what: str) -> None:
    seen: set[object] = set()
    for v in values:
        if v in seen:
            raise ClusterConfigError(f"duplicate {what} {v!r}")
        seen.add(v)
