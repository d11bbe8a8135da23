"""``python -m launch planner train``: train the RL planner (planning/train.py)."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from pathlib import Path

from launch.argtypes import positive_int
from planning.env import CONTROLLERS, EnvSettings

ALGOS = ("ppo", "sac")  # planning.train checks the same list; imported lazily (torch, SB3)


def add_parser(sub: argparse._SubParsersAction) -> None:
    planner = sub.add_parser("planner", help="the RL planner: train it, compare evaluations")
    psub = planner.add_subparsers(dest="planner_command", required=True)
    tr = psub.add_parser(
        "train",
        help="train a policy on drivestack/Route-v0 with stable-baselines3",
        description="Train PPO or SAC with SubprocVecEnv, VecNormalize, checkpoints, an "
        "evaluation callback and TensorBoard; the run's config is saved beside the policy.",
    )
    tr.add_argument("--algo", choices=ALGOS, default="ppo")
    tr.add_argument("--timesteps", type=positive_int, default=1_000_000, help="env steps")
    tr.add_argument("--n-envs", type=positive_int, default=2, help="parallel environments")
    tr.add_argument("--device", default="cpu", help="torch device of the learner (cpu, cuda)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--controller", choices=CONTROLLERS, default="pid")
    tr.add_argument("--out", help="output directory (default runs/planner/<algo>_seed<N>_<time>)")
    tr.add_argument("--resume", help="a checkpoint .zip (its VecNormalize .pkl lies beside it)")
    tr.add_argument("--checkpoint-every", type=positive_int, default=100_000, help="env steps")
    tr.add_argument("--eval-every", type=positive_int, default=50_000, help="env steps")
    tr.add_argument("--eval-episodes", type=positive_int, default=8)
    tr.add_argument(
        "--bc-steps",
        type=int,
        default=0,
        help="PPO only: env steps of DAgger imitation of the rule planner before RL (0: none)",
    )
    tr.add_argument(
        "--bc-rounds", type=positive_int, default=4, help="DAgger rounds of the warm start"
    )
    tr.add_argument("--progress", action="store_true", help="show a progress bar")
    tr.set_defaults(func=_cmd_train)
    cmp = psub.add_parser(
        "compare",
        help="tabulate evaluations side by side (overall, per scenario, infractions per km)",
        description="Read the summary.json of `python -m launch evaluate --out DIR` runs and "
        "print Markdown tables: the overall scores, the mean driving score per scenario and "
        "the infractions per km.",
    )
    cmp.add_argument("runs", nargs="+", help="NAME=DIR (or DIR) of evaluate outputs")
    cmp.set_defaults(func=_cmd_compare)


def _cmd_train(args: argparse.Namespace) -> int:
    from planning.train import TrainSettings, train

    base = TrainSettings()
    cfg = dataclasses.replace(
        base,
        algo=args.algo,
        timesteps=args.timesteps,
        n_envs=args.n_envs,
        seed=args.seed,
        device=args.device,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        env=dataclasses.replace(EnvSettings(), controller=args.controller),
        bc=dataclasses.replace(base.bc, steps=args.bc_steps, rounds=args.bc_rounds),
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (
        Path(args.out)
        if args.out
        else Path("runs/planner") / f"{args.algo}_seed{args.seed}_{stamp}"
    )
    policy = train(cfg, out, Path(args.resume) if args.resume else None, args.progress)
    print(
        f"wrote {policy} and {policy.with_name('vecnormalize.pkl')} (config: {out / 'config.json'})"
    )
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    print(compare(args.runs))
    return 0


def compare(runs: list[str]) -> str:
    """Markdown tables of several evaluations' ``summary.json`` (``NAME=DIR`` or ``DIR``)."""
    import json

    from sim.errors import DrivestackError

    named: list[tuple[str, dict]] = []
    for item in runs:
        name, _, folder = item.rpartition("=")
        path = Path(folder) / "summary.json"
        if not path.exists():
            raise DrivestackError(f"{path}: no such file; pass the --out DIR of an evaluate run")
        named.append((name or Path(folder).name, json.loads(path.read_text())))
    lines = [
        "| run | planner | controller | routes | driving score | route completion "
        "| infraction penalty | km driven |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in named:
        stack = s.get("stack", {})
        lines.append(
            f"| {name} | {stack.get('planner', '?')} | {stack.get('controller', '?')} "
            f"| {s['n_routes']} | {s['driving_score']:.1f} ± {s['driving_score_ci95']:.1f} "
            f"| {s['route_completion']:.1f} ± {s['route_completion_ci95']:.1f} "
            f"| {s['infraction_penalty']:.3f} ± {s['infraction_penalty_ci95']:.3f} "
            f"| {s['total_km_driven']:.2f} |"
        )
    scenarios = sorted({e["scenario"] for _, s in named for e in s["episodes"]})
    lines += ["", "| scenario | " + " | ".join(n for n, _ in named) + " |"]
    lines.append("|---|" + "---|" * len(named))
    for sc in scenarios:
        cells = []
        for _, s in named:
            ds = [e["driving_score"] for e in s["episodes"] if e["scenario"] == sc]
            cells.append(f"{sum(ds) / len(ds):.1f}" if ds else "–")
        lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    kinds = [
        k
        for k in named[0][1]["infractions_per_km"]
        if any(s["infractions_per_km"].get(k, 0.0) > 0.0 for _, s in named)
    ]
    lines += ["", "| infractions per km | " + " | ".join(n for n, _ in named) + " |"]
    lines.append("|---|" + "---|" * len(named))
    for k in kinds:
        cells = [f"{s['infractions_per_km'].get(k, 0.0):.2f}" for _, s in named]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_env(steps: int, seed: int) -> str:
    """``drivestack/Route-v0`` steps per second on one core: no camera, the noise-model
    perception, PID, a seeded random policy (resets included, counted in the time).

    CPU time of this process is the figure per core (it does not count time the process waited
    for a core on a busy machine); wall time is printed beside it. The training maps are parsed
    before the clock starts: a process parses each map once in its life (``load_map`` caches
    them), so a training worker pays that once per run, not once per few thousand steps.
    """
    import time

    import numpy as np

    from planning.env import RouteEnv
    from sim.scenario import BUILTIN_MAPS
    from sim.world import load_map

    env = RouteEnv()
    for m in env.cfg.maps:
        load_map(str(BUILTIN_MAPS / f"{m.name}.xodr"))
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    episodes = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        drive = rng.uniform(-0.2, 1.0, size=2).astype(np.float32) * np.array(
            [1.0, 0.1], dtype=np.float32
        )
        action = np.append(drive, np.float32(-1.0))  # speed, offset; no stop at lines
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            episodes += 1
            env.reset()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cfg = env.cfg
    return "\n".join(
        [
            f"bench env: drivestack/Route-v0, {steps} steps ({episodes} episodes ended), "
            f"decisions every {cfg.planner_dt_s:g} s, world dt {cfg.world_dt_s:g} s, "
            f"controller {cfg.controller}, noise-model perception, no camera (seed {seed})",
            f"env steps per second per core   {steps / cpu:8.0f}   (CPU time of this process)",
            f"env steps per second wall clock {steps / wall:8.0f}",
        ]
    )
