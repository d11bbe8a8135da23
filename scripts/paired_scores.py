"""Two `evaluate` runs of the same routes, compared route by route.

    python scripts/paired_scores.py runs/before runs/after [--moved 0.5]

Prints each run's mean driving score, the paired difference (after − before) with its 95 %
interval over the routes both ran (1.96 standard errors of the per-route differences, which
cancel the routes' own spread), the routes whose score moved by more than ``--moved`` points
with the infractions each run had there, and every route with an infraction in either run:
collisions, red lights, stops, blocks and timeouts, not the minimum-speed ones or lane
departures, which most routes have. docs/perception.md's closed-loop tables are made so.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

Route = tuple[str, int]
NOT_COUNTED = ("min_speed_infractions", "outside_route_lanes")  # in the score, but every route


def scores(run: Path) -> dict[Route, float]:
    """Each route's driving score from ``run/summary.json``."""
    summary = run / "summary.json"
    if not summary.is_file():
        raise SystemExit(f"error: {summary} not found: give an `evaluate --out` folder")
    episodes: list[dict[str, Any]] = json.loads(summary.read_text())["episodes"]
    return {(e["scenario"], int(e["seed"])): float(e["driving_score"]) for e in episodes}


def infractions(run: Path, route: Route) -> str:
    """The kinds of infraction a route had but ``NOT_COUNTED``, comma-separated ("?": no file)."""
    result = run / f"{route[0]}__seed{route[1]}" / "result.json"
    if not result.is_file():
        return "?"
    kinds = {i["type"] for i in json.loads(result.read_text()).get("infractions", [])}
    return ",".join(sorted(k for k in kinds if k not in NOT_COUNTED))


def paired(before: dict[Route, float], after: dict[Route, float]) -> tuple[float, float, int]:
    """Mean of after − before over the common routes, its 95 % half-interval, and their count."""
    common = sorted(before.keys() & after.keys())
    if len(common) < 2:
        raise SystemExit(f"error: the runs share {len(common)} routes; at least 2 are needed")
    d = [after[k] - before[k] for k in common]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    return mean, 1.96 * sd / math.sqrt(len(d)), len(d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--moved", type=float, default=0.5, help="list routes moved more (points)")
    args = ap.parse_args()
    a, b = scores(args.before), scores(args.after)
    mean, half, n = paired(a, b)
    mean_a, mean_b = sum(a.values()) / len(a), sum(b.values()) / len(b)
    print(f"before {mean_a:.2f}  after {mean_b:.2f}  ({n} routes in common)")
    print(f"paired difference (after - before): {mean:+.2f} ± {half:.2f}")
    for k in sorted(a.keys() & b.keys()):
        if abs(b[k] - a[k]) > args.moved:
            was, now = infractions(args.before, k), infractions(args.after, k)
            print(f"  {k[0]} seed {k[1]}: {a[k]:.1f} -> {b[k]:.1f}  [{was}] -> [{now}]")
    for name, run, sc in (("before", args.before, a), ("after", args.after, b)):
        had = {k: infractions(run, k) for k in sorted(sc)}
        bad = [f"{k[0]} seed {k[1]} ({sc[k]:.1f}: {kinds})" for k, kinds in had.items() if kinds]
        print(f"infractions {name}: {'; '.join(bad) or 'none'}")


if __name__ == "__main__":
    main()
