"""How closely a controller follows the planner's speed: one episode, and at every decision the
ego's speed beside the plan's first speed point (what the planner asks for now).

    python scripts/plan_tracking.py [--scenario stop_signs] [--seed 100] [--planner rl]
                                    [--controller mpc] [--every 0.5] [--policy ZIP]

Prints the episode's infractions, the largest and the median lag (ego speed minus plan speed)
while the plan slows down, the lowest speed reached, and a trace of the decelerations
(docs/planner.md, "Why, and what next").
"""

from __future__ import annotations

import argparse
import itertools
import statistics

from launch.stack import StackConfig, build_stack, make_world, run_episode
from sim.messages import PerceptionOutput, Plan, RouteAhead, VehicleState
from sim.scenario import load_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="stop_signs")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--planner", default="rl", choices=("rules", "rl"))
    ap.add_argument("--controller", default="mpc", choices=("pid", "mpc"))
    ap.add_argument("--every", type=float, default=0.5, help="trace period (s)")
    ap.add_argument("--policy", default="", help="the RL planner's policy (default: shipped)")
    args = ap.parse_args()
    cfg = StackConfig(planner=args.planner, controller=args.controller, policy=args.policy)
    stack = build_stack(cfg)
    rows: list[tuple[float, float, float]] = []  # t, ego speed, plan speed now
    inner = stack.planner.update

    def update(p: PerceptionOutput, route: RouteAhead, ego: VehicleState) -> Plan:
        plan = inner(p, route, ego)
        rows.append((ego.t, ego.speed, float(plan.speed[0])))
        return plan

    stack.planner.update = update  # type: ignore[method-assign,assignment]
    run = run_episode(make_world(cfg.backend), stack, load_scenario(args.scenario), args.seed)
    infractions = [f"{i['type']} at {i.get('t', 0.0):.1f} s" for i in run.result.infractions]
    print(
        f"{args.scenario} seed {args.seed}, {args.planner} + {args.controller}: "
        f"DS {run.result.score.driving_score:.1f}; infractions: {', '.join(infractions) or 'none'}"
    )
    slowing = [(t, v, p) for (t, v, p), (_, _, p_next) in itertools.pairwise(rows) if p_next < p]
    lags = [v - p for _, v, p in slowing]
    if lags:
        print(
            f"while the plan slows ({len(lags)} decisions): ego speed above the plan's by "
            f"{statistics.median(lags):.2f} m/s median, {max(lags):.2f} m/s at most"
        )
    print(f"lowest speed {min(v for _, v, _ in rows[1:]):.3f} m/s after the start")
    last = -1e9
    for t, v, p in slowing:
        if t - last >= args.every:
            print(f"  t {t:6.2f} s   ego {v:6.3f} m/s   plan {p:6.3f} m/s")
            last = t


if __name__ == "__main__":
    main()
