"""Cluster configuration: the picture's layout parses, and every mistake gets one clear line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from cluster import ClusterConfigError, KeySpan, parse_cluster_config


def node(i: int, dc: int, host: str) -> str:
    return f'[[nodes]]\nid = {i}\ndc = "dc{dc}"\naddress = "{host}:{7000 + i}"\n'


NODES = "".join(node(i, i, f"127.0.{i}.1") for i in range(1, 4))
DCS = "".join(f'[[datacenters]]\nname = "dc{d}"\n' for d in (1, 2, 3))
HEAD = '[cluster]\nname = "test"\n\n' + DCS


def config(shards: str, nodes: str = NODES, head: str = HEAD) -> str:
    return head + "\n" + nodes + "\n" + shards


def shard(sid: int, start: str, end: str, replicas: str = "[1, 2, 3]", extra: str = "") -> str:
    span = f'start = "{start}"\nend = "{end}"'
    return f"[[shards]]\nid = {sid}\n{span}\nreplicas = {replicas}\n{extra}\n"


PICTURE = (
    shard(1, "", "b", extra='leader_dc = "dc1"')
    + shard(2, "b", "c", extra='leader_dc = "dc2"')
    + shard(3, "c", "")
)


def test_the_picture_parses() -> None:
    """Three DCs, a* and b* shards plus the rest, leaders preferred in different DCs."""
    cfg = parse_cluster_config(config(PICTURE))
    assert [s.span for s in cfg.shards] == [
        KeySpan(b"", b"b"),
        KeySpan(b"b", b"c"),
        KeySpan(b"c", b""),
    ]
    assert [s.leader_dc for s in cfg.shards] == ["dc1", "dc2", None]
    assert cfg.node(2).dc == "dc2"
    assert len(cfg.shards_of(3)) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            config(shard(1, "", "b") + shard(2, "c", "")),
            "gap: keys in [b'b', b'c') belong to no shard",
        ),
        (config(shard(1, "", "c") + shard(2, "b", "")), "overlap: shards 1"),
        (config(shard(1, "a", "")), "gap: keys before b'a'"),
        (config(shard(1, "", "m")), "gap: keys from b'm' on"),
        (config(shard(1, "", "", "[1, 2, 9]")), "replica 9 is not a configured node"),
        (config(shard(1, "", "", "[1, 1, 2]")), "duplicate shard 1 replica 1"),
        (
            config(shard(1, "", "", extra='leader_dc = "dc9"')),
            "leader_dc 'dc9' is not a datacenter",
        ),
        (config(shard(1, "", "") + shard(1, "x", "")), "duplicate shard id 1"),
        (config(shard(1, "m", "c")), "end b'c' is not after start b'm'"),
        ("[cluster\nname=", "not valid TOML"),
        (config(""), "no [[shards]] given"),
    ],
)
def test_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(ClusterConfigError) as info:
        parse_cluster_config(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_two_replicas_in_one_datacenter_are_refused() -> None:
    nodes = NODES + '[[nodes]]\nid = 4\ndc = "dc1"\naddress = "127.0.1.2:7004"\n'
    with pytest.raises(ClusterConfigError, match="two replicas in datacenter 'dc1'"):
        parse_cluster_config(config(shard(1, "", "", "[1, 4, 2]"), nodes=nodes))


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ('id = 4\ndc = "dc7"\naddress = "127.0.0.1:1"', "unknown datacenter 'dc7'"),
        ('id = 1\ndc = "dc1"\naddress = "127.0.0.1:1"', "duplicate node id 1"),
        ('id = 4\ndc = "dc1"\naddress = "127.0.1.1:7001"', "duplicate node address"),
        ('id = 4\ndc = "dc1"\naddress = "nohost"', "is not host:port"),
        ('id = "four"\ndc = "dc1"\naddress = "127.0.0.1:1"', "nodes.id must be an integer"),
    ],
)
def test_bad_nodes_are_named(node: str, message: str) -> None:
    with pytest.raises(ClusterConfigError, match=message):
        parse_cluster_config(config(shard(1, "", ""), nodes=NODES + "[[nodes]]\n" + node + "\n"))


def test_limits_are_configurable_and_validated() -> None:
    from cluster import Limits

    assert parse_cluster_config(config(PICTURE)).limits == Limits()
    custom = parse_cluster_config(config(PICTURE) + "\n[limits]\nvalue_bytes_max = 10\n")
    assert custom.limits.value_bytes_max == 10 and custom.limits.key_bytes_max == 4096
    with pytest.raises(ClusterConfigError, match="unknown key 'value_max' in table \\[limits\\]"):
        parse_cluster_config(config(PICTURE) + "\n[limits]\nvalue_max = 10\n")
    with pytest.raises(ClusterConfigError, match="must be positive"):
        parse_cluster_config(config(PICTURE) + "\n[limits]\nkey_bytes_max = 0\n")


def test_wan_latency_is_per_pair_with_a_default_and_validated() -> None:
    assert not parse_cluster_config(config(PICTURE)).wan.enabled
    wan = parse_cluster_config(
        config(PICTURE)
        + "\n[wan]\nlatency_ms = 30\njitter_ms = 2\n"
        + '[[wan.links]]\nbetween = ["dc1", "dc3"]\nlatency_ms = 80\n'
    ).wan
    assert wan.enabled and wan.jitter_ms == 2
    assert wan.one_way_ms("dc1", "dc2") == 30
    assert wan.one_way_ms("dc3", "dc1") == wan.one_way_ms("dc1", "dc3") == 80
    assert wan.one_way_ms("dc2", "dc2") == 0
    assert wan.jitter_between_ms("dc1", "dc2") == 2
    assert wan.jitter_between_ms("dc2", "dc2") == 0  # same-DC links are not jittered either
    for bad, message in (
        ("[wan]\nlatency_ms = -1\n", "within 0..10000"),
        ("[wan]\nlatency = 5\n", "unknown key 'latency' in table \\[wan\\]"),
        ('[wan]\n[[wan.links]]\nbetween = ["dc1", "dc1"]\nlatency_ms = 5\n', "two different"),
        ('[wan]\n[[wan.links]]\nbetween = ["dc1", "mars"]\nlatency_ms = 5\n', "two different"),
    ):
        with pytest.raises(ClusterConfigError, match=message):
            parse_cluster_config(config(PICTURE) + "\n" + bad)


def test_leaders_without_a_preference_are_spread_over_the_datacenters() -> None:
    spread = parse_cluster_config(
        config(shard(1, "", "b") + shard(2, "b", "c") + shard(3, "c", "d") + shard(4, "d", ""))
    )
    assert [spread.default_leader_dc(s) for s in (1, 2, 3, 4)] == ["dc1", "dc2", "dc3", "dc1"]
    picture = parse_cluster_config(config(PICTURE))
    assert [picture.default_leader_dc(s) for s in (1, 2, 3)] == ["dc1", "dc2", "dc3"]
    assert spread.leader_dc(4, "dc3") == "dc3"  # placed at run time: that wins
    assert spread.leader_dc(4, None) == spread.leader_dc(4, "") == "dc1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            config(PICTURE, head=HEAD.replace("[cluster]\n", "[cluster]\ntick_msx = 5\n")),
            "unknown key 'tick_msx' in table [cluster]",
        ),
        (config(PICTURE) + "\n[extra]\nx = 1\n", "unknown key 'extra' at the top level"),
        ("stray = 1\n" + config(PICTURE), "unknown key 'stray' at the top level"),
        (
            config(PICTURE, head=HEAD + 'zone = "a"\n'),
            "unknown key 'zone' in table [[datacenters]]",
        ),
        (config(PICTURE, nodes=NODES + "port = 1\n"), "unknown key 'port' in table [[nodes]]"),
        (config(PICTURE + "leader = 1\n"), "unknown key 'leader' in table [[shards]]"),
        (config(PICTURE) + "\n[limits]\nvalue_bytes = 1\n", "in table [limits]"),
        (config(PICTURE) + "\n[wan]\njitter = 1\n", "unknown key 'jitter' in table [wan]"),
        (
            config(PICTURE) + '\n[[wan.links]]\nbetween = ["dc1", "dc2"]\nlatency_ms = 1\nx = 2\n',
            "unknown key 'x' in table [[wan.links]]",
        ),
    ],
)
def test_unknown_keys_are_refused_with_their_table(text: str, message: str) -> None:
    """A key the format does not name is a mistake (a misspelling would be a silent default)."""
    with pytest.raises(ClusterConfigError) as info:
        parse_cluster_config(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (config(shard(0, "", "")), "shard ids must be within 1..4294967295 (shard 0)"),
        (config(shard(1 << 32, "", "")), "shard ids must be within 1..4294967295"),
        (
            config(PICTURE, nodes=NODES + node(1 << 63, 1, "127.0.9.9")),
            "node ids must be within 1..2**63-1",
        ),
        (config(PICTURE, nodes=NODES + node(-4, 1, "127.0.9.9")), "node ids must be within"),
    ],
)
def test_ids_must_fit_the_wire(text: str, message: str) -> None:
    """Ids travel as uint32 (shards) and uint64 (nodes): out of range is refused up front."""
    with pytest.raises(ClusterConfigError) as info:
        parse_cluster_config(text)
    assert message in str(info.value)


def test_the_deploy_example_still_parses() -> None:
    """The shipped example uses every table it needs and nothing else."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "deploy" / "cluster.example.toml").read_text()
    assert len(parse_cluster_config(text).shards) == 6


def test_storage_map_size_and_cluster_id_are_read_and_checked() -> None:
    from cluster.config import MAP_SIZE_MB_DEFAULT
    from kvstore.local_cluster import default_config

    plain = parse_cluster_config(default_config())
    assert plain.map_size_mb == MAP_SIZE_MB_DEFAULT and plain.identity == "local"
    named = parse_cluster_config(default_config(cluster_id="f00d"))
    assert named.cluster_id == "f00d" and named.identity == "f00d"
    for size, ok in ((0, False), (1, True), (1 << 30, True), ((1 << 30) + 1, False)):
        text = default_config() + f"[storage]\nmap_size_mb = {size}\n"
        if ok:
            assert parse_cluster_config(text).map_size_mb == size
        else:
            with pytest.raises(ClusterConfigError, match=r"storage\.map_size_mb"):
                parse_cluster_config(text)


def test_limits_may_not_exceed_what_the_store_executes() -> None:
    from cluster.config import KEY_BYTES_HARD_MAX, VALUE_BYTES_HARD_MAX
    from kvstore.local_cluster import default_config

    for key, most in (
        ("key_bytes_max", KEY_BYTES_HARD_MAX),
        ("value_bytes_max", VALUE_BYTES_HARD_MAX),
    ):
        at = parse_cluster_config(default_config() + f"[limits]\n{key} = {most}\n")
        assert getattr(at.limits, key) == most
        with pytest.raises(ClusterConfigError, match=f"limits.{key} {most + 1} is over {most}"):
            parse_cluster_config(default_config() + f"[limits]\n{key} = {most + 1}\n")


def test_sharding_thresholds_are_read_checked_and_decide_splits() -> None:
    from cluster import Sharding

    assert parse_cluster_config(config(PICTURE)).sharding == Sharding(64.0, 0.0)
    custom = parse_cluster_config(
        config(PICTURE) + "\n[sharding]\nsplit_size_mb = 1\nsplit_ops_per_s = 500\n"
    ).sharding
    assert custom == Sharding(1.0, 500.0)
    mib = 1 << 20
    assert not custom.wants_split(mib, 500.0)  # at both limits: not past them
    assert custom.wants_split(mib + 1, 0.0) and custom.wants_split(0, 500.5)
    off = Sharding(0.0, 0.0)
    assert not off.wants_split(1 << 40, 1e9)
    for bad in ("-1", "nan", "inf", "true", '"8"'):
        with pytest.raises(ClusterConfigError, match=r"sharding\.split_size_mb must be a number"):
            parse_cluster_config(config(PICTURE) + f"\n[sharding]\nsplit_size_mb = {bad}\n")
    with pytest.raises(ClusterConfigError, match="unknown key 'merge' in table \\[sharding\\]"):
        parse_cluster_config(config(PICTURE) + "\n[sharding]\nmerge = 1\n")


def test_merge_thresholds_keep_a_merged_range_far_from_its_next_split() -> None:
    from cluster import Sharding

    custom = parse_cluster_config(
        config(PICTURE) + "\n[sharding]\nmerge_size_mb = 2\nmerge_after_s = 5\n"
    ).sharding
    assert (custom.merge_size_mb, custom.merge_after_s) == (2.0, 5.0)
    mib = 1 << 20
    assert custom.wants_merge(2 * mib - 1, 0.0) and not custom.wants_merge(2 * mib, 0.0)
    # Never past a quarter of the split size, whatever merge_size_mb says: a merged range
    # must grow four-fold before it splits again.
    small = Sharding(split_size_mb=1.0, merge_size_mb=16.0)
    assert small.wants_merge(mib // 4 - 1, 0.0) and not small.wants_merge(mib // 4, 0.0)
    # Hot neighbours stay apart: under half the split load only.
    hot = Sharding(split_ops_per_s=100.0)
    assert hot.wants_merge(0, 49.9) and not hot.wants_merge(0, 50.0)
    assert not Sharding(merge_size_mb=0.0).wants_merge(0, 0.0)  # 0: never
    with pytest.raises(ClusterConfigError, match=r"sharding\.merge_size_mb must be a number"):
        parse_cluster_config(config(PICTURE) + "\n[sharding]\nmerge_size_mb = -1\n")


def test_history_keeps_the_retention_window_capped_by_a_revision_count() -> None:
    """``[history]``: defaults 3600 s and 1,000,000 revisions; the compaction target is the
    newest revision at least ``retention_s`` old, raised to ``revision - revisions_max``;
    0 turns a bound off; anything else is refused by name."""
    from cluster import History

    assert parse_cluster_config(config(PICTURE)).history == History(3600.0, 1_000_000)
    custom = parse_cluster_config(
        config(PICTURE) + "\n[history]\nretention_s = 10\nrevisions_max = 100\n"
    ).history
    assert custom == History(10.0, 100)
    samples = [(0.0, 5), (5.0, 40), (9.0, 60), (12.0, 90)]
    assert custom.compact_to(90, samples, now_s=14.0) == 5  # at 4 s: aged past 10 s
    assert custom.compact_to(90, samples, now_s=15.0) == 40  # at 5 s: exactly 10 s old
    assert custom.compact_to(90, samples, now_s=3.0) == 0  # nothing that old yet
    assert custom.compact_to(300, samples, now_s=3.0) == 200  # the cap: 100 revisions back
    assert History(0.0, 100).compact_to(300, samples, now_s=1e9) == 200
    assert History(10.0, 0).compact_to(10**9, samples, now_s=14.0) == 5
    assert History(0.0, 0).compact_to(10**9, samples, now_s=1e9) == 0  # keep everything
    for bad in ("-1", "nan", "inf", "true", '"8"'):
        with pytest.raises(ClusterConfigError, match=r"history\.retention_s must be a number"):
            parse_cluster_config(config(PICTURE) + f"\n[history]\nretention_s = {bad}\n")
    for bad in ("-1", "1.5", "true"):
        with pytest.raises(ClusterConfigError, match=r"history\.revisions_max must be"):
            parse_cluster_config(config(PICTURE) + f"\n[history]\nrevisions_max = {bad}\n")
    with pytest.raises(ClusterConfigError, match="unknown key 'keep' in table \\[history\\]"):
        parse_cluster_config(config(PICTURE) + "\n[history]\nkeep = 1\n")


def test_up_cuts_the_key_space_into_as_many_shards_as_asked() -> None:
    """``kvstore up --shards N``: N ranges, in key order, covering every key once, their
    preferred leaders in dc1, dc2, dc3 in turn; 3 is the picture's a*, b*, the rest; the
    limit (10000) is a layout the config accepts."""
    from kvstore.local_cluster import SHARDS, SHARDS_MAX, default_config, initial_layout

    assert initial_layout(3) == SHARDS
    for count in (1, 2, 4, 62, 63, 1000, SHARDS_MAX):
        layout = initial_layout(count)
        assert len(layout) == count
        assert layout[0][0] == "" and layout[-1][1] == ""
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(layout))
        assert [dc for _, _, dc in layout[:4]] == ["dc1", "dc2", "dc3", "dc1"][:count]
    parsed = parse_cluster_config(default_config(shards=SHARDS_MAX))
    assert len(parsed.shards) == SHARDS_MAX


def test_a_local_cluster_directory_keeps_its_shard_count(tmp_path: Path) -> None:
    """The layout is the directory's from its first start: another --shards is refused
    (it would be silently ignored), none keeps it."""
    from kvstore.local_cluster import LocalCluster

    assert len(LocalCluster(tmp_path, shards=5).cluster.shards) == 5
    assert len(LocalCluster(tmp_path).cluster.shards) == 5
    with pytest.raises(ValueError, match="started with 5 shards, not 6"):
        LocalCluster(tmp_path, shards=6)


def test_placement_is_read_and_checked_at_its_limits() -> None:
    """``[placement]``: replicas_per_dc 1..3, moves_at_once 1..64, each tested at, just
    under and just over its bounds; a shard may hold that many replicas per datacenter."""
    from cluster.config import MOVES_AT_ONCE_MAX, REPLICAS_PER_DC_MAX, Placement
    from kvstore.local_cluster import default_config

    assert parse_cluster_config(default_config()).placement == Placement(1, 1)
    for key, top in (
        ("replicas_per_dc", REPLICAS_PER_DC_MAX),
        ("moves_at_once", MOVES_AT_ONCE_MAX),
    ):
        for value, ok in ((0, False), (1, True), (top - 1, True), (top, True), (top + 1, False)):
            text = default_config() + f"[placement]\n{key} = {value}\n"
            if ok:
                assert getattr(parse_cluster_config(text).placement, key) == value
            else:
                with pytest.raises(ClusterConfigError, match=rf"placement\.{key} must be within"):
                    parse_cluster_config(text)
    with pytest.raises(ClusterConfigError, match=r"placement\.replicas_per_dc"):
        parse_cluster_config(default_config() + '[placement]\nreplicas_per_dc = "two"\n')
    with pytest.raises(ClusterConfigError, match="placement"):
        parse_cluster_config(default_config() + "[placement]\nreplicas = 2\n")


def test_a_shard_may_have_replicas_per_dc_replicas_in_a_datacenter_and_no_more() -> None:
    nodes = "".join(
        f'[[nodes]]\nid = {n}\ndc = "dc{(n - 1) // 3 + 1}"\naddress = "127.0.0.1:{7000 + n}"\n'
        for n in range(1, 10)
    )
    head = '[cluster]\nname = "p"\n' + "".join(
        f'[[datacenters]]\nname = "dc{d}"\n' for d in (1, 2, 3)
    )

    def config(replicas: list[int], per_dc: int) -> str:
        shard = f'[[shards]]\nid = 1\nstart = ""\nend = ""\nreplicas = {replicas}\n'
        return head + nodes + shard + f"[placement]\nreplicas_per_dc = {per_dc}\n"

    two_each = [1, 2, 4, 5, 7, 8]
    assert parse_cluster_config(config(two_each, 2)).shards[0].replicas == tuple(two_each)
    with pytest.raises(ClusterConfigError, match=r"two replicas in datacenter 'dc1'"):
        parse_cluster_config(config(two_each, 1))
    with pytest.raises(ClusterConfigError, match=r"over 2 replicas in datacenter 'dc1'"):
        parse_cluster_config(config([1, 2, 3, 4, 7], 2))
