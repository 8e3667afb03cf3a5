"""``kvstore lease grant|keep-alive|revoke|list``: leases from the command line.

Rules:
- ``grant TTL`` (seconds) prints the new lease's id alone (``ID=$(kvstore lease grant 10)``
  works); ``-o json`` prints ``{"id": ..., "ttl_ms": ...}``.
- ``keep-alive ID`` keeps the lease alive until Ctrl-C, a line per keep-alive; it fails
  (exit 1) once the lease is gone.
- ``revoke ID`` ends the lease: its keys are deleted before it returns.
- ``list``: every live lease with its TTL and the time it has left at least.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kvstore import event_loop
from kvstore.cli_args import UserError
from kvstore.cli_support import endpoint_list, show, table
from kvstore.client import AsyncClient, KvError
from kvstore.leasing import LeaseCalls

T = TypeVar("T")


def grant(args: argparse.Namespace) -> int:
    ttl_ms = round(args.ttl * 1000)
    lease_id = _run(args, lambda leases: leases.grant(ttl_ms, args.id))
    if args.output == "json":
        print(json.dumps({"id": lease_id, "ttl_ms": ttl_ms}))
    else:
        print(lease_id)
    return 0


def revoke(args: argparse.Namespace) -> int:
    _run(args, lambda leases: leases.revoke(args.id))
    show(args, {"id": args.id, "revoked": True}, ["id", "revoked"])
    return 0


def listing(args: argparse.Namespace) -> int:
    async def rows(leases: LeaseCalls) -> list[dict[str, int]]:
        out = []
        for lease_id in await leases.list():
            try:
                state = await leases.time_to_live(lease_id)
            except KvError:
                continue  # ended meanwhile
            out.append({"id": lease_id, "ttl_ms": state.ttl_ms, "remaining_ms": state.remaining_ms})
        return out

    found = _run(args, rows)
    if args.output == "json":
        for row in found:
            print(json.dumps(row))
    else:
        columns = ["id", "ttl_ms", "remaining_ms"]
        table(columns, [[row[c] for c in columns] for row in found])
    return 0


def keep_alive(args: argparse.Namespace) -> int:
    async def forever(leases: LeaseCalls) -> None:
        while True:
            sent = time.monotonic()
            ttl_ms = await leases.keep_alive_once(args.id)
            row = {"id": args.id, "ttl_ms": ttl_ms}
            if args.output == "json":
                print(json.dumps(row), flush=True)
            else:
                print(f"lease {args.id} kept alive: {ttl_ms / 1000:g} s from now", flush=True)
            await asyncio.sleep(max(0.0, sent + ttl_ms / 3000 - time.monotonic()))

    _run(args, forever)
    return 0


def _run(args: argparse.Namespace, call: Callable[[LeaseCalls], Awaitable[T]]) -> T:
    endpoints = endpoint_list(args)  # outside the loop: with --dc it runs one of its own

    async def main() -> T:
        async with AsyncClient(endpoints, timeout_s=args.timeout) as client:
            return await call(client.leases)

    try:
        return event_loop.run_in_cli_loop(main())
    except KvError as exc:
        raise UserError(f"{exc.code.name}: {exc.details}") from None
