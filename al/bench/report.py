"""The bench's outputs: a rich table on the console and bench.json."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from al.bench.figures import Figure


def seconds_cell(row: dict, key: str) -> str:
    values = row["values"].get(key)
    return "" if values is None else f"{values['median']:.3g}"


def print_table(figures: list[Figure], machine: dict, console: Console | None = None) -> None:
    """One row per figure: the ratio's median [min–max], the absolute medians, target, note."""
    title = (
        f"al.bench on {machine['device_name']}, {machine['torch_threads']} torch threads, "
        f"torch {machine['torch']}"
    )
    table = Table(title=title)
    for column in ("suite", "figure", "ratio (median [min–max])", "vs", "s", "base s", "MB"):
        table.add_column(column, justify="left" if column in ("suite", "figure", "vs") else "right")
    table.add_column("target / note")
    for figure in figures:
        row = figure.to_json()
        ratio = row["ratio"]
        mb = row["values"].get("peak_mb")
        table.add_row(
            row["suite"],
            row["name"],
            f"{ratio['median']:.2f}× [{ratio['min']:.2f}–{ratio['max']:.2f}]",
            row["baseline"],
            seconds_cell(row, "seconds"),
            seconds_cell(row, "baseline_seconds"),
            "" if mb is None else f"{mb['median']:.0f}",
            " ".join(part for part in (row["target"], row["note"]) if part),
        )
    (console or Console(width=200)).print(table)


def write_json(path: Path, figures: list[Figure], machine: dict, settings: dict) -> None:
    document = {
        "machine": machine,
        "settings": settings,
        "figures": [figure.to_json() for figure in figures],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
