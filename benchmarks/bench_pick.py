"""Several seeds of a prompt, the one the critic scores best kept: right more often?

Reads `bench_quality.py` results (one or more JSON files with several seeds of the same prompts)
and, for each prompt x size x iterations, compares what one seed scores on average with what the
seed of the lowest recorded loss scores (a choice the service could make itself: the loss is the
critic's, the judge never enters it), the highest loss (the other end) and any seed (the ceiling
a perfect pick would reach).

    python3 benchmarks/bench_pick.py benchmarks/results/cpu-20261202T150610Z-quality.json \\
        benchmarks/results/cpu-20261202T192613Z-quality.json

Prints a table and writes JSON to benchmarks/results/<device>-<UTC time>-pick.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CRITERIA = ("colour", "background", "shape", "all")
PICKS = ("one seed", "lowest loss", "highest loss", "any seed")


def groups(pictures: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Generated pictures of the guiding models, one group per prompt x size x iterations,
    each with one picture per seed (a seed seen twice keeps its first picture)."""
    grouped: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = defaultdict(dict)
    for picture in pictures:
        if picture["kind"] != "generated" or picture["baseline"]:
            continue
        key = (picture["models"], picture["prompt"], picture["size"], picture.get("iterations"))
        grouped[key].setdefault(picture["seed"], picture)
    return [list(seeds.values()) for seeds in grouped.values()]


def pick_rates(group_list: list[list[dict[str, Any]]], criterion: str) -> dict[str, float]:
    """The fraction right on `criterion` for each way of choosing a group's picture."""

    def right(picture: dict[str, Any]) -> bool:
        return bool(picture["correct"][criterion])

    return {
        "one seed": statistics.fmean(statistics.fmean(map(right, g)) for g in group_list),
        "lowest loss": statistics.fmean(right(min(g, key=lambda p: p["loss"])) for g in group_list),
        "highest loss": statistics.fmean(
            right(max(g, key=lambda p: p["loss"])) for g in group_list
        ),
        "any seed": statistics.fmean(any(map(right, g)) for g in group_list),
    }


def summarize(pictures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per subset (all, held-out) and way of choosing, with a rate per criterion."""
    every = [g for g in groups(pictures) if len(g) > 1]
    if not every:
        raise ValueError(
            "no prompt has pictures of two or more seeds: run bench_quality.py with --seeds 2"
        )
    rows = []
    for subset, chosen in (("all", every), ("held-out", [g for g in every if g[0]["held_out"]])):
        if not chosen:
            continue
        rates = {criterion: pick_rates(chosen, criterion) for criterion in CRITERIA}
        for pick in PICKS:
            rows.append(
                {
                    "subset": subset,
                    "pick": pick,
                    "prompts": len(chosen),
                    "seeds": min(len(g) for g in chosen),
                    **{criterion: rates[criterion][pick] for criterion in CRITERIA},
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="keeping one of several seeds: judged right (%)")
    for name in ("subset", "pick", "prompts", "seeds", *CRITERIA):
        table.add_column(name, justify="left" if name in ("subset", "pick") else "right")
    for row in rows:
        table.add_row(
            row["subset"], row["pick"], str(row["prompts"]), str(row["seeds"]),
            *(f"{100 * row[criterion]:.0f}" for criterion in CRITERIA),
        )  # fmt: skip
    Console(width=max(100, Console().width)).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench_quality.py JSON files")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    documents = [json.loads(path.read_text()) for path in args.results]
    pictures = [picture for document in documents for picture in document["pictures"]]
    try:
        rows = summarize(pictures)
    except ValueError as error:
        print(f"bench_pick: {error}", file=sys.stderr)
        return 2
    print_table(rows)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    device = documents[0].get("device", "unknown")
    path = args.output_dir / f"{device}-{stamp}-pick.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": "python3 benchmarks/bench_pick.py " + " ".join(str(p) for p in args.results),
        "created_at": stamp,
        "inputs": [str(p) for p in args.results],
        "models": sorted({(d.get("vqgan"), d.get("clip")) for d in documents}),
        "summary": rows,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
