"""Storage adapter: the node's LMDB environment (the only place that imports ``lmdb``)."""

from kvstore.storage.lmdb_store import NodeStore, ShardEngine, StoreIdentityError, WriteBatch

__all__ = ["NodeStore", "ShardEngine", "StoreIdentityError", "WriteBatch"]
