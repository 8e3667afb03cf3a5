"""Deterministic simulation of whole Multi-Paxos groups, in one thread, from one seed.

Read in this order: ``rng`` (named random streams), ``network`` and ``disk`` (the hostile
world), ``checkers`` (what must never happen), ``world`` (the event loop that drives real
``paxos.Replica`` objects exactly as the driver contract says), ``nemesis`` and ``workload``
(what happens to the world), ``runner`` (one seed, safety then liveness), ``__main__`` (CLI).
"""
