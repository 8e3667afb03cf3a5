"""Storage adapter: the node's LMDB environment (the only place that imports ``lmdb``)."""

from kvstore.storage.lmdb_store import (
    Identity,
    NodeStore,
    ShardEngine,
    StoreFullError,
    StoreIdentityError,
    WriteBatch,
)

__all__ = [
    "Identity",
    "NodeStore",
    "ShardEngine",
    "StoreFullError",
    "StoreIdentityError",
    "WriteBatch",
]
