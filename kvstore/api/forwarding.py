"""Asking the nodes in turn: the one loop every forwarding service shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc

from kvstore.channels import CHANNEL_OPTIONS

R = TypeVar("R")
S = TypeVar("S")
TRY_NEXT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class NoneAnsweredError(Exception):
    """Every node asked was unreachable or too slow."""


async def ask_in_turn(
    nodes: Iterable[int],
    addresses: dict[int, str],
    stub_class: Callable[[grpc.aio.Channel], S],
    call: Callable[[S], Awaitable[R]],
    context: Any,
) -> R:
    """``call`` at each of ``nodes`` (each once, in order) until one answers. UNAVAILABLE
    and DEADLINE_EXCEEDED try the next; any other refusal ends the caller's RPC with it."""
    for node in dict.fromkeys(nodes):
        if node not in addresses:
            continue  # a replica on a node never known here (removed before it was told)
        try:
            async with grpc.aio.insecure_channel(addresses[node], options=CHANNEL_OPTIONS) as ch:
                return await call(stub_class(ch))
        except grpc.aio.AioRpcError as err:
            if err.code() not in TRY_NEXT:
                await context.abort(err.code(), err.details() or "")
    raise NoneAnsweredError
