"""``kvstore watch``: print every change to a range, one line each, until Ctrl-C.

Rules:
- ``kvstore watch PREFIX`` or ``--range START END``; from now, ``--rev N`` (each shard's
  changes from revision N on) or ``--from TOKEN`` (resume exactly after a token printed
  earlier); ``--prev-kv`` adds the value before each change.
- A line per event, written with its revision's other events at once (a Txn's changes
  together); the last line of a revision carries the token after it, so the last token
  printed is always a safe place to resume (``--from``): nothing missed, nothing repeated.
- ``-o json``: one JSON object per line: ``type``, ``key``, ``value``, ``revision``,
  ``shard``, ``token`` (plus ``prev_value`` with ``--prev-kv``; ``*_base64`` for bytes that
  are not UTF-8, as everywhere in the CLI).
"""

from __future__ import annotations

import argparse
import json
import sys

from kvstore import event_loop
from kvstore.cli_args import UserError, arg_bytes
from kvstore.cli_support import bytes_fields, endpoint_list, text
from kvstore.client import AsyncClient, KvError, WatchCompactedError, WatchEvent


def watch(args: argparse.Namespace) -> int:
    if args.range is not None and args.prefix is not None:
        raise UserError("give PREFIX or --range START END, not both")
    if args.rev and args.from_token:
        raise UserError("give --rev or --from, not both")
    if args.range is not None:
        start, end = arg_bytes(args.range[0]), arg_bytes(args.range[1])
        if end and end <= start:
            raise UserError("--range END must be after START (or empty: to the last key)")
        prefix, until = start, end or b"\x00"
    else:
        prefix, until = arg_bytes(args.prefix or ""), None
    begin: int | str | None = args.from_token or args.rev or None
    try:
        # The endpoints outside the loop: with --dc, finding them runs one of its own.
        return event_loop.run_in_cli_loop(_watch(args, endpoint_list(args), prefix, until, begin))
    except WatchCompactedError as exc:
        raise UserError(f"{exc}: watch from --rev {exc.compacted} or later (or from now)") from None
    except KvError as exc:
        raise UserError(f"{exc.code.name}: {exc.details}") from None


async def _watch(
    args: argparse.Namespace,
    endpoints: list[str],
    prefix: bytes,
    until: bytes | None,
    begin: int | str | None,
) -> int:
    async with AsyncClient(endpoints, timeout_s=args.timeout) as client:
        events = client.watch(
            prefix,
            end=None if until is None else (b"" if until == b"\x00" else until),
            start=begin,
            prev_kv=args.prev_kv,
        )
        lines: list[str] = []
        async for event in events:
            lines.append(_line(event, args))
            if event.token:  # the last event of its revision: out together
                sys.stdout.write("".join(lines))
                sys.stdout.flush()
                lines = []
    return 0


def _line(event: WatchEvent, args: argparse.Namespace) -> str:
    if args.output == "json":
        row: dict[str, object] = {
            "type": event.type,
            **bytes_fields("key", event.key),
            **bytes_fields("value", event.value),
            "revision": event.revision,
            "shard": event.shard,
            "token": event.token,
        }
        if args.prev_kv:
            if event.prev_value is None:
                row["prev_value"] = None
            else:
                row |= bytes_fields("prev_value", event.prev_value)
        return json.dumps(row) + "\n"
    parts = [event.type, text(event.key)]
    if event.type == "PUT":
        parts.append(text(event.value))
    if args.prev_kv and event.prev_value is not None:
        parts.append(f"(was {text(event.prev_value)})")
    parts += [f"revision={event.revision}", f"shard={event.shard}"]
    if event.token:
        parts.append(f"token={event.token}")
    return " ".join(parts) + "\n"
