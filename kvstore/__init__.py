"""kvstore: a multi-datacenter, range-sharded key-value store on Multi-Paxos.

``kvstore.Client`` (blocking) and ``kvstore.AsyncClient`` are the Python client library;
``Client.txn()`` builds a typed transaction (``kvstore.txn``); ``AsyncClient.lease``,
``AsyncClient.lock`` and ``Election`` are leases, locks and elections (``kvstore.leasing``,
``kvstore.concurrency``).

The names below are imported on first use (PEP 562): ``kvstore get`` and every other
command-line call import ``kvstore.__main__`` through this package, and must not pay for
the client library's import unless they use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvstore.client import AsyncClient, Client, KvError
    from kvstore.concurrency import Election, FencingToken, LockLostError
    from kvstore.txn import Txn, TxnDelete, TxnGet, TxnPut, TxnResult

__all__ = [
    "AsyncClient",
    "Client",
    "Election",
    "FencingToken",
    "KvError",
    "LockLostError",
    "Txn",
    "TxnDelete",
    "TxnGet",
    "TxnPut",
    "TxnResult",
]

_HOME = {
    "AsyncClient": "kvstore.client",
    "Client": "kvstore.client",
    "KvError": "kvstore.client",
    "Election": "kvstore.concurrency",
    "FencingToken": "kvstore.concurrency",
    "LockLostError": "kvstore.concurrency",
    "Txn": "kvstore.txn",
    "TxnDelete": "kvstore.txn",
    "TxnGet": "kvstore.txn",
    "TxnPut": "kvstore.txn",
    "TxnResult": "kvstore.txn",
}


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module 'kvstore' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
