"""The benchmark's table: one row per operation kind, each with its own rate."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

from kvstore.bench.client_process import LoadResult, LoadSpec
from kvstore.bench.report import markdown, table
from kvstore.bench.runner import merge


def histogram(*latencies_us: int) -> bytes:
    h = HdrHistogram(1, 60_000_000, 3)
    for value in latencies_us:
        h.record_value(value)
    encoded: bytes = h.encode()
    return encoded


def test_mixed_rows_show_each_kinds_rate_and_percentiles() -> None:
    spec = LoadSpec(endpoints=[], workload="mixed", spans=[], concurrency=4)
    parts = [
        LoadResult(ops=3, elapsed_s=1.0, histograms={"get": histogram(1000, 2000, 3000)}),
        LoadResult(
            ops=1,
            elapsed_s=1.0,
            histograms={"put": histogram(9000)},
            errors={"UNAVAILABLE": 2},
        ),
    ]
    result = merge("mixed 0.75", spec, parts)
    assert result.ops == 4 and result.latency_ms["get"]["ops"] == 3
    lines = table([result]).splitlines()
    assert lines[1].split()[:5] == ["mixed", "0.75", "(get)", "4", "3"]
    assert lines[2].split()[:5] == ["mixed", "0.75", "(put)", "4", "1"]
    assert "UNAVAILABLE 2" in lines[1]
    assert "| mixed 0.75 (put) | 4 | 1 |" in markdown([result], "kvstore bench", [])
