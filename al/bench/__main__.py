"""`python -m al.bench [suite ...] [--quick] [--repeats N] [--device auto|cpu|cuda]
[--threads T] [--out bench.json]`."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

from al.bench import first_curve, loader, overhead, scale, selection, sharded, stage
from al.bench.figures import Figure
from al.bench.report import print_table, write_json
from al.bench.settings import Settings, apply_threads, choose_device, default_threads, machine

SUITES: dict[str, Callable[[Settings], list[Figure]]] = {
    "overhead": overhead.run,
    "loader": loader.run,
    "selection": selection.run,
    "scale": scale.run,
    "sharded": sharded.run,
    "stage": stage.run,
    "first_curve": first_curve.run,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m al.bench", description=__doc__)
    parser.add_argument("suites", nargs="*", help=f"any of {', '.join(SUITES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="toy sizes (seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (3; quick 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch / OMP threads")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    args = parser.parse_args(argv)
    unknown = [suite for suite in args.suites if suite not in SUITES]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}: choose from {', '.join(SUITES)}")
    return args


def main(argv: list[str] | None = None) -> list[Figure]:
    args = parse(argv)
    threads = args.threads or default_threads()
    apply_threads(threads)
    repeats = args.repeats or (1 if args.quick else 3)
    settings = Settings(args.quick, repeats, choose_device(args.device), threads)
    figures, seconds = [], {}
    for suite in args.suites or list(SUITES):
        start = time.perf_counter()
        figures += SUITES[suite](settings)
        seconds[suite] = time.perf_counter() - start
    info = machine(settings)
    print_table(figures, info)
    run = {"quick": args.quick, "repeats": repeats, "suite_seconds": seconds}
    write_json(args.out, figures, info, run)
    return figures


if __name__ == "__main__":
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    main()
