"""LMDB stores Paxos state exactly as ``paxos.MemoryStorage`` defines it, and keeps every
committed record across a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore.storage import NodeStore, StoreIdentityError
from paxos import Ballot, DurableRecord, LogEntry, MemoryStorage, NodeId, Slot, Snapshot

ROOT = Path(__file__).resolve().parents[2]

ballots = st.builds(Ballot, st.integers(1, 5), st.integers(1, 3).map(NodeId))
slots = st.integers(1, 12).map(Slot)
entries = st.builds(
    LogEntry,
    slot=slots,
    ballot=ballots,
    value=st.lists(st.binary(max_size=3), max_size=3).map(tuple),
)
records = st.builds(
    DurableRecord,
    promised=st.none() | ballots,
    entries=st.lists(entries, max_size=4).map(tuple),
    chosen_through=st.none() | slots,
    snapshot=st.none() | st.builds(Snapshot, slot=slots, data=st.binary(max_size=4)),
    truncate_through=st.none() | slots,
    voting=st.none() | st.booleans(),
    rejoined_at=st.none() | st.integers(0, 50).map(Slot),
)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.sampled_from([1, 2]), records), max_size=12))
def test_lmdb_means_what_memory_storage_means(work: list[tuple[int, DurableRecord]]) -> None:
    memory = {1: MemoryStorage(), 2: MemoryStorage()}
    with tempfile.TemporaryDirectory() as path:
        store = NodeStore(path, map_size=16 << 20)
        for shard, record in work:
            memory[shard].apply(record)
            with store.write() as batch:
                batch.persist(shard, record)
        store.close()
        reopened = NodeStore(path, map_size=16 << 20)
        for shard in (1, 2):
            assert reopened.load(shard) == memory[shard].state(), shard
        reopened.close()


WRITER = """
import sys
from kvstore.storage import NodeStore
from paxos import Ballot, DurableRecord, LogEntry, NodeId, Slot
store = NodeStore(sys.argv[1], map_size=64 << 20)
for i in range(1, 200_000):
    entry = LogEntry(slot=Slot(i), ballot=Ballot(1, NodeId(1)), value=(b"v%d" % i,))
    with store.write() as batch:
        batch.persist(1, DurableRecord(entries=(entry,), chosen_through=Slot(i)))
    print(i, flush=True)   # acknowledged only after commit returned (fsync)
"""


def test_sigkill_loses_nothing_that_was_committed() -> None:
    """Kill -9 in the middle of a stream of commits; every acknowledged record is there."""
    with tempfile.TemporaryDirectory() as path:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, path],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        acked = 0
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while acked < 300 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert acked >= 300, "the writer made too little progress to test anything"
        state = NodeStore(path, map_size=64 << 20).load(1)
        assert state.chosen_through >= acked
        assert all(Slot(i) in state.log for i in range(1, acked + 1))
        assert state.log[Slot(acked)].value == (b"v%d" % acked,)


def test_a_directory_of_another_cluster_or_node_is_refused(tmp_path: Path) -> None:
    store = NodeStore(tmp_path, map_size=1 << 20)
    store.claim("prod", 1, founding=True)
    store.claim("prod", 1, founding=True)  # the same owner may reopen it
    with pytest.raises(StoreIdentityError, match="cluster='prod'"):
        store.claim("staging", 1, founding=True)
    with pytest.raises(StoreIdentityError, match="node_id='1'"):
        store.claim("prod", 2, founding=True)
    store.close()


def test_a_directory_remembers_how_its_node_joined(tmp_path: Path) -> None:
    """A founding member's replicas vote; a directory made later (a lost or replaced disk)
    starts every group rejoining until its record says it votes; that is kept."""
    founding = NodeStore(tmp_path / "a", map_size=1 << 20)
    identity = founding.claim("prod", 1, founding=True, incarnation=7)
    assert (identity.new, identity.founding, identity.incarnation) == (True, True, 7)
    assert founding.load(1).voting
    founding.close()
    later = NodeStore(tmp_path / "b", map_size=1 << 20)
    assert not later.claim("prod", 1, founding=False, incarnation=8).founding
    assert not later.load(1).voting
    with later.write() as batch:
        batch.persist(1, DurableRecord(promised=Ballot(3, NodeId(2)), voting=True))
    later.close()
    reopened = NodeStore(tmp_path / "b", map_size=1 << 20)
    identity = reopened.claim("prod", 1, founding=True, incarnation=9)  # flags of a new dir only
    assert (identity.new, identity.founding, identity.incarnation) == (False, False, 8)
    assert reopened.load(1).voting and not reopened.load(2).voting
    reopened.close()


def test_a_directory_remembers_the_nodes_that_joined_and_its_own_join(tmp_path: Path) -> None:
    """A node that joined keeps the config it was given (a configured node has none: its
    file is the config); every node keeps the nodes it heard joined, across a reopen."""
    configured = NodeStore(tmp_path / "a", map_size=1 << 20)
    configured.claim("prod", 1, founding=True)
    configured.save_member(7, "dc2", "h:7")
    configured.save_member(12, "dc1", "h:12")
    configured.save_member(7, "dc2", "h:7")  # told twice
    assert configured.joined() is None
    configured.close()
    reopened = NodeStore(tmp_path / "a", map_size=1 << 20)
    assert reopened.members() == [(7, "dc2", "h:7"), (12, "dc1", "h:12")]
    reopened.close()
    joined = NodeStore(tmp_path / "b", map_size=1 << 20)
    joined.claim("prod", 7, founding=False)
    joined.save_config("[cluster]\n")
    joined.close()
    again = NodeStore(tmp_path / "b", map_size=1 << 20)
    assert again.joined() == (7, "[cluster]\n")
    again.close()


def test_a_directory_of_another_cluster_id_is_refused(tmp_path: Path) -> None:
    """Two clusters may share a name (two `kvstore up`s are both "local"); their ids differ."""
    store = NodeStore(tmp_path, map_size=1 << 20)
    store.claim("local", 1, founding=True, cluster_id="a1b2")
    with pytest.raises(StoreIdentityError, match="cluster_id='a1b2'"):
        store.claim("local", 1, founding=True, cluster_id="c3d4")
    store.close()


def test_a_directory_of_the_shard_keyed_format_is_rekeyed_once_when_claimed(
    tmp_path: Path,
) -> None:
    """Format kvstore-1 stored each key under its shard's id; claiming such a directory
    re-keys its data by key (format kvstore-2), moves each value into its version (format
    kvstore-3: values kept once) and keeps every Paxos record as it was."""
    import tarfile

    fixture = ROOT / "tests" / "fixtures" / "long-key-in-log.tar.gz"
    with tarfile.open(fixture) as archive:
        archive.extract("n1/data.mdb", tmp_path, filter="data")
    store = NodeStore(tmp_path / "n1", map_size=16 << 20)
    before = {shard: store.load(shard) for shard in (1, 2, 3)}
    store.claim("local", 1, founding=True, cluster_id="local")
    with store.read(1) as engine:  # keys are the node's, stored by key
        assert [k for k, _ in engine.scan(b"", b"", 0)] == [b"apple", b"banana", b"cherry"]
    for shard, key in ((1, b"apple"), (2, b"banana"), (3, b"cherry")):
        with store.read(shard) as engine:
            assert engine.get(key).value == b"red-" + key  # type: ignore[union-attr]
            assert engine.meta_get(b"applied_slot") is not None  # its metadata kept
        assert store.load(shard) == before[shard]
    store.close()
    reopened = NodeStore(tmp_path / "n1", map_size=16 << 20)
    reopened.claim("local", 1, founding=True, cluster_id="local")  # nothing to re-key now
    with reopened.read(1) as engine:
        assert engine.get(b"apple").value == b"red-apple"  # type: ignore[union-attr]
    reopened.close()
