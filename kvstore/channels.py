"""Options for every gRPC channel kvstore opens (node to node, and node to leader)."""

from __future__ import annotations

# gRPC shares subchannels process-wide by default: a link that failed while its peer was
# still starting would make every other channel to that address fail fast during its
# reconnect backoff. Each of our channels keeps its own.
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)
