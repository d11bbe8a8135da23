"""How closely a controller follows the planner's speed: one episode, and at every decision the
ego's speed beside the plan's first speed point (what the planner asks for now).

    python scripts/plan_tracking.py [--scenario stop_signs] [--seed 100] [--planner rl]
                                    [--controller mpc] [--every 0.5] [--policy ZIP]
                                    [--actions T0..T1]

Prints the episode's infractions, the largest and the median lag (ego speed minus plan speed)
while the plan slows down, the lowest speed reached, and a trace of the decelerations
(docs/planner.md, "Why, and what next"). With ``--actions``, every decision between T0 and
T1 seconds: for the RL planner the policy's action (speed share, offset, stop at the line), the
distance to the next stop line the encoder sees, the governing light, and the obstacles the
safety envelope counts (bumper gap, offset from the route, speed); for the rule planner whether
it stops for a line, what limits its speed, and the lights it is given (state, ego-frame x of
the stop line).
"""

from __future__ import annotations

import argparse
import itertools
import statistics

from launch.stack import StackConfig, build_stack, make_world, run_episode
from planning.rl import RLPlanner
from planning.rules import RulePlanner
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
    ap.add_argument("--actions", default="", help="T0..T1: print the planner's decisions")
    args = ap.parse_args()
    window = _window(args.actions) if args.actions else None
    cfg = StackConfig(planner=args.planner, controller=args.controller, policy=args.policy)
    stack = build_stack(cfg)
    rows: list[tuple[float, float, float]] = []  # t, ego speed, plan speed now
    inner = stack.planner.update

    def update(p: PerceptionOutput, route: RouteAhead, ego: VehicleState) -> Plan:
        plan = inner(p, route, ego)
        rows.append((ego.t, ego.speed, float(plan.speed[0])))
        if window is not None and window[0] <= ego.t <= window[1]:
            planner = stack.planner
            if isinstance(planner, RLPlanner):
                print(_decision(planner, p, ego.t, ego.speed, float(plan.speed[0])))
            elif isinstance(planner, RulePlanner):
                print(_rule_decision(planner, p, ego.t, ego.speed, float(plan.speed[0])))
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


def _window(text: str) -> tuple[float, float]:
    try:
        t0, t1 = (float(v) for v in text.split(".."))
    except ValueError:
        raise SystemExit(f"--actions {text!r}: expected T0..T1 in seconds, e.g. 50..62") from None
    return t0, t1


def _decision(planner: RLPlanner, p: PerceptionOutput, t: float, v: float, plan_v: float) -> str:
    a, enc = planner.last_action, planner.encoder
    light = f"{p.lights[0].state.name.lower()}" if p.lights else "-"
    obstacles = " ".join(
        f"({o.gap_m:.1f} m, {o.d_m:+.1f} m, {o.speed_mps:.1f} m/s)" for o in enc.obstacles[:3]
    )
    return (
        f"  t {t:6.2f} s  ego {v:5.2f}  plan {plan_v:5.2f} m/s  action "
        f"[{a[0]:+.2f} {a[1]:+.2f} {a[2]:+.2f}]  line {enc.stop_line_m:6.1f} m  light {light:7s}"
        f"  obstacles {obstacles or '-'}"
    )


def _rule_decision(
    planner: RulePlanner, p: PerceptionOutput, t: float, v: float, plan_v: float
) -> str:
    lights = " ".join(f"({lt.state.name.lower()}, {lt.stop_x:.1f} m)" for lt in p.lights)
    return (
        f"  t {t:6.2f} s  ego {v:5.2f}  plan {plan_v:5.2f} m/s  stops at a line "
        f"{'yes' if planner.stops_at_line else 'no ':3s}  {planner.reason:28s}"
        f"  lights {lights or '-'}"
    )


if __name__ == "__main__":
    main()
