"""What every ``kvstore`` subcommand shares: endpoints, output formats, errors, node views."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

import grpc

from kvstore import event_loop
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.v1 import admin_pb2, admin_pb2_grpc


class UserError(Exception):
    """Something the user can fix; printed as one line."""


def add_endpoints(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--endpoints",
        default=os.environ.get("KVSTORE_ENDPOINTS", "127.0.1.1:7001,127.0.2.1:7002,127.0.3.1:7003"),
        help="host:port,... (default: KVSTORE_ENDPOINTS, else the kvstore up defaults)",
    )
    cmd.add_argument("--timeout", type=float, default=10.0)
    cmd.add_argument(
        "--dc",
        default=os.environ.get("KVSTORE_DC") or None,
        help="the client's datacenter: use gateways there first (default: KVSTORE_DC)",
    )


def add_output(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")


def node_views(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """Every endpoint's own view (``None`` for an endpoint that does not answer)."""

    async def ask(endpoint: str) -> tuple[str, Any]:
        async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
            try:
                view = await admin_pb2_grpc.AdminStub(channel).NodeStatus(
                    admin_pb2.NodeStatusRequest(), timeout=min(args.timeout, 3.0)
                )
            except grpc.aio.AioRpcError:
                return endpoint, None
            return endpoint, view

    endpoints = endpoint_list(args)  # outside the loop below: with --dc it runs one itself

    async def everyone() -> list[tuple[str, Any]]:
        return list(await asyncio.gather(*(ask(e) for e in endpoints)))

    return event_loop.run_in_cli_loop(everyone())


def endpoint_list(args: argparse.Namespace) -> list[str]:
    """The endpoints to try, in order: with ``--dc``, that datacenter's nodes first."""
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not endpoints:
        raise UserError("no endpoints: pass --endpoints host:port,... or set KVSTORE_ENDPOINTS")
    dc = getattr(args, "dc", None)
    if dc:
        try:
            nodes = list(
                event_loop.run_in_cli_loop(
                    describe_cluster(endpoints, min(args.timeout, 3.0))
                ).nodes
            )
        except UserError:
            nodes = []  # nobody answered: try the endpoints as given
        if nodes and dc not in {n.dc for n in nodes}:
            raise UserError(f"--dc {dc}: no such datacenter in the cluster")
        local = [n.address for n in nodes if n.dc == dc]
        endpoints = list(dict.fromkeys([*local, *endpoints]))
    return endpoints


async def describe_cluster(
    endpoints: list[str], timeout: float
) -> admin_pb2.DescribeClusterResponse:
    """``Admin.DescribeCluster`` from the first endpoint that answers (else ``UserError``)."""
    last = "no endpoint answered"
    for endpoint in endpoints:
        async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
            try:
                view: admin_pb2.DescribeClusterResponse = await admin_pb2_grpc.AdminStub(
                    channel
                ).DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=timeout)
                return view
            except grpc.aio.AioRpcError as err:
                last = f"{endpoint}: {err.code().name}"
    raise UserError(last)


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
