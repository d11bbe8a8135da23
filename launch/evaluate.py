"""Evaluation over scenarios × seeds: a Leaderboard-style table and ``summary.json``.

Episodes run one after another in this process; each writes its own ``result.json`` as soon as
it ends, so an interrupted evaluation keeps every finished episode.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.stack import StackConfig, build_stack, make_world, run_episode
from sim.carla_backend.client import CarlaConnection
from sim.errors import DrivestackError
from sim.metrics import summarize
from sim.scenario import load_scenario
from sim.world import EpisodeResult


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → [3]; ``"0..4"`` → [0, 1, 2, 3, 4] (inclusive); ``"1,5,9"`` → [1, 5, 9]."""
    try:
        if ".." in text:
            lo, hi = (int(p) for p in text.split("..", 1))
            if hi < lo:
                raise ValueError
            return list(range(lo, hi + 1))
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise DrivestackError(
            f"--seeds {text!r}: expected N, A..B (inclusive, A <= B) or a comma list"
        ) from None


@dataclass(frozen=True)
class Evaluation:
    results: list[EpisodeResult]
    summary: dict[str, Any]


def evaluate(
    scenarios: Sequence[str],
    seeds: Sequence[int],
    cfg: StackConfig,
    out: Path,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    connection: CarlaConnection | None = None,
) -> Evaluation:
    """Run every scenario with every seed; write ``out/<scenario>__seed<N>/result.json`` and
    ``out/summary.json``."""
    loaded = [load_scenario(s) for s in scenarios]  # every file is checked before anything runs
    results: list[EpisodeResult] = []
    for scenario in loaded:
        for seed in seeds:
            world = make_world(cfg.backend, connection)
            try:
                run = run_episode(world, build_stack(cfg), scenario, seed)
            finally:
                world.close()  # a CARLA world gives the server back its actors and settings
            episode_dir = out / f"{scenario.name}__seed{seed}"
            episode_dir.mkdir(parents=True, exist_ok=True)
            data = run.result.to_dict() | {"wall_time_s": round(run.wall_time_s, 3)}
            (episode_dir / "result.json").write_text(json.dumps(data, indent=2) + "\n")
            results.append(run.result)
            if on_episode is not None:
                on_episode(run.result)
    summary = build_summary(results, cfg, seeds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return Evaluation(results, summary)


def build_summary(
    results: Sequence[EpisodeResult], cfg: StackConfig, seeds: Sequence[int]
) -> dict[str, Any]:
    """``summary.json``: the Leaderboard means over ``results`` and one row per episode."""
    summary = summarize([r.score for r in results]).to_dict()
    summary["stack"] = cfg.to_dict()
    summary["seeds"] = list(seeds)
    summary["episodes"] = [
        {
            "scenario": r.scenario,
            "seed": r.seed,
            "driving_score": r.score.driving_score,
            "route_completion": r.score.route_completion,
            "infraction_penalty": r.score.infraction_penalty,
            "status": r.score.status,
        }
        for r in results
    ]
    return summary


def format_table(ev: Evaluation) -> str:
    """Per-episode rows, then the means with their 95 % intervals and infractions per km."""
    rows = [f"{'scenario':<22} {'seed':>4} {'DS':>6} {'RC':>6} {'IP':>6}  status"]
    for r, row in zip(ev.results, ev.summary["episodes"], strict=True):
        s = r.score
        status = row["status"]  # the summary's: a sweep says "Stopped after --max-steps N"
        rows.append(
            f"{r.scenario:<22} {r.seed:>4} {s.driving_score:6.1f} "
            f"{s.route_completion:6.1f} {s.infraction_penalty:6.3f}  {status}"
        )
    m = ev.summary
    rows += [
        "",
        f"driving score     {m['driving_score']:6.1f} ± {m['driving_score_ci95']:.1f}  "
        f"(mean ± 95 % interval over {m['n_routes']} routes)",
        f"route completion  {m['route_completion']:6.1f} ± {m['route_completion_ci95']:.1f}",
        f"penalty           {m['infraction_penalty']:6.3f} ± {m['infraction_penalty_ci95']:.3f}",
        f"driven            {m['total_km_driven']:.2f} km",
        "infractions per km: "
        + ", ".join(f"{k} {v:.2f}" for k, v in m["infractions_per_km"].items() if v > 0)
        if any(v > 0 for v in m["infractions_per_km"].values())
        else "infractions per km: none",
    ]
    return "\n".join(rows)
