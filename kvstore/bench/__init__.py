"""``kvstore bench``: load generator, latency histograms, server CPU per operation.

Modules: ``keys`` (key names spread over every shard, uniform or zipfian choice),
``client_process`` (the load loop one client process runs), ``echo`` (the trivial gRPC
server of ``--calibrate``), ``runner`` (processes, progress, aggregation), ``report``
(table, JSON, markdown).
"""
