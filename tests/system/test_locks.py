"""Real processes: locks and elections. Two ``kvstore lock L -- CMD`` started together never
overlap and see strictly increasing fencing tokens; a holder whose lease ended (a long
pause) has its fenced write refused once the next holder has the lock; an election hands
leadership on when its leader resigns, and an observer sees each leader in turn."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from kvstore import AsyncClient
from kvstore.local_cluster import LocalCluster
from tests.system.test_local_cluster import free_base_port

SCRIPT = (
    "echo start $KVSTORE_LOCK_TOKEN $(date +%s.%N); sleep 1;"
    " echo end $KVSTORE_LOCK_TOKEN $(date +%s.%N)"
)


async def ready(local: LocalCluster) -> None:
    async with AsyncClient(local.endpoints, timeout_s=20) as kv:
        await kv.put("ready", "1")


def test_two_cli_locks_never_overlap_and_tokens_increase(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    try:
        asyncio.run(ready(local))
        command = [sys.executable, "-m", "kvstore", "lock", "L"]
        command += ["--endpoints", ",".join(local.endpoints), "--", "sh", "-c", SCRIPT]
        procs = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        spans = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            start, end = out.split("\n")[:2]
            _, token, began = start.split()
            _, token_again, ended = end.split()
            assert token == token_again
            spans.append((float(began), float(ended), int(token)))
        spans.sort()
        (_, first_end, first_token), (second_start, _, second_token) = spans
        assert first_end <= second_start, spans  # never both inside
        assert second_token > first_token, spans
    finally:
        local.stop_all()


def test_a_holder_whose_lease_ended_is_fenced_and_spares_the_next_s_key(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            held = kv.lock("fence")
            old = await held.__aenter__()
            # The old holder pauses; meanwhile its lease ends (revoked here, as an
            # expiry would) and another client takes the lock.
            await kv.leases.revoke(old.lease_id)
            async with kv.lock("fence") as new:
                assert new > old and new.key == old.key == b"fence"
                # The old holder wakes and releases: the new holder's key stays.
                await held.__aexit__(None, None, None)
                kept = await kv.get(new.key)
                assert kept is not None and kept.create_revision == new
                refused = await (
                    kv.txn()
                    .if_create_revision(old.key, "=", old)
                    .then_put("fence-data", "from the old holder")
                    .commit()
                )
                assert not refused.succeeded
                taken = await (
                    kv.txn()
                    .if_create_revision(new.key, "=", new)
                    .then_put("fence-data", "from the new holder")
                    .commit()
                )
                assert taken.succeeded
            got = await kv.get("fence-data")
            assert got is not None and got.value == b"from the new holder"

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


def test_an_election_hands_on_leadership_and_observers_see_each_leader(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            first, second = kv.election("E"), kv.election("E")
            seen: list[bytes | None] = []

            async def observe() -> None:
                async for leader in kv.election("E").observe():
                    seen.append(leader)
                    if leader == b"second":
                        return

            observer = asyncio.create_task(observe())
            token = await first.campaign("first")
            assert await first.leader() == b"first"
            campaign = asyncio.create_task(second.campaign("second"))
            await asyncio.sleep(0.5)
            assert not campaign.done()  # the first still leads
            await first.resign()
            assert await asyncio.wait_for(campaign, 10) > token
            assert await second.leader() == b"second"
            await asyncio.wait_for(observer, 10)
            assert [s for s in seen if s is not None] == [b"first", b"second"]
            await second.resign()

    try:
        asyncio.run(main())
    finally:
        local.stop_all()
