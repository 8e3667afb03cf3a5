"""``python -m tests.sim``: run one seed (with a trace) or sweep many seeds in parallel.

python -m tests.sim --seed 42 --trace      # replay one seed, one line per event
python -m tests.sim --seeds 20000 --jobs 2 # sweep; ends with "N seeds, V violations"
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from tests.sim.runner import SeedResult, repro_command, run_seed


def _run(args: tuple[int, int | None]) -> SeedResult:
    seed, replicas = args
    return run_seed(seed, replicas=replicas)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--seeds", type=int, default=100, help="sweep seeds [first, first+N)")
    parser.add_argument("--first", type=int, default=1, help="first seed of the sweep")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--replicas", type=int, choices=(3, 5), help="force the group size")
    parser.add_argument("--trace", action="store_true", help="print every event")
    parser.add_argument("--narrate", action="store_true", help="print role changes and faults")
    args = parser.parse_args(argv)

    if args.seed is not None:
        trace = None
        if args.trace:
            trace = print
        elif args.narrate:
            trace = _narrator
        result = run_seed(args.seed, replicas=args.replicas, trace=trace)
        _summary(result)
        print(f"1 seeds, {0 if result.ok else 1} violations")
        return 0 if result.ok else 1

    started = time.monotonic()
    seeds = [(s, args.replicas) for s in range(args.first, args.first + args.seeds)]
    failed = 0
    done = 0
    proposals = 0
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for result in pool.map(_run, seeds, chunksize=4):
            done += 1
            proposals += result.proposals
            if not result.ok:
                failed += 1
                print(f"seed {result.seed} FAILED ({len(result.violations)} violations):")
                for v in result.violations[:5]:
                    print(f"  {v}")
                print(f"  reproduce: {repro_command(result.seed, args.replicas)}")
            if done % 500 == 0 or done == len(seeds):
                elapsed = time.monotonic() - started
                print(
                    f"  progress: {done}/{len(seeds)} seeds, {failed} failing, {elapsed:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.monotonic() - started
    print(f"ran {len(seeds)} seeds ({proposals} proposals) in {elapsed:.1f}s")
    print(f"{len(seeds)} seeds, {failed} violations")
    return 0 if failed == 0 else 1


def _narrator(line: str) -> None:
    _, _, event, *_ = (line + " ").split(" ", 3)
    if event in {
        "role",
        "nemesis",
        "crash",
        "wipe",
        "rejoined",
        "start",
        "pause",
        "resume",
        "seed",
        "compact",
        "removed",
    }:
        print(line)


def _summary(r: SeedResult) -> None:
    print(
        f"seed {r.seed}: replicas={r.replicas} faults={','.join(r.faults)} "
        f"proposals={r.proposals} acked={r.acks} chosen_slots={r.chosen_slots} "
        f"events={r.events} liveness_ticks={r.liveness_ticks} digest={r.digest}"
    )
    for v in r.violations:
        print(f"  {v}")
    if not r.ok:
        print(f"  reproduce: {repro_command(r.seed, None)}")


if __name__ == "__main__":
    sys.exit(main())
