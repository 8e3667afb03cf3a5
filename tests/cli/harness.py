"""Running ``kvstore`` in-process (``main(argv)``, output captured), and a fake node to talk to.

The fake node is a plain threaded gRPC server with scripted answers: the command line's own
behaviour (arguments, bytes, output, exit codes) is tested without a cluster.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from kvstore.__main__ import main
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.ports import free_base_port

DEAD = "127.0.0.1:1"  # nothing listens on port 1


@dataclass(frozen=True, slots=True)
class Ran:
    code: int
    out: str
    err: str


def run(*argv: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Ran:
    """``kvstore ARGV`` in this process; ``env`` replaces the KVSTORE_* variables."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: v for k, v in os.environ.items() if k.startswith("KVSTORE_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(env or {})
    saved_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse: --help (0) and its errors (2)
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = saved_stdin
        for k in [k for k in os.environ if k.startswith("KVSTORE_")]:
            del os.environ[k]
        os.environ.update(saved)
    return Ran(code, out.getvalue(), err.getvalue())


@dataclass
class Script:
    """What the fake node answers, and what it was asked."""

    value: bytes = b"red"
    found: bool = True
    staleness_bound_ms: int = 0
    hang_s: float = 0.0  # answer KV calls only after this long (a node that does not answer)
    requests: list[Any] = field(default_factory=list)


class _Kv(kv_pb2_grpc.KVServicer):
    def __init__(self, script: Script) -> None:
        self.s = script

    def _header(self) -> kv_pb2.ResponseHeader:
        return kv_pb2.ResponseHeader(
            shard_id=1,
            revision=7,
            served_by_node_id=1,
            served_by_dc="dc1",
            staleness_bound_ms=self.s.staleness_bound_ms,
        )

    def _wait(self, request: Any) -> None:
        self.s.requests.append(request)
        time.sleep(self.s.hang_s)

    def Put(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._wait(request)
        return kv_pb2.PutResponse(header=self._header())

    def Get(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._wait(request)
        kv = kv_pb2.KeyValue(key=request.key, value=self.s.value, version=1, mod_revision=7)
        return kv_pb2.GetResponse(found=self.s.found, kv=kv, header=self._header())

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._wait(request)
        return kv_pb2.DeleteResponse(deleted=True, header=self._header())

    def Scan(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._wait(request)
        kv = kv_pb2.KeyValue(key=b"k\xff", value=self.s.value, version=1, mod_revision=7)
        return kv_pb2.ScanResponse(kvs=[kv], header=self._header())

    def Txn(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._wait(request)
        return kv_pb2.TxnResponse(succeeded=True, header=self._header())


class _Admin(admin_pb2_grpc.AdminServicer):
    def __init__(self, address: str) -> None:
        self.address = address

    def DescribeCluster(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return admin_pb2.DescribeClusterResponse(
            cluster="fake",
            nodes=[
                admin_pb2.NodeInfo(node_id=n, dc=f"dc{n}", address=self.address) for n in (1, 2, 3)
            ],
            shards=[admin_pb2.ShardInfo(shard_id=1, replicas=[1, 2, 3], leader_node_id=1)],
        )

    def SplitRange(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.shard_id != 1:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no shard {request.shard_id}")
        at = request.at or b"m"
        return admin_pb2.SplitRangeResponse(
            left=admin_pb2.ShardInfo(shard_id=1, end=at, replicas=[1, 2, 3], generation=2),
            right=admin_pb2.ShardInfo(shard_id=4, start=at, replicas=[1, 2, 3], generation=2),
        )

    def MergeRange(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.shard_id != 1:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no shard {request.shard_id}")
        return admin_pb2.MergeRangeResponse(
            merged=admin_pb2.ShardInfo(shard_id=1, end=b"t", replicas=[1, 2, 3], generation=3)
        )

    def NodeStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        shard = admin_pb2.ShardReplicaStatus(shard_id=1, role="leader", promised_ballot="1.n1")
        return admin_pb2.NodeStatusResponse(
            node_id=1, dc="dc1", address=self.address, shards=[shard]
        )


class _Lease(kv_pb2_grpc.LeaseServicer):
    """Lease 7 exists (TTL 5 s); any other is unknown."""

    def Grant(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return kv_pb2.LeaseGrantResponse(id=request.id or 7, ttl_ms=request.ttl_ms)

    def Revoke(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.id != 7:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no lease {request.id}")
        return kv_pb2.LeaseRevokeResponse()

    def KeepAliveOnce(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.id != 7:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no lease {request.id}")
        return kv_pb2.LeaseKeepAliveResponse(id=7, ttl_ms=5000)

    def TimeToLive(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if request.id != 7:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no lease {request.id}")
        return kv_pb2.LeaseTimeToLiveResponse(id=7, ttl_ms=5000, remaining_ms=4200)

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return kv_pb2.LeaseListResponse(ids=[7])


@contextlib.contextmanager
def fake_node(script: Script | None = None) -> Iterator[tuple[str, Script]]:
    """A fake node on a free loopback port, for the block."""
    script = script or Script()
    port = free_base_port(lambda base: [f"127.0.0.1:{base}"])
    address = f"127.0.0.1:{port}"
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    kv_pb2_grpc.add_KVServicer_to_server(_Kv(script), server)
    admin_pb2_grpc.add_AdminServicer_to_server(_Admin(address), server)
    kv_pb2_grpc.add_LeaseServicer_to_server(_Lease(), server)
    server.add_insecure_port(address)
    server.start()
    try:
        yield address, script
    finally:
        server.stop(None)
