"""`make gpu-check` (`python -m al.gpu_check`): what a GPU machine owes the docs, in one
command of at most 8 minutes, written to gpu_check.json and printed as a table.

Parts, each a subprocess with its own time limit (a part that cannot run is skipped with the
reason; one that runs out of time is reported as such, and the others still run):
- `bench`: `al.bench` on CUDA — overhead, loader, selection (with MC-dropout caching), and
  `stage` (a CIFAR-format ResNet-18 stage with and without the fast data path, fp32 vs bf16);
- `ddp_run`: a two-stage `al.train` run with `trainer=ddp` on every visible GPU (nccl);
- `sharded_picks`: selection sharded over every visible GPU gives one GPU's picks, for
  score-based, set-based and MC-dropout methods.

Without CUDA it is a dry run: every part at toy size on the CPU (gloo ranks in place of nccl),
which checks the wiring, not the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

# Methods whose sharded picks are compared with one device's: a score, a k-center greedy,
# k-means++ on gradient embeddings, MC dropout, BatchBALD's joint entropies, and a VAE and
# discriminator fitted across the ranks (one epoch, narrow: equal to rounding, so its scores
# are held to FIT_TOLERANCE rather than its picks to equality).
PICK_METHODS = {
    "entropy": (),
    "coreset": (),
    "badge": (),
    "bald": ("model.dropout=0.5",),
    "batchbald": ("model.dropout=0.5", "method.selector.samples=1000"),
    "vaal": (
        "method.selector.epochs_v=1",
        "method.selector.channels=[16,32,64,128]",
        "method.selector.image_size=16",
    ),
}
FITTED = {"vaal"}
FIT_TOLERANCE = 1e-3
SMALL = ("budget.initial=20", "budget.query=10", "budget.subset=300")


@dataclass(frozen=True)
class Plan:
    """Where the check runs: `devices` visible GPUs (0: the CPU dry run)."""

    devices: int

    @property
    def dry(self) -> bool:
        return self.devices == 0

    @property
    def ranks(self) -> int:
        return 2 if self.dry else self.devices

    def ddp_skip(self) -> str | None:
        if not self.dry and self.devices < 2:
            return f"{self.devices} visible GPU: DDP and sharding need 2 or more"
        return None


def bench_command(plan: Plan, out: Path) -> list[str]:
    suites = ["overhead", "loader", "selection", "stage"]
    device = ["--quick", "--device", "cpu", "--threads", "1"] if plan.dry else ["--device", "cuda"]
    return [sys.executable, "-m", "al.bench", *suites, *device, "--repeats", "1", "--out", str(out)]


def ddp_command(plan: Plan, out: Path) -> list[str]:
    accelerator = "cpu" if plan.dry else "gpu"
    return [
        sys.executable,
        "-m",
        "al.train",
        "trainer=ddp",
        f"trainer.devices={plan.ranks}",
        f"trainer.accelerator={accelerator}",
        "trainer.max_epochs=2",
        "logger=none",
        "method=margin",
        "budget.initial=20",
        "budget.query=10",
        "budget.stages=2",
        f"hydra.run.dir={out.parent / 'ddp_run'}",
    ]


def picks_command(plan: Plan, out: Path) -> list[str]:
    return [sys.executable, "-m", "al.gpu_check", "--part", "sharded_picks", "--out", str(out)]


def json_output(out: Path) -> dict | None:
    """What a part wrote to `out`, if anything."""
    return json.loads(out.read_text()) if out.exists() else None


def ddp_output(out: Path) -> dict | None:
    """The DDP run's stage count and last record (its run directory beside `out`)."""
    results = out.parent / "ddp_run" / "results.jsonl"
    if not results.exists():
        return None
    records = results.read_text().splitlines()
    return {"stages": len(records), "last": json.loads(records[-1])}


def bench_summary(output: dict) -> str:
    figures = output["figures"]
    shown = "; ".join(f"{f['name']}: {f['ratio']['median']:.2f}×" for f in figures[:12])
    return shown + (" …" if len(figures) > 12 else "")


def ddp_summary(output: dict) -> str:
    return f"{output['stages']} stages, test acc {output['last']['test/acc']:.3f}"


def picks_summary(output: dict) -> str:
    return ", ".join(f"{m}: {'equal' if r['equal'] else 'DIFFERENT'}" for m, r in output.items())


@dataclass(frozen=True)
class Part:
    """A subprocess (`command`) with its time `limit` (s), the reason it cannot run on a plan
    (`skip`), what it produced (`output`) and that output in one line (`describe`)."""

    name: str
    command: Callable[[Plan, Path], list[str]]
    limit: int
    describe: Callable[[dict], str]
    output: Callable[[Path], dict | None] = json_output
    skip: Callable[[Plan], str | None] = lambda plan: None


PARTS = [
    Part("bench", bench_command, 300, bench_summary),
    Part("ddp_run", ddp_command, 90, ddp_summary, ddp_output, Plan.ddp_skip),
    Part("sharded_picks", picks_command, 90, picks_summary, skip=Plan.ddp_skip),
]


def run_part(part: Part, plan: Plan, folder: Path) -> dict:
    """Run `part` with its limit; its status, seconds, the last lines it printed and the
    JSON it wrote (if any)."""
    reason = part.skip(plan)
    if reason is not None:
        return {"status": "skipped", "reason": reason}
    out = folder / f"{part.name}.json"
    start = time.perf_counter()
    try:
        done = subprocess.run(
            part.command(plan, out), capture_output=True, text=True, timeout=part.limit
        )
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "reason": f"over its {part.limit} s", "seconds": part.limit}
    result = {
        "status": "ok" if done.returncode == 0 else f"failed (exit {done.returncode})",
        "seconds": round(time.perf_counter() - start, 1),
        "log_tail": (done.stdout + done.stderr).splitlines()[-15:],
    }
    output = part.output(out)
    if output is not None:
        result["output"] = output
    return result


def sharded_picks(out: Path) -> None:
    """Every PICK_METHODS method selected on `ranks` processes (nccl on GPUs, gloo on the
    CPU) against one device: equal picks (`agrees`), and the largest score difference."""
    from al.bench.sharded import compare_picks

    ranks = torch.cuda.device_count() if torch.cuda.is_available() else 2
    rows = compare_picks(PICK_METHODS, SMALL, ranks)
    out.write_text(json.dumps(rows, indent=2))
    if not all(agrees(method, row) for method, row in rows.items()):
        raise SystemExit(f"sharded picks differ from one device's: {rows}")


def agrees(method: str, row: dict) -> bool:
    """Equal picks; for a method that fits networks across the ranks, scores within
    FIT_TOLERANCE of one device's."""
    if method in FITTED:
        return row["max_score_difference"] <= FIT_TOLERANCE
    return row["equal"]


def print_report(report: dict, console: Console | None = None) -> None:
    table = Table(
        title=f"gpu-check on {report['device']}" + (" (dry run)" if report["dry"] else "")
    )
    for column in ("part", "status", "s", "result"):
        table.add_column(column)
    for part in PARTS:
        result = report["parts"][part.name]
        seconds = str(result.get("seconds", ""))
        table.add_row(part.name, result["status"], seconds, summary(part, result))
    (console or Console(width=160)).print(table)


def summary(part: Part, result: dict) -> str:
    """One line of what a part found."""
    if "reason" in result:
        return result["reason"]
    if "output" not in result:
        return (result.get("log_tail") or [""])[-1]
    return part.describe(result["output"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m al.gpu_check", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--part", choices=["sharded_picks"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part == "sharded_picks":
        sharded_picks(args.out)
        return {}
    plan = Plan(torch.cuda.device_count() if torch.cuda.is_available() else 0)
    device = torch.cuda.get_device_name(0) if not plan.dry else "the CPU (no CUDA device)"
    report = {"device": device, "dry": plan.dry, "devices": plan.devices, "parts": {}}
    with tempfile.TemporaryDirectory() as folder:
        for part in PARTS:
            report["parts"][part.name] = run_part(part, plan, Path(folder))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    return report


if __name__ == "__main__":
    report = main()
    failed = [
        name
        for name, part in report.get("parts", {}).items()
        if part["status"] != "ok" and part["status"] != "skipped"
    ]
    sys.exit(1 if failed else 0)
