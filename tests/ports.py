"""Free ports for test clusters: below the ephemeral range, so no outgoing connection takes them."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

ATTEMPTS = 200


def free_base_port(addresses: Callable[[int], list[str]]) -> int:
    """A base port for which every ``host:port`` in ``addresses(base)`` can be bound now."""
    for _ in range(ATTEMPTS):
        base = random.randrange(10_000, 30_000)
        if all(_bindable(address) for address in addresses(base)):
            return base
    raise RuntimeError("no free port range for the cluster")


def _bindable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True
