"""kvstore: the product (state machine, storage, network, API, client). Arrives with the cluster issue."""

__all__: list[str] = []
