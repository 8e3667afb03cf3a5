"""Many Paxos groups on many nodes in many datacenters (sans-IO). Arrives with the cluster issue."""

__all__: list[str] = []
