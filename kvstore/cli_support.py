"""What the client subcommands share: endpoints, node views, output, showing bytes.

Showing keys and values (the one rule, also in the README): bytes are shown as UTF-8 text,
and any byte that is not part of valid UTF-8 as a ``\\xNN`` escape (never U+FFFD). In JSON,
a key or value that is not valid UTF-8 also comes as ``key_base64`` / ``value_base64``: its
exact bytes; where that field is absent, ``key`` / ``value`` is exact.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from kvstore import event_loop
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.cli_args import UserError
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2

T = TypeVar("T")
NODE_STATUS_S_MAX = 3.0  # one node's answer to `status`: a slow node must not stall the rest


def node_views(args: argparse.Namespace, at: list[str] | None = None) -> list[tuple[str, Any]]:
    """Every endpoint's own view (``None`` for an endpoint that does not answer); ``at``:
    these addresses instead of the endpoints given."""

    async def ask(endpoint: str) -> tuple[str, Any]:
        async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
            try:
                view = await admin_pb2_grpc.AdminStub(channel).NodeStatus(
                    admin_pb2.NodeStatusRequest(), timeout=min(args.timeout, NODE_STATUS_S_MAX)
                )
            except grpc.aio.AioRpcError:
                return endpoint, None
            return endpoint, view

    # Outside the loop below: with --dc it runs one itself.
    endpoints = at if at is not None else endpoint_list(args)

    async def everyone() -> list[tuple[str, Any]]:
        return list(await asyncio.gather(*(ask(e) for e in endpoints)))

    return event_loop.run_in_cli_loop(everyone())


def endpoint_list(args: argparse.Namespace) -> list[str]:
    """The endpoints to try, in order: with ``--dc``, that datacenter's nodes first."""
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not endpoints:
        raise UserError("no endpoints: pass --endpoints host:port,... or set KVSTORE_ENDPOINTS")
    for endpoint in endpoints:
        check_endpoint(endpoint)
    dc = getattr(args, "dc", None)
    if dc:
        try:
            nodes = list(
                event_loop.run_in_cli_loop(
                    describe_cluster(endpoints, min(args.timeout, NODE_STATUS_S_MAX))
                ).nodes
            )
        except UserError:
            nodes = []  # nobody answered: try the endpoints as given
        if nodes and dc not in {n.dc for n in nodes}:
            raise UserError(f"--dc {dc}: no such datacenter in the cluster")
        local = [n.address for n in nodes if n.dc == dc]
        endpoints = list(dict.fromkeys([*local, *endpoints]))
    return endpoints


def check_endpoint(endpoint: str) -> None:
    """``host:port`` with a port in 1..65535 (gRPC would only fail later, less clearly)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit():
        raise UserError(f"endpoint {endpoint!r} is not host:port")
    if not 1 <= int(port) <= 65535:
        raise UserError(f"endpoint {endpoint!r}: port must be within 1..65535")


async def describe_cluster(
    endpoints: list[str], timeout: float
) -> admin_pb2.DescribeClusterResponse:
    """``Admin.DescribeCluster`` from the first endpoint that answers (else ``UserError``)."""
    failures = []
    for endpoint in endpoints:
        async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
            try:
                view: admin_pb2.DescribeClusterResponse = await admin_pb2_grpc.AdminStub(
                    channel
                ).DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=timeout)
                return view
            except grpc.aio.AioRpcError as err:
                failures.append(f"{endpoint}: {err.code().name}")
    raise UserError(f"no endpoint answered ({', '.join(failures)})")


async def ask_any(
    endpoints: list[str], call: Callable[[admin_pb2_grpc.AdminStub], Awaitable[T]]
) -> T:
    """``call`` (an ``Admin`` request the node finds the leader for) at each endpoint in
    turn until one answers: UNAVAILABLE and DEADLINE_EXCEEDED try the next; any other
    refusal is the user's one line, as is the last failure if none answered."""
    last = "no endpoint answered"
    for endpoint in endpoints:
        async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
            try:
                return await call(admin_pb2_grpc.AdminStub(channel))
            except grpc.aio.AioRpcError as err:
                if err.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise UserError(f"{err.code().name}: {err.details()}") from None
                last = f"{endpoint}: {err.code().name}: {err.details()}"
    raise UserError(last)


# ---------------------------------------------------------------------- output


def show(args: argparse.Namespace, row: dict[str, Any], columns: list[str]) -> None:
    if args.output == "json":
        print(json.dumps(row))
    else:
        table(columns, [[row[c] for c in columns]])


def table(columns: list[str], rows: list[list[Any]]) -> None:
    cells = [columns, *[[str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def text(data: bytes) -> str:
    """``data`` for people: UTF-8, with ``\\xNN`` for each byte that is not (module rule)."""
    return data.decode("utf-8", errors="backslashreplace")


def bytes_fields(name: str, data: bytes) -> dict[str, str]:
    """``{name: text}``, plus ``{name_base64: exact}`` when ``data`` is not valid UTF-8."""
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {name: text(data), f"{name}_base64": base64.b64encode(data).decode("ascii")}


def kv_row(kv: kv_pb2.KeyValue) -> dict[str, Any]:
    return {
        **bytes_fields("key", kv.key),
        **bytes_fields("value", kv.value),
        "version": kv.version,
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
    }


def range_text(start: bytes, end: bytes) -> str:
    """``['a', 'b')``; an empty end is the end of the key space, ``∞``."""
    shown_end = f"'{text(end)}'" if end else "∞"
    return f"['{text(start)}', {shown_end})"
