"""kvstore: a multi-datacenter, range-sharded key-value store on Multi-Paxos.

``kvstore.Client`` (blocking) and ``kvstore.AsyncClient`` are the Python client library.
"""

from kvstore.client import AsyncClient, Client, KvError

__all__ = ["AsyncClient", "Client", "KvError"]
