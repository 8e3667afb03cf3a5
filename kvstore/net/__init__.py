"""Node-to-node networking: the paxos <-> wire codec (transport comes with the runtime)."""

from kvstore.net.codec import PeerProtocolError, decode_batch, from_wire, to_wire

__all__ = ["PeerProtocolError", "decode_batch", "from_wire", "to_wire"]
