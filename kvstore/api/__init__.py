"""Client-facing gRPC services: validation at the edge, routing to shard leaders."""
