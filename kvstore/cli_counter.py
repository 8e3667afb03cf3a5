"""``kvstore counter take|get``: counter ranges from the command line.

Rules:
- ``take NAME --count N`` takes N ids of counter NAME and prints ``START END`` (the ids
  ``[START, END)``), so ``read start end < <(kvstore counter take ids --count 100)`` works;
  ``-o json`` prints ``{"name", "start", "end"}``.
- ``get NAME`` prints the counter's next id alone; ``-o json`` ``{"name", "value"}``.
- Bad names and counts are refused before anything is sent (the service checks them too).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cluster.counter_keys import NAME_BYTES_MAX, valid_name
from kvstore import event_loop
from kvstore.cli_args import UserError
from kvstore.cli_support import endpoint_list
from kvstore.client import AsyncClient, KvError

T = TypeVar("T")


def take(args: argparse.Namespace) -> int:
    start, end = _run(args, lambda client: client.take_range(args.name, args.count))
    if args.output == "json":
        print(json.dumps({"name": args.name, "start": start, "end": end}))
    else:
        print(start, end)
    return 0


def get(args: argparse.Namespace) -> int:
    value = _run(args, lambda client: client.counter(args.name))
    if args.output == "json":
        print(json.dumps({"name": args.name, "value": value}))
    else:
        print(value)
    return 0


def _run(args: argparse.Namespace, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
    if not valid_name(args.name.encode()):
        rule = f"1..{NAME_BYTES_MAX} bytes of [A-Za-z0-9._/-]"
        shown = (
            args.name if len(args.name) <= 60 else f"{args.name[:60]}... ({len(args.name)} chars)"
        )
        raise UserError(f"a counter's name is {rule}, not {shown!r}")
    endpoints = endpoint_list(args)  # outside the loop: with --dc it runs one of its own

    async def main() -> T:
        async with AsyncClient(endpoints, timeout_s=args.timeout) as client:
            return await call(client)

    try:
        return event_loop.run_in_cli_loop(main())
    except KvError as exc:
        raise UserError(f"{exc.code.name}: {exc.details}") from None
