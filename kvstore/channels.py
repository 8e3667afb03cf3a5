"""Options for every gRPC channel and server kvstore opens (clients, gateways, peers)."""

from __future__ import annotations

# The largest message any side sends or accepts. gRPC's default (4 MiB to receive) is below
# what the store must carry: a value of the documented 1 MiB, or a transaction of up to
# ~2.6 MiB, travels inside a batch of others, an Accept holds several such slots, and a
# snapshot transfer holds a whole shard (snapshots are not chunked yet). Senders that batch
# (``kvstore.batcher``, the peer links) keep each message far below this on their own.
MESSAGE_BYTES_MAX = 256 << 20

_MESSAGE_SIZES = (
    ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
    ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
)

# gRPC shares subchannels process-wide by default: a link that failed while its peer was
# still starting would make every other channel to that address fail fast during its
# reconnect backoff. Each of our channels keeps its own.
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1), *_MESSAGE_SIZES)

# gRPC sets SO_REUSEPORT on Linux by default, so a second server on a port in use would
# start and share it (a second node 1 voting with an empty disk, say). Bind exclusively.
SERVER_OPTIONS = (("grpc.so_reuseport", 0), *_MESSAGE_SIZES)
