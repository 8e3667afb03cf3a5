"""Write N keys of 200 bytes, read every one back, and scan the whole key space.

With a local cluster that splits small shards, this shows ranges following the data:

    kvstore up --dir /tmp/splitting --split-size-mb 1 --base-port 7300
    python examples/load_and_scan.py 127.0.1.1:7301,127.0.2.1:7302,127.0.3.1:7303
    kvstore shards --endpoints 127.0.1.1:7301

Prints the time to write and to read, how many keys were missing or wrong, and whether the
scan returned every key once, in order (on a fresh cluster: the scan covers everything).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from kvstore import AsyncClient

VALUE_BYTES = 200


async def main(endpoints: list[str], count: int, concurrency: int) -> None:
    keys = [f"key{i:06d}" for i in range(count)]
    value = "x" * (VALUE_BYTES - len(keys[0]))
    async with AsyncClient(endpoints, timeout_s=30) as kv:
        started = time.monotonic()
        todo = iter(keys)

        async def writer() -> None:
            for key in todo:
                await kv.put(key, value)

        await asyncio.gather(*(writer() for _ in range(concurrency)))
        print(f"wrote {count} keys in {time.monotonic() - started:.1f} s", flush=True)

        started = time.monotonic()
        missing = 0
        to_read = iter(keys)

        async def reader() -> None:
            nonlocal missing
            for key in to_read:
                got = await kv.get(key)
                if got is None or got.value != value.encode():
                    missing += 1

        await asyncio.gather(*(reader() for _ in range(concurrency)))
        print(
            f"read {count} keys in {time.monotonic() - started:.1f} s, {missing} missing or wrong"
        )

        seen: list[bytes] = []
        start = b""
        while True:
            page, more = await kv.scan(start, b"", limit=10_000)
            seen += [kv_.key for kv_ in page]
            if not more or not page:
                break
            start = page[-1].key + b"\x00"
        in_order = seen == [k.encode() for k in keys]
        print(f"scan: {len(seen)} keys, each once and in order: {in_order}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoints", help="comma-separated node addresses")
    parser.add_argument("--keys", type=int, default=60_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.endpoints.split(","), args.keys, args.concurrency))
