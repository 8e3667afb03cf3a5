"""Commands the KV state machine applies, their results, and their binary codec.

Rules:
- A command is what a leader proposes into a shard's log; it is fully validated at the edge
  before proposing, and decoded again (checksummed) when applied.
- ``RequestId(client_id, seq)`` makes retries exactly-once: ``client_id == 0`` opts out.
- A ``Txn`` compares (all must hold) and then runs ``success`` or ``failure`` ops atomically.
  "Absent" is ``version == 0``, as in etcd.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias, TypeVar

from cluster.config import KEY_BYTES_HARD_MAX, VALUE_BYTES_HARD_MAX
from cluster.ranges import RangeDescriptor
from kvstore.model.codec import CodecError, Reader, Writer
from kvstore.model.ranges import decode_descriptor, encode_descriptor

E = TypeVar("E", bound=IntEnum)

TXN_OPS_MAX = 128
TXN_COMPARES_MAX = 128


@dataclass(frozen=True, slots=True)
class RequestId:
    client_id: int  # 0: no session
    seq: int


NO_REQUEST = RequestId(0, 0)


class Target(IntEnum):
    VALUE = 0
    VERSION = 1
    CREATE_REVISION = 2
    MOD_REVISION = 3


class CompareOp(IntEnum):
    EQUAL = 0
    NOT_EQUAL = 1
    LESS = 2
    GREATER = 3


@dataclass(frozen=True, slots=True)
class Compare:
    key: bytes
    target: Target
    op: CompareOp
    value: bytes = b""  # for Target.VALUE
    number: int = 0  # for the numeric targets


class OpKind(IntEnum):
    GET = 0
    PUT = 1
    DELETE = 2


@dataclass(frozen=True, slots=True)
class TxnOp:
    kind: OpKind
    key: bytes
    value: bytes = b""
    lease: int = 0  # a PUT's: attach the key to this lease, as ``Put.lease``


@dataclass(frozen=True, slots=True)
class Put:
    request: RequestId
    key: bytes
    value: bytes
    lease: int = 0  # attach the key to this lease (0: none; a put without one detaches it)


@dataclass(frozen=True, slots=True)
class Delete:
    request: RequestId
    key: bytes


@dataclass(frozen=True, slots=True)
class Txn:
    request: RequestId
    compares: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...]


@dataclass(frozen=True, slots=True)
class SetPlacement:
    """Prefer ``leader_dc`` for this shard's leader ("": back to the configured default).

    Through the log, so every replica, and one restarted from disk or a snapshot, agrees."""

    request: RequestId
    leader_dc: str


@dataclass(frozen=True, slots=True)
class AddNode:
    """In the meta range: register a node that joins (``kvstore serve --join``) and give it
    an id no node has had, at least ``floor`` (above the configured nodes'). A node already
    registered at ``address`` in ``dc`` gets its id again (a join retried); at ``address`` in
    another datacenter it is refused. Outside the session table, as ``AllocateRangeId``."""

    request: RequestId
    floor: int
    dc: str
    address: str


@dataclass(frozen=True, slots=True)
class RemoveNode:
    """In the meta range: a node left the cluster for good (``kvstore node remove``): its
    entry goes, so a node joining later may use its address. Its id is never given again."""

    request: RequestId
    node_id: int


@dataclass(frozen=True, slots=True)
class Split:
    """Cut this shard at ``at``: the keys from ``at`` on go to a new shard ``new_range_id``
    (same replicas, this shard's data, revision, sessions and placement), at one slot of
    this shard's log, so every replica divides the same state. Outside the session table:
    a second split at the same point is refused as not inside the shard any more."""

    request: RequestId
    at: bytes
    new_range_id: int


@dataclass(frozen=True, slots=True)
class AllocateRangeId:
    """Hand out a range id no range has had: the range that starts the key space keeps the
    counter (it stays first through every split and merge), so ids come from one log.
    ``floor``: the lowest id it may hand out (above the configured shards'). Outside the
    session table: a retry takes another id, and an unused id is only a gap."""

    request: RequestId
    floor: int


@dataclass(frozen=True, slots=True)
class RecordRanges:
    """Tell the meta range of descriptors (a split's or merge's, or a new leader's view of
    its range). Applied by the meta range only; a join, not an overwrite: the directory is
    ``cluster.RangeMap`` of every descriptor it was ever told (where two overlap the higher
    generation wins; one that owns no key any more is dropped), so duplicates, retries and
    any order of arrival leave the same directory."""

    request: RequestId
    descriptors: tuple[RangeDescriptor, ...]


@dataclass(frozen=True, slots=True)
class Freeze:
    """The first half of a merge, in the right-hand shard's log: from this slot on the
    shard changes nothing (every command is ``OutOfRange``, retried elsewhere), so its state
    at this slot is final and the left neighbour may take it (``Merge``). Outside the
    session table; freezing a frozen shard answers with the first freeze's slot."""

    request: RequestId


@dataclass(frozen=True, slots=True)
class Merge:
    """The second half, in the left neighbour's log: take over ``right``'s keys, as
    ``right`` (frozen at ``frozen_slot`` of its own log) left them. Every replica applies it
    only once its own replica of ``right`` applied that slot (``kvstore.model.node``), so each
    finds the same state there; right's data stays where it is (stored by key)."""

    request: RequestId
    right: RangeDescriptor
    frozen_slot: int


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """End this shard's configuration (a stop sign, issue 21): from this slot on it changes
    nothing (every command is ``OutOfRange``, routed to the successor), and the successor
    ``successor_id`` (the same span, ``replicas``, generation + 1) starts from this shard's
    state at this slot, as a split's new shard does; a new Paxos instance, so no slot is
    ever decided under two configurations. Outside the session table: a second one on an
    ended shard answers with the first's outcome."""

    request: RequestId
    successor_id: int
    replicas: tuple[int, ...]
    # (node, its disk's incarnation) for every replica of the successor, as the proposer
    # knew them (0: unknown). That disk was there before the successor was: a replica whose
    # disk is still that one never took part in it in an earlier life, so it votes at once;
    # any other disk rejoins first (``kvstore.model.node.Node._votes_in_successor``).
    disks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Compact:
    """Forget the shard's history before ``revision``: reads and watches from an earlier
    revision are refused from this slot on, on every replica alike. Each one also removes
    the versions no read needs any more, for a bounded number of keys from where the last
    one stopped (a cursor in the shard's state); while ``HistoryCompacted.more`` says some
    are left, the leader proposes another (the same revision, or a later one). Outside the
    session table: a lower revision moves nothing back."""

    request: RequestId
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """In the meta range: a lease ``lease_id`` of ``ttl_ms`` (the id is the caller's pick,
    a random 63-bit number; one in use is ``Invalid``). Its expiry is the meta leader's to
    decide, in memory, never through the log; only its end is (``LeaseRevoke``)."""

    request: RequestId
    lease_id: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """In the meta range: the lease ends (revoked, or expired by the leader's clock). It is
    kept as ending until every range detached its keys (``LeasesEnded``)."""

    request: RequestId
    lease_id: int


@dataclass(frozen=True, slots=True)
class LeasesEnded:
    """In the meta range: every range detached these leases' keys; forget them."""

    request: RequestId
    lease_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LeaseTable:
    """In the meta range: read the lease table through the log. A new meta leader proposes
    it and takes the answer (every lease live as of that slot, and those ending) as the
    start of its deadlines, each a full TTL from then (``lease_clock``)."""

    request: RequestId


@dataclass(frozen=True, slots=True)
class DetachLease:
    """In a data range: the lease ended; delete its keys here at one revision, and refuse
    any later put attaching a key to it."""

    request: RequestId
    lease_id: int


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record of an event stream: what a producer sends (its key picks the partition
    when it names none; headers are free-form pairs)."""

    key: bytes
    value: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Append:
    """Append ``records`` to the partition whose row is ``row`` (``cluster.stream_keys``),
    at the next offsets, in order, at one revision. ``request`` is the producer's id and
    sequence: a retried batch appends once. ``appended_ms``: the proposer's clock, each
    record's timestamp (what retention by age reads)."""

    request: RequestId
    row: bytes
    records: tuple[StreamRecord, ...]
    appended_ms: int


@dataclass(frozen=True, slots=True)
class Trim:
    """Delete the partition's records below ``before`` (retention); ``TRIM_ALL`` deletes
    them all and its head too (its topic was deleted: a new one starts at offset 0)."""

    request: RequestId
    row: bytes
    before: int


TRIM_ALL = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Take:
    """Take ``count`` ids from the counter at ``key`` (``cluster.counter_keys``): the
    range ``[value, value + count)`` and the counter moved to its end, at one revision.
    Under the session table: a retried take answers the range it took, never a new one."""

    request: RequestId
    key: bytes
    count: int


Command: TypeAlias = (
    Append
    | Take
    | Trim
    | Put
    | Delete
    | Txn
    | SetPlacement
    | Split
    | AllocateRangeId
    | AddNode
    | RemoveNode
    | Freeze
    | Merge
    | Reconfigure
    | RecordRanges
    | Compact
    | LeaseGrant
    | LeaseRevoke
    | LeasesEnded
    | LeaseTable
    | DetachLease
)


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    prev: KeyValue | None  # None: there was nothing to delete

    @property
    def deleted(self) -> bool:
        return self.prev is not None


@dataclass(frozen=True, slots=True)
class GetResult:
    kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class TxnResult:
    revision: int
    succeeded: bool
    results: tuple[PutResult | DeleteResult | GetResult, ...]


@dataclass(frozen=True, slots=True)
class StaleRequest:
    """A retry older than the client's latest request: its result is no longer kept."""

    latest_seq: int


@dataclass(frozen=True, slots=True)
class Malformed:
    """The logged bytes were not a command (deterministic on every replica)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """A command the state machine refuses to execute, identically on every replica."""

    reason: str


@dataclass(frozen=True, slots=True)
class OutOfRange:
    """A key of the command is not in this shard any more (a split moved it): nothing was
    applied; the caller routes again by ``descriptor`` and the shards it split into
    (``successors``), and retries with the same request id."""

    descriptor: RangeDescriptor
    successors: tuple[RangeDescriptor, ...] = ()


@dataclass(frozen=True, slots=True)
class SplitDone:
    left: RangeDescriptor  # this shard, now
    right: RangeDescriptor  # the new shard
    slot: int  # of this shard's log


@dataclass(frozen=True, slots=True)
class Frozen:
    descriptor: RangeDescriptor  # the shard, final
    slot: int  # of its log: the state a merge takes


@dataclass(frozen=True, slots=True)
class MergeDone:
    merged: RangeDescriptor  # the left shard, now spanning both
    right: RangeDescriptor  # the shard it took over (frozen; its group is retired)
    slot: int  # of the left shard's log


@dataclass(frozen=True, slots=True)
class Reconfigured:
    ended: RangeDescriptor  # this shard, final
    successor: RangeDescriptor  # the next configuration of its span
    slot: int  # of this shard's log: the state the successor starts from
    disks: tuple[tuple[int, int], ...] = ()  # its replicas' disks (``Reconfigure.disks``)


@dataclass(frozen=True, slots=True)
class RangeIdAllocated:
    range_id: int


@dataclass(frozen=True, slots=True)
class RangesRecorded:
    changed: bool  # the directory is not what it was


@dataclass(frozen=True, slots=True)
class NodeAdded:
    node_id: int
    new: bool  # False: the address was registered already (a join retried)


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    node_id: int


@dataclass(frozen=True, slots=True)
class PlacementSet:
    leader_dc: str  # "": the default is in force


@dataclass(frozen=True, slots=True)
class LeaseGranted:
    lease_id: int
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class LeaseRevoked:
    lease_id: int
    existed: bool  # False: no such lease (already ended, or never granted)


@dataclass(frozen=True, slots=True)
class LeasesForgotten:
    lease_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LeaseTableRead:
    live: tuple[tuple[int, int], ...]  # (lease id, TTL in ms), in id order
    ending: tuple[int, ...]  # ended, keys maybe not yet detached everywhere


@dataclass(frozen=True, slots=True)
class LeaseDetached:
    lease_id: int
    deleted: int  # keys deleted here
    revision: int  # the shard's revision after it


@dataclass(frozen=True, slots=True)
class LeaseGone:
    """A put named a lease this range knows ended: nothing was applied."""

    lease_id: int


@dataclass(frozen=True, slots=True)
class HistoryCompacted:
    revision: int  # the shard keeps history from here on (reads below it are refused)
    more: bool = False  # versions no read needs are left to remove (propose Compact again)


@dataclass(frozen=True, slots=True)
class Appended:
    first_offset: int  # the batch's first record's offset (the others follow densely)
    count: int
    revision: int


@dataclass(frozen=True, slots=True)
class Taken:
    start: int  # the ids [start, end) are the taker's alone
    end: int
    revision: int


@dataclass(frozen=True, slots=True)
class CounterSpent:
    """A take the counter cannot give: it would pass ``counter_keys.VALUE_MAX``."""

    value: int  # the counter's next id


@dataclass(frozen=True, slots=True)
class Trimmed:
    first_offset: int  # the partition's first retained offset now
    deleted: int
    revision: int


ApplyResult: TypeAlias = (
    Appended
    | Taken
    | CounterSpent
    | Trimmed
    | PutResult
    | DeleteResult
    | TxnResult
    | PlacementSet
    | StaleRequest
    | Malformed
    | Invalid
    | OutOfRange
    | SplitDone
    | RangeIdAllocated
    | NodeAdded
    | NodeRemoved
    | Frozen
    | MergeDone
    | Reconfigured
    | RangesRecorded
    | HistoryCompacted
    | LeaseGranted
    | LeaseRevoked
    | LeasesForgotten
    | LeaseTableRead
    | LeaseDetached
    | LeaseGone
)


# Commands that read and write no key of the store (a range's structure, its metadata, the
# meta range's tables).
KEYLESS = (
    SetPlacement,
    AllocateRangeId,
    AddNode,
    RemoveNode,
    Freeze,
    Merge,
    Reconfigure,
    RecordRanges,
    Compact,
    LeaseGrant,
    LeaseRevoke,
    LeasesEnded,
    LeaseTable,
    DetachLease,
)


def encoded_bytes_max(key_bytes_max: int, value_bytes_max: int) -> int:
    """The longest ``encode_command`` output for a command whose keys are at most
    ``key_bytes_max`` and whose values together at most ``value_bytes_max``: a Txn with every
    compare and op it may have (what a leader must fit in one slot)."""
    compare = 4 + 1 + 1 + 4 + 8  # key length, target, op, value length, number
    op = 1 + 4 + 4  # kind, key length, value length
    head = 5 + 1 + 16 + 8 + 2 * 8  # frame, kind, request id, three counts
    return (
        head
        + TXN_COMPARES_MAX * (compare + key_bytes_max)
        + 2 * TXN_OPS_MAX * (op + key_bytes_max)
        + value_bytes_max
    )


def oversized(cmd: Command) -> str | None:
    """Why the state machine would not execute ``cmd`` (None: it would)."""
    keys: list[bytes]
    values: list[bytes]
    match cmd:
        case Put():
            keys, values = [cmd.key], [cmd.value]
        case Delete():
            keys, values = [cmd.key], []
        case Txn():
            ops = (*cmd.success, *cmd.failure)
            keys = [c.key for c in cmd.compares] + [op.key for op in ops]
            values = [c.value for c in cmd.compares] + [op.value for op in ops]
        case _ if isinstance(cmd, KEYLESS):
            return None
        case Split():
            keys, values = [cmd.at], []
        case Append():
            keys = [cmd.row, *(r.key for r in cmd.records)]
            values = [b for r in cmd.records for b in (r.value, *(x for h in r.headers for x in h))]
        case Trim():
            keys, values = [cmd.row], []
        case Take():
            keys, values = [cmd.key], []
    longest = max((len(k) for k in keys), default=0)
    if longest > KEY_BYTES_HARD_MAX:
        return f"a key of {longest} bytes is over the {KEY_BYTES_HARD_MAX} the store executes"
    total = sum(len(v) for v in values)
    if total > VALUE_BYTES_HARD_MAX:
        return f"values of {total} bytes are over the {VALUE_BYTES_HARD_MAX} the store executes"
    return None


# ---------------------------------------------------------------------- commands <-> bytes

(
    _PUT,
    _DELETE,
    _TXN,
    _PLACEMENT,
    _SPLIT,
    _ALLOCATE,
    _FREEZE,
    _MERGE,
    _RECORD,
    _COMPACT,
    _PUT_LEASED,
    _LEASE_GRANT,
    _LEASE_REVOKE,
    _LEASES_ENDED,
    _DETACH_LEASE,
    _LEASE_TABLE,
    _APPEND,
    _TRIM,
    _TAKE,
) = range(1, 20)
_RECONFIGURE = 20
_ADD_NODE = 21
_REMOVE_NODE = 22
ADDRESS_BYTES_MAX = 1024  # a node's host:port
RECONFIGURE_REPLICAS_MAX = 64  # replicas in one configuration
APPEND_RECORDS_MAX = 1 << 16  # records in one Append (the produce limit is far below)
STREAM_HEADERS_MAX = 1 << 10  # headers of one record
_OP_LEASED = 0x80  # in a Txn op's kind: a lease id follows the op
LEASES_ENDED_MAX = 1 << 16
RECORD_RANGES_MAX = 1 << 20
_KIND_AT = 5  # the kind's offset in a framed command (after version and checksum)
DC_NAME_BYTES_MAX = 256


def encode_command(cmd: Command) -> bytes:
    w = Writer()
    match cmd:
        case Put():
            w.u8(_PUT_LEASED if cmd.lease else _PUT)  # a put as before leases, without one
            _request(w, cmd.request)
            w.blob(cmd.key)
            w.blob(cmd.value)
            if cmd.lease:
                w.u64(cmd.lease)
        case Delete():
            w.u8(_DELETE)
            _request(w, cmd.request)
            w.blob(cmd.key)
        case Txn():
            w.u8(_TXN)
            _request(w, cmd.request)
            w.u64(len(cmd.compares))
            for c in cmd.compares:
                w.blob(c.key)
                w.u8(c.target)
                w.u8(c.op)
                w.blob(c.value)
                w.u64(c.number)
            for ops in (cmd.success, cmd.failure):
                w.u64(len(ops))
                for op in ops:
                    # A leased put's kind carries a flag and its lease follows: a Txn without
                    # one encodes as before leases, so logs written then still decode.
                    w.u8(op.kind | _OP_LEASED if op.lease else op.kind)
                    w.blob(op.key)
                    w.blob(op.value)
                    if op.lease:
                        w.u64(op.lease)
        case SetPlacement():
            w.u8(_PLACEMENT)
            _request(w, cmd.request)
            w.blob(cmd.leader_dc.encode())
        case Split():
            w.u8(_SPLIT)
            _request(w, cmd.request)
            w.blob(cmd.at)
            w.u64(cmd.new_range_id)
        case AllocateRangeId():
            w.u8(_ALLOCATE)
            _request(w, cmd.request)
            w.u64(cmd.floor)
        case AddNode():
            w.u8(_ADD_NODE)
            _request(w, cmd.request)
            w.u64(cmd.floor)
            w.blob(cmd.dc.encode())
            w.blob(cmd.address.encode())
        case RemoveNode():
            w.u8(_REMOVE_NODE)
            _request(w, cmd.request)
            w.u64(cmd.node_id)
        case Freeze():
            w.u8(_FREEZE)
            _request(w, cmd.request)
        case Merge():
            w.u8(_MERGE)
            _request(w, cmd.request)
            w.blob(encode_descriptor(cmd.right))
            w.u64(cmd.frozen_slot)
        case Reconfigure():
            w.u8(_RECONFIGURE)
            _request(w, cmd.request)
            w.u64(cmd.successor_id)
            w.u64(len(cmd.replicas))
            for replica in cmd.replicas:
                w.u64(replica)
            w.u64(len(cmd.disks))
            for node, incarnation in cmd.disks:
                w.u64(node)
                w.u64(incarnation)
        case RecordRanges():
            w.u8(_RECORD)
            _request(w, cmd.request)
            w.u64(len(cmd.descriptors))
            for d in cmd.descriptors:
                w.blob(encode_descriptor(d))
        case Compact():
            w.u8(_COMPACT)
            _request(w, cmd.request)
            w.u64(cmd.revision)
        case LeaseGrant():
            w.u8(_LEASE_GRANT)
            _request(w, cmd.request)
            w.u64(cmd.lease_id)
            w.u64(cmd.ttl_ms)
        case LeaseRevoke():
            w.u8(_LEASE_REVOKE)
            _request(w, cmd.request)
            w.u64(cmd.lease_id)
        case LeasesEnded():
            w.u8(_LEASES_ENDED)
            _request(w, cmd.request)
            w.u64(len(cmd.lease_ids))
            for lease_id in cmd.lease_ids:
                w.u64(lease_id)
        case DetachLease():
            w.u8(_DETACH_LEASE)
            _request(w, cmd.request)
            w.u64(cmd.lease_id)
        case LeaseTable():
            w.u8(_LEASE_TABLE)
            _request(w, cmd.request)
        case Append():
            w.u8(_APPEND)
            _request(w, cmd.request)
            w.blob(cmd.row)
            w.u64(cmd.appended_ms)
            w.u64(len(cmd.records))
            for record in cmd.records:
                write_stream_record(w, record)
        case Trim():
            w.u8(_TRIM)
            _request(w, cmd.request)
            w.blob(cmd.row)
            w.u64(cmd.before)
        case Take():
            w.u8(_TAKE)
            _request(w, cmd.request)
            w.blob(cmd.key)
            w.u64(cmd.count)
    return w.framed()


def write_stream_record(w: Writer, record: StreamRecord) -> None:
    w.blob(record.key)
    w.blob(record.value)
    w.u64(len(record.headers))
    for name, value in record.headers:
        w.blob(name)
        w.blob(value)


def read_stream_record(r: Reader) -> StreamRecord:
    key, value = r.blob(), r.blob()
    headers = tuple((r.blob(), r.blob()) for _ in range(r.count(STREAM_HEADERS_MAX)))
    return StreamRecord(key, value, headers)


def decode_command(frame: bytes) -> Command:
    r = Reader(frame)
    kind = r.u8()
    request = RequestId(r.u64(), r.u64())
    cmd: Command
    if kind == _PUT:
        cmd = Put(request, r.blob(), r.blob())
    elif kind == _DELETE:
        cmd = Delete(request, r.blob())
    elif kind == _TXN:
        compares = tuple(
            Compare(r.blob(), _enum(Target, r.u8()), _enum(CompareOp, r.u8()), r.blob(), r.u64())
            for _ in range(r.count(TXN_COMPARES_MAX))
        )
        success = _ops(r)
        failure = _ops(r)
        cmd = Txn(request, compares, success, failure)
    elif kind == _PLACEMENT:
        raw = r.blob()
        if len(raw) > DC_NAME_BYTES_MAX:
            raise CodecError("datacenter name too long")
        try:
            cmd = SetPlacement(request, raw.decode())
        except UnicodeDecodeError:
            raise CodecError("datacenter name is not UTF-8") from None
    elif kind == _SPLIT:
        cmd = Split(request, r.blob(), r.u64())
    elif kind == _ALLOCATE:
        cmd = AllocateRangeId(request, r.u64())
    elif kind == _ADD_NODE:
        floor, dc, address = r.u64(), r.blob(), r.blob()
        if len(dc) > DC_NAME_BYTES_MAX or len(address) > ADDRESS_BYTES_MAX:
            raise CodecError("datacenter name or address too long")
        try:
            cmd = AddNode(request, floor, dc.decode(), address.decode())
        except UnicodeDecodeError:
            raise CodecError("datacenter name or address is not UTF-8") from None
    elif kind == _REMOVE_NODE:
        cmd = RemoveNode(request, r.u64())
    elif kind == _FREEZE:
        cmd = Freeze(request)
    elif kind == _MERGE:
        cmd = Merge(request, decode_descriptor(r.blob()), r.u64())
    elif kind == _RECONFIGURE:
        successor_id = r.u64()
        replicas = tuple(r.u64() for _ in range(r.count(RECONFIGURE_REPLICAS_MAX)))
        disks = tuple((r.u64(), r.u64()) for _ in range(r.count(RECONFIGURE_REPLICAS_MAX)))
        cmd = Reconfigure(request, successor_id, replicas, disks)
    elif kind == _RECORD:
        cmd = RecordRanges(
            request, tuple(decode_descriptor(r.blob()) for _ in range(r.count(RECORD_RANGES_MAX)))
        )
    elif kind == _COMPACT:
        cmd = Compact(request, r.u64())
    elif kind == _PUT_LEASED:
        cmd = Put(request, r.blob(), r.blob(), r.u64())
    elif kind == _LEASE_GRANT:
        cmd = LeaseGrant(request, r.u64(), r.u64())
    elif kind == _LEASE_REVOKE:
        cmd = LeaseRevoke(request, r.u64())
    elif kind == _LEASES_ENDED:
        cmd = LeasesEnded(request, tuple(r.u64() for _ in range(r.count(LEASES_ENDED_MAX))))
    elif kind == _DETACH_LEASE:
        cmd = DetachLease(request, r.u64())
    elif kind == _LEASE_TABLE:
        cmd = LeaseTable(request)
    elif kind == _APPEND:
        row, appended_ms = r.blob(), r.u64()
        records = tuple(read_stream_record(r) for _ in range(r.count(APPEND_RECORDS_MAX)))
        cmd = Append(request, row, records, appended_ms)
    elif kind == _TRIM:
        cmd = Trim(request, r.blob(), r.u64())
    elif kind == _TAKE:
        cmd = Take(request, r.blob(), r.u64())
    else:
        raise CodecError(f"unknown command kind {kind}")
    r.done()
    return cmd


def leases_named(cmd: Command) -> list[int]:
    """The leases a write attaches keys to (a Put's, each leased put of a Txn's)."""
    match cmd:
        case Put() if cmd.lease:
            return [cmd.lease]
        case Txn():
            return [op.lease for op in (*cmd.success, *cmd.failure) if op.lease]
    return []


def keys_of(cmd: Command) -> list[bytes]:
    """The keys a command reads or writes (all must be in the shard that applies it)."""
    match cmd:
        case Put() | Delete() | Take():
            return [cmd.key]
        case Txn():
            return [c.key for c in cmd.compares] + [op.key for op in (*cmd.success, *cmd.failure)]
        case Split():
            return []
        case Append() | Trim():
            return [cmd.row]  # the whole row: no split cuts one (``cluster.stream_keys``)
        case _ if isinstance(cmd, KEYLESS):
            return []


def merge_in(value: Sequence[bytes]) -> Merge | None:
    """The ``Merge`` among a slot's commands, if any: the node holds such a slot back until
    its replica of the right shard is ready."""
    cmd = _first_of_kind(value, _MERGE)
    return cmd if isinstance(cmd, Merge) else None


def reconfigure_in(value: Sequence[bytes]) -> Reconfigure | None:
    """The ``Reconfigure`` among a slot's commands, if any."""
    cmd = _first_of_kind(value, _RECONFIGURE)
    return cmd if isinstance(cmd, Reconfigure) else None


def _first_of_kind(value: Sequence[bytes], kind: int) -> Command | None:
    """The first of a slot's commands of ``kind`` that decodes (a cheap look at each
    command's kind byte first: most slots hold none)."""
    for raw in value:
        if len(raw) > _KIND_AT and raw[_KIND_AT] == kind:
            try:
                return decode_command(raw)
            except CodecError:
                continue
    return None


def _request(w: Writer, request: RequestId) -> None:
    w.u64(request.client_id)
    w.u64(request.seq)


def _ops(r: Reader) -> tuple[TxnOp, ...]:
    return tuple(_op(r) for _ in range(r.count(TXN_OPS_MAX)))


def _op(r: Reader) -> TxnOp:
    raw = r.u8()
    kind = _enum(OpKind, raw & ~_OP_LEASED)
    key, value = r.blob(), r.blob()
    if not raw & _OP_LEASED:
        return TxnOp(kind, key, value)
    if kind is not OpKind.PUT:
        raise CodecError(f"a {kind.name} op with a lease")
    return TxnOp(kind, key, value, r.u64())


def _enum(kind: type[E], raw: int) -> E:
    try:
        return kind(raw)
    except ValueError:
        raise CodecError(f"bad {kind.__name__} {raw}") from None


# ---------------------------------------------------------------------- results <-> bytes
# Results are kept in the replicated session table, so a retry gets the very same answer.

_R_PUT, _R_DELETE, _R_TXN, _R_GET, _R_APPENDED, _R_TRIMMED, _R_TAKEN = 1, 2, 3, 4, 5, 6, 7
CachedResult: TypeAlias = PutResult | DeleteResult | TxnResult | Appended | Taken


def encode_result(result: CachedResult) -> bytes:
    w = Writer()
    _result(w, result)
    return w.framed()


def decode_result(frame: bytes) -> CachedResult:
    r = Reader(frame)
    result = _read_result(r)
    r.done()
    if isinstance(result, GetResult | Trimmed):
        raise CodecError(f"a {type(result).__name__} is never cached")
    return result


def encode_forwarded_result(result: CachedResult | Trimmed) -> bytes:
    """A result a node sends back for a command it proposed for another node."""
    w = Writer()
    _result(w, result)
    return w.framed()


def decode_forwarded_result(frame: bytes) -> CachedResult | Trimmed:
    r = Reader(frame)
    result = _read_result(r)
    r.done()
    if isinstance(result, GetResult):
        raise CodecError("a bare get is never forwarded")
    return result


def _result(w: Writer, result: CachedResult | GetResult | Trimmed) -> None:
    match result:
        case Taken():
            w.u8(_R_TAKEN)
            w.u64(result.start)
            w.u64(result.end)
            w.u64(result.revision)
        case Trimmed():
            w.u8(_R_TRIMMED)
            w.u64(result.first_offset)
            w.u64(result.deleted)
            w.u64(result.revision)
        case Appended():
            w.u8(_R_APPENDED)
            w.u64(result.first_offset)
            w.u64(result.count)
            w.u64(result.revision)
        case PutResult():
            w.u8(_R_PUT)
            w.u64(result.revision)
            _kv(w, result.prev)
        case DeleteResult():
            w.u8(_R_DELETE)
            w.u64(result.revision)
            _kv(w, result.prev)
        case TxnResult():
            w.u8(_R_TXN)
            w.u64(result.revision)
            w.u8(int(result.succeeded))
            w.u64(len(result.results))
            for sub in result.results:
                _result(w, sub)
        case GetResult():
            w.u8(_R_GET)
            _kv(w, result.kv)


def _read_result(r: Reader) -> CachedResult | GetResult | Trimmed:
    tag = r.u8()
    if tag == _R_TRIMMED:
        return Trimmed(r.u64(), r.u64(), r.u64())
    if tag == _R_TAKEN:
        return Taken(r.u64(), r.u64(), r.u64())
    if tag == _R_APPENDED:
        return Appended(r.u64(), r.u64(), r.u64())
    if tag == _R_PUT:
        return PutResult(r.u64(), _read_kv(r))
    if tag == _R_DELETE:
        return DeleteResult(r.u64(), _read_kv(r))
    if tag == _R_TXN:
        revision, succeeded = r.u64(), bool(r.u8())
        subs = []
        for _ in range(r.count(TXN_OPS_MAX)):
            sub = _read_result(r)
            if isinstance(sub, TxnResult | Appended | Trimmed | Taken):
                raise CodecError("nested transaction result")
            subs.append(sub)
        return TxnResult(revision, succeeded, tuple(subs))
    if tag == _R_GET:
        return GetResult(_read_kv(r))
    raise CodecError(f"unknown result kind {tag}")


def _kv(w: Writer, kv: KeyValue | None) -> None:
    if kv is None:
        w.u8(0)
        return
    w.u8(1)
    w.blob(kv.key)
    w.blob(kv.value)
    w.u64(kv.create_revision)
    w.u64(kv.mod_revision)
    w.u64(kv.version)


def _read_kv(r: Reader) -> KeyValue | None:
    if r.u8() == 0:
        return None
    return KeyValue(r.blob(), r.blob(), r.u64(), r.u64(), r.u64())
