"""``kvstore lock`` and ``kvstore elect``: locks and elections from the command line.

Rules:
- ``kvstore lock NAME -- CMD ARGS…`` waits for the lock, runs CMD holding it with the
  fencing token in ``KVSTORE_LOCK_TOKEN``, and releases it when CMD exits; its exit code is
  CMD's. If the lock's lease is lost meanwhile, CMD is terminated (exit 1): it may no
  longer hold the lock.
- ``kvstore elect NAME PROPOSAL`` campaigns, prints a line once elected, and leads until
  Ctrl-C (then resigns). ``kvstore elect --listen NAME`` prints each new leader's proposal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from kvstore import event_loop
from kvstore.cli_args import UserError, arg_bytes
from kvstore.cli_support import endpoint_list, text
from kvstore.client import AsyncClient, KvError


def _name(args: argparse.Namespace) -> bytes:
    name = arg_bytes(args.name)
    if not name:
        raise UserError("NAME must not be empty")
    return name


def lock(args: argparse.Namespace) -> int:
    _name(args)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UserError("give the command to run holding the lock: kvstore lock NAME -- CMD")
    return _run(_lock(args, endpoint_list(args), command))


async def _lock(args: argparse.Namespace, endpoints: list[str], command: list[str]) -> int:
    async with (
        AsyncClient(endpoints, timeout_s=args.timeout) as client,
        client.lock(arg_bytes(args.name), ttl_s=args.ttl) as token,
    ):
        env = {**os.environ, "KVSTORE_LOCK_TOKEN": str(int(token))}
        try:
            child = await asyncio.create_subprocess_exec(*command, env=env)
        except OSError as exc:
            raise UserError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
        exited = asyncio.create_task(child.wait())
        lost = asyncio.create_task(token.lost.wait())
        await asyncio.wait({exited, lost}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            print("kvstore lock: the lock's lease was lost; stopping the command", file=sys.stderr)
            child.terminate()
            await exited
            return 1
        lost.cancel()
        return exited.result()


def elect(args: argparse.Namespace) -> int:
    _name(args)
    if args.listen:
        if args.proposal is not None:
            raise UserError("--listen takes no PROPOSAL")
        return _run(_listen(args, endpoint_list(args)))
    if args.proposal is None:
        raise UserError("give a PROPOSAL to campaign with (or --listen to watch the leader)")
    return _run(_campaign(args, endpoint_list(args)))


async def _campaign(args: argparse.Namespace, endpoints: list[str]) -> int:
    async with AsyncClient(endpoints, timeout_s=args.timeout) as client:
        election = client.election(arg_bytes(args.name), ttl_s=args.ttl)
        try:
            token = await election.campaign(arg_bytes(args.proposal))
            _print(
                args,
                {"leader": args.proposal, "token": int(token)},
                f"elected: {args.proposal} (token {int(token)})",
            )
            while not election.lost:
                await asyncio.sleep(0.2)
            print("kvstore elect: the candidacy's lease was lost", file=sys.stderr)
            return 1
        finally:
            await election.resign()


async def _listen(args: argparse.Namespace, endpoints: list[str]) -> int:
    async with AsyncClient(endpoints, timeout_s=args.timeout) as client:
        async for leader in client.election(arg_bytes(args.name)).observe():
            shown = None if leader is None else text(leader)
            _print(args, {"leader": shown}, shown if shown is not None else "(no leader)")
    return 0


def _print(args: argparse.Namespace, row: dict[str, object], line: str) -> None:
    print(json.dumps(row) if args.output == "json" else line, flush=True)


def _run(main: object) -> int:
    try:
        return event_loop.run_in_cli_loop(main)  # type: ignore[arg-type]
    except KvError as exc:
        raise UserError(f"{exc.code.name}: {exc.details}") from None
