"""kvstore: the product: state machine, storage, network, API, client (the cluster issue)."""

__all__: list[str] = []
