"""The only asyncio code: the node runtime that drives the replicas, and its clock."""
