"""``kvstore put | get | del | scan | txn``: one KV call each, tried on each endpoint in turn.

Rules:
- Keys and values are the exact bytes of argv (``cli_args.arg_bytes``); ``put KEY -`` reads
  the value from stdin and ``put KEY --file PATH`` from a file, whole and binary-safe, up to
  ``VALUE_READ_BYTES_MAX`` (the server refuses what is over its own ``value_bytes_max``).
- ``get --output-file PATH`` writes the value's exact bytes (``-``: to stdout, alone).
- Output follows ``cli_support``'s rule for bytes: UTF-8 text with ``\\xNN`` escapes, plus a
  ``*_base64`` JSON field when the bytes are not UTF-8.
- Only a write's failure says "outcome unknown", and only when an attempt may have reached a
  node: a read changes nothing, and a request that never connected was never sent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from cluster.keys import prefix_end
from kvstore import compacted, event_loop
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.cli_args import UserError, arg_bytes
from kvstore.cli_support import bytes_fields, endpoint_list, kv_row, show, table, text
from kvstore.request_ids import new_client_id
from kvstore.v1 import kv_pb2, kv_pb2_grpc

# The most `put` reads from stdin or a file: far above the default 1 MiB value limit (a
# cluster may raise it), low enough that a wrong file fails here, not in memory.
VALUE_READ_BYTES_MAX = 64 << 20
UINT64_MAX = (1 << 64) - 1
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def call(args: argparse.Namespace, method: str, request: Any, *, write: bool) -> Any:
    """``KV.<method>`` on the first endpoint that answers; a refusal ends the tries at once."""
    endpoints = endpoint_list(args)

    async def attempt() -> Any:
        last: grpc.aio.AioRpcError | None = None
        maybe_sent = False
        for endpoint in endpoints:
            async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
                stub = kv_pb2_grpc.KVStub(channel)
                try:
                    return await getattr(stub, method)(
                        request, timeout=args.timeout, wait_for_ready=False
                    )
                except grpc.aio.AioRpcError as err:
                    last = err
                    if err.code() not in RETRYABLE:
                        break
                    # gRPC says "failed to connect" only when the request never left.
                    maybe_sent |= "failed to connect" not in (err.details() or "")
        assert last is not None
        details = last.details() or ""
        if (compacted_at := compacted.compacted_of(last)) is not None:
            details += f" (read at --rev {compacted_at} or later)"
        if write and maybe_sent and last.code() in RETRYABLE and "outcome" not in details:
            details += "; the write's outcome is unknown (a retry with the same request applies"
            details += " it at most once)"
        raise UserError(f"{last.code().name}: {details}")

    return event_loop.run_in_cli_loop(attempt())


# ---------------------------------------------------------------------- put / get / del


def put(args: argparse.Namespace) -> int:
    key = arg_bytes(args.key)
    value = _value(args)
    request_id = kv_pb2.RequestId(client_id=new_client_id(), seq=1)
    request = kv_pb2.PutRequest(key=key, value=value, request_id=request_id, lease=args.lease)
    response = call(args, "Put", request, write=True)  # a retry on another node applies once
    row = {
        **bytes_fields("key", key),
        "revision": response.header.revision,
        "shard": response.header.shard_id,
    }
    show(args, row, ["key", "shard", "revision"])
    return 0


def _value(args: argparse.Namespace) -> bytes:
    """Exactly one of VALUE, ``-`` (stdin) and ``--file PATH``."""
    if (args.value is None) == (args.file is None):
        raise UserError("put takes exactly one of VALUE, - (stdin) and --file PATH")
    if args.file is not None:
        try:
            with Path(args.file).open("rb") as f:
                return _read_all(f, str(args.file))
        except OSError as exc:
            raise UserError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    if args.value != "-":
        return arg_bytes(args.value)
    stdin = getattr(sys.stdin, "buffer", None)
    if stdin is None:
        raise UserError("stdin cannot be read as bytes here")
    try:
        return _read_all(stdin, "stdin")
    except OSError as exc:
        raise UserError(f"cannot read stdin: {exc.strerror or exc}") from None


def _read_all(f: BinaryIO, name: str) -> bytes:
    data = f.read(VALUE_READ_BYTES_MAX + 1)
    if len(data) > VALUE_READ_BYTES_MAX:
        raise UserError(f"{name} holds more than {VALUE_READ_BYTES_MAX} bytes: too large a value")
    return data


def get(args: argparse.Namespace) -> int:
    key = arg_bytes(args.key)
    stale = args.stale or args.max_staleness_ms > 0
    request = kv_pb2.GetRequest(
        key=key,
        consistency=kv_pb2.CONSISTENCY_STALE if stale else kv_pb2.CONSISTENCY_LINEARIZABLE,
        max_staleness_ms=args.max_staleness_ms,
        revision=args.rev,
    )
    response = call(args, "Get", request, write=False)
    header = response.header
    served = {
        "served_by_node": header.served_by_node_id,
        "served_by_dc": header.served_by_dc,
        "staleness_bound_ms": header.staleness_bound_ms,  # -1: a plain stale read, no bound
    }
    if not response.found:
        if args.output == "json":
            print(json.dumps({**bytes_fields("key", key), "found": False, **served}))
        else:
            print(f"{text(key)}: not found", file=sys.stderr)
        return 1
    if args.output_file is not None:
        _write_value(args.output_file, response.kv.value)
        if args.output_file == "-":
            return 0  # stdout holds the value alone
    row = {**kv_row(response.kv), **served}
    columns = ["key", "value", "version", "mod_revision"]
    if args.output_file is not None:
        del row["value"]
        row.pop("value_base64", None)
        row |= {"value_bytes": len(response.kv.value), "output_file": args.output_file}
        columns = ["key", "value_bytes", "output_file", "version", "mod_revision"]
    if stale:
        columns += ["served_by_dc", "staleness_bound_ms"]
        if args.output != "json" and header.staleness_bound_ms < 0:
            row["staleness_bound_ms"] = "-1 (no bound asked)"
    show(args, row, columns)
    return 0


def _write_value(path: str, value: bytes) -> None:
    if path == "-":
        stdout = getattr(sys.stdout, "buffer", None)
        if stdout is None:
            raise UserError("stdout cannot take bytes here: give --output-file a path")
        stdout.write(value)
        stdout.flush()
        return
    try:
        Path(path).write_bytes(value)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def delete(args: argparse.Namespace) -> int:
    key = arg_bytes(args.key)
    request_id = kv_pb2.RequestId(client_id=new_client_id(), seq=1)
    request = kv_pb2.DeleteRequest(key=key, request_id=request_id)
    response = call(args, "Delete", request, write=True)  # a retry on another node applies once
    row = {
        **bytes_fields("key", key),
        "deleted": response.deleted,
        "revision": response.header.revision,
    }
    show(args, row, ["key", "deleted", "revision"])
    return 0


# ---------------------------------------------------------------------- scan


def scan(args: argparse.Namespace) -> int:
    if args.prefix and (args.start or args.end):
        raise UserError("--prefix names the whole range: give it, or --start/--end, not both")
    if args.prefix:
        start = arg_bytes(args.prefix)
        end = prefix_end(start)
    else:
        start, end = arg_bytes(args.start), arg_bytes(args.end)
    request = kv_pb2.ScanRequest(start=start, end=end, limit=args.limit, revision=args.rev)
    response = call(args, "Scan", request, write=False)
    rows = [kv_row(kv) for kv in response.kvs]
    if args.output == "json":
        print(json.dumps({"kvs": rows, "more": response.more}))
    else:
        table(
            ["key", "value", "version", "mod_revision"],
            [[r["key"], r["value"], r["version"], r["mod_revision"]] for r in rows],
        )
        if response.more:
            print(f"(more keys after '{rows[-1]['key']}'; raise --limit)")
    return 0


# ---------------------------------------------------------------------- txn

_TARGETS = {
    "value": kv_pb2.Compare.TARGET_VALUE,
    "version": kv_pb2.Compare.TARGET_VERSION,
    "create": kv_pb2.Compare.TARGET_CREATE_REVISION,
    "mod": kv_pb2.Compare.TARGET_MOD_REVISION,
}
_OPS = {
    "=": kv_pb2.Compare.OP_EQUAL,
    "!=": kv_pb2.Compare.OP_NOT_EQUAL,
    "<": kv_pb2.Compare.OP_LESS,
    ">": kv_pb2.Compare.OP_GREATER,
}


def parse_compare(spec: str) -> kv_pb2.Compare:
    parts = spec.split(maxsplit=2)
    if len(parts) != 3 or parts[1] not in _OPS:
        raise UserError(f"bad compare {text(arg_bytes(spec))!r}: want e.g. 'value(k) = v'")
    subject, op, operand = parts
    target = "value"
    if "(" in subject and subject.endswith(")"):
        target, _, key = subject[:-1].partition("(")
    else:
        key = subject
    if target not in _TARGETS:
        raise UserError(
            f"bad compare target {text(arg_bytes(target))!r}: one of {', '.join(_TARGETS)}"
        )
    compare = kv_pb2.Compare(key=arg_bytes(key), target=_TARGETS[target], op=_OPS[op])
    if target == "value":
        compare.value = arg_bytes(operand)
    elif re.fullmatch(r"[0-9]{1,20}", operand) and int(operand) <= UINT64_MAX:
        compare.number = int(operand)
    else:
        raise UserError(
            f"{target}({text(arg_bytes(key))}) compares with a number within 0..2**64-1,"
            f" not {text(arg_bytes(operand))!r}"
        )
    return compare


def parse_op(spec: str) -> kv_pb2.RequestOp:
    parts = spec.split(maxsplit=2)
    keys = [arg_bytes(p) for p in parts[1:]]
    if parts[:1] == ["put"] and len(parts) == 3:
        return kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=keys[0], value=keys[1]))
    if parts[:1] == ["del"] and len(parts) == 2:
        return kv_pb2.RequestOp(delete=kv_pb2.DeleteRequest(key=keys[0]))
    if parts[:1] == ["get"] and len(parts) == 2:
        return kv_pb2.RequestOp(get=kv_pb2.GetRequest(key=keys[0]))
    raise UserError(f"bad op {text(arg_bytes(spec))!r}: want 'put K V', 'del K' or 'get K'")


def txn(args: argparse.Namespace) -> int:
    request = kv_pb2.TxnRequest(
        compare=[parse_compare(c) for c in args.compares],
        success=[parse_op(o) for o in args.success],
        failure=[parse_op(o) for o in args.failure],
        request_id=kv_pb2.RequestId(client_id=new_client_id(), seq=1),
    )
    response = call(args, "Txn", request, write=True)
    results: list[dict[str, Any]] = []
    for op in response.responses:
        kind = op.WhichOneof("response")
        if kind == "get":
            results.append({"get": kv_row(op.get.kv) if op.get.found else None})
        elif kind == "put":
            results.append({"put": {"revision": op.put.header.revision}})
        else:
            results.append({"del": {"deleted": op.delete.deleted}})
    row = {
        "succeeded": response.succeeded,
        "revision": response.header.revision,
        "results": results,
    }
    if args.output == "json":
        print(json.dumps(row))
    else:
        outcome = "SUCCESS" if response.succeeded else "FAILURE"
        print(outcome, f"(revision {response.header.revision})")
        for result in results:
            print(" ", json.dumps(result))
    return 0 if response.succeeded else 1
