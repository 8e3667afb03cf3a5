"""What the runtime needs from storage, as Protocols (``kvstore.storage.NodeStore`` fits).

The runtime never imports a concrete adapter; the composition root (``kvstore.server``)
passes one in. That keeps the API, network and storage adapters independent of each other.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from kvstore.model import Engine
from paxos import DurableRecord, DurableState


class WriteBatchPort(Protocol):
    def persist(self, shard_id: int, record: DurableRecord) -> None: ...

    def engine(self, shard_id: int) -> Engine: ...


class StorePort(Protocol):
    @property
    def founding(self) -> bool:
        """The directory was made for the cluster and never lost its state."""
        ...

    def load(self, shard_id: int) -> DurableState: ...

    def read(self, shard_id: int) -> AbstractContextManager[Engine]: ...

    def ranges(self) -> dict[int, bytes]: ...

    def write(self) -> AbstractContextManager[WriteBatchPort]: ...
