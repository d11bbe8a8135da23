"""Where learned perception disagrees with ground truth while it drives: one episode.

    python scripts/perception_diff.py [--scenario red_lights] [--seed 0] [--perception cnn]
                                      [--planner rules] [--controller pid] [--range 30]

The learned perceiver drives; the ground-truth perceiver reads the same observations beside it.
Prints the episode's infractions, then every change of what the two disagree on, as intervals:

- ``limit``: the speed limit the planner would use (the perceived one, or the route's while
  none is perceived), when it differs from ground truth's by more than 1 km/h;
- ``light``: the governing light's state and the ego-frame x of its stop line;
- ``lead``: the nearest vehicle or pedestrian within 2 m of the ego's lane ahead, closer than
  ``--range`` metres: one that ground truth has and perception misses, or the reverse.

And at the end the share of the episode each kind of disagreement lasted (docs/perception.md).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from launch.stack import StackConfig, build_stack, make_world, run_episode
from perception.ground_truth import GroundTruthPerceiver
from sim.messages import Observation, PerceptionOutput
from sim.scenario import load_scenario

KMH = 3.6


def lead(p: PerceptionOutput, range_m: float) -> float | None:
    """Bumper-free distance (m) to the nearest object ahead within 2 m of the ego's line."""
    ahead = [o.x for o in p.objects if 0.0 < o.x < range_m and abs(o.y) < 2.0]
    return min(ahead) if ahead else None


def light(p: PerceptionOutput) -> str:
    if not p.lights:
        return "none"
    lt = min(p.lights, key=lambda lt: lt.stop_x)
    return f"{lt.state.name.lower()}@{lt.stop_x:.0f}m"


def differences(
    obs: Observation, mine: PerceptionOutput, truth: PerceptionOutput, rng: float
) -> dict[str, str]:
    route_limit = float(obs.route.speed_limit_mps[0]) if len(obs.route.xy) else 0.0
    lim_m = mine.speed_limit_mps or route_limit
    lim_t = truth.speed_limit_mps or route_limit
    out: dict[str, str] = {}
    if abs(lim_m - lim_t) * KMH > 1.0:
        out["limit"] = f"perceived {lim_m * KMH:.0f} km/h, truth {lim_t * KMH:.0f}"
    lm, lt = light(mine), light(truth)
    if lm.split("@")[0] != lt.split("@")[0]:
        out["light"] = f"perceived {lm}, truth {lt}"
    dm, dt = lead(mine, rng), lead(truth, rng)
    if (dm is None) != (dt is None):
        out["lead"] = (
            f"missed: truth has one at {dt:.0f} m" if dm is None else f"phantom at {dm:.0f} m"
        )
    return out


def _what(text: str) -> str:
    """A disagreement without its distances: ``red@12m`` and ``red@11m`` are one interval, and
    so are a lead missed at 23 m and at 19 m; a limit's values are what is disagreed on."""
    words = text.split()
    return " ".join(
        w.split("@")[0]
        for w, after in zip(words, [*words[1:], ""], strict=True)
        if not (w[0].isdigit() and after == "m")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="red_lights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--perception", default="cnn", choices=("cnn", "transformer"))
    ap.add_argument("--planner", default="rules", choices=("rules", "rl"))
    ap.add_argument("--controller", default="pid", choices=("pid", "mpc"))
    ap.add_argument("--range", type=float, default=30.0, help="lead objects nearer than this (m)")
    args = ap.parse_args()
    cfg = StackConfig(perception=args.perception, planner=args.planner, controller=args.controller)
    stack = build_stack(cfg)
    truth_perceiver = GroundTruthPerceiver()
    inner = stack.perceiver.update
    open_since: dict[str, tuple[float, str]] = {}
    lasted: dict[str, float] = defaultdict(float)
    last_t = [0.0]

    def update(obs: Observation) -> PerceptionOutput:
        mine = inner(obs)
        diff = differences(obs, mine, truth_perceiver.update(obs), args.range)
        t = obs.ego.t
        for kind in ("limit", "light", "lead"):
            now = diff.get(kind)
            was = open_since.get(kind)
            # an interval ends when what is disagreed on changes (not a distance in it)
            if was is not None and (now is None or _what(was[1]) != _what(now)):
                print(f"{was[0]:7.1f}-{t:7.1f} s  {kind:5s}  {was[1]}")
                del open_since[kind]
            if now is not None and kind not in open_since:
                open_since[kind] = (t, now)
            if now is not None:
                lasted[kind] += t - last_t[0]
        last_t[0] = t
        return mine

    stack.perceiver.update = update  # type: ignore[method-assign]
    truth_perceiver.reset()
    run = run_episode(make_world(cfg.backend), stack, load_scenario(args.scenario), args.seed)
    for kind, (t0, what) in open_since.items():
        print(f"{t0:7.1f}-{last_t[0]:7.1f} s  {kind:5s}  {what}")
    res = run.result
    infractions = [f"{i['type']} at {i.get('t', 0.0):.1f} s" for i in res.infractions]
    print(
        f"\n{args.scenario} seed {args.seed}, {args.perception} + {args.planner}: "
        f"DS {res.score.driving_score:.1f}; infractions: {', '.join(infractions) or 'none'}"
    )
    total = max(last_t[0], 1e-9)
    shares = ", ".join(f"{k} {100 * lasted[k] / total:.0f} %" for k in ("limit", "light", "lead"))
    print(f"time in disagreement: {shares} of {total:.0f} s")


if __name__ == "__main__":
    main()
