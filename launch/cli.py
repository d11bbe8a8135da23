"""The command line: ``run``, ``scenarios``, ``bench``.

Library code logs; this module prints for people (tables, progress bars). Errors caused by input
(a bad scenario file, an unknown map, a route that cannot be planned) print one line and exit 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from launch import perception_cli, planner_cli, replay, report, sweep
from launch.argtypes import add_weights_args, positive_int
from launch.camera_cmds import add_render_parser
from launch.carla_args import add_carla_args, connection_from
from launch.record import add_bench_record_args, add_record_args, run_or_record
from launch.stack import (
    BACKENDS,
    CONTROLLERS,
    PERCEPTIONS,
    PLANNERS,
    StackConfig,
    build_stack,
    make_world,
)
from sim.errors import DrivestackError
from sim.memory import retain_freed_memory
from sim.scenario import builtin_scenarios, load_scenario

EXIT_INPUT = 2


def _cmd_run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    cfg = StackConfig.from_args(args)
    out = Path(args.out) if args.out else Path("runs") / _run_name(scenario.name, args.seed)
    _check_writable(out)
    world = make_world(cfg.backend, connection_from(args))
    stack = build_stack(cfg)
    bar = None
    if not args.quiet:
        bar = tqdm(
            total=None,
            unit="step",
            desc=scenario.name,
            leave=False,
            file=sys.stderr,
            mininterval=0.5,
            disable=None,  # only on a terminal: no bar noise in logs and CI
        )

    def tick(obs: Any) -> None:
        if bar is not None:
            bar.update(1)
            if obs.frame % 40 == 0:
                bar.set_postfix(t=f"{obs.t:.0f}s", v=f"{obs.ego.speed:.1f}m/s")

    try:
        run = run_or_record(args, world, stack, cfg, scenario, tick)
    except (DrivestackError, KeyboardInterrupt) as exc:
        _keep_partial_result(world, cfg, out, exc)
        raise
    finally:
        if bar is not None:
            bar.close()
        world.close()
    result = run.result.to_dict()
    if run.stopped_early:
        result["status"] = f"Stopped after --max-steps {args.max_steps}"
    result["wall_time_s"] = round(run.wall_time_s, 3)
    result["stack"] = cfg.to_dict()
    _write_json(out / "result.json", result)
    _write_json(
        out / "config.json",
        {"stack": cfg.to_dict(), "seed": args.seed, "scenario": scenario.model_dump(mode="json")},
    )
    print(_result_table(result))
    print(f"wrote {out / 'result.json'}" + (f" and {args.record}" if args.record else ""))
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    rows = []
    for name in builtin_scenarios():
        sc = load_scenario(name)
        rows.append((name, sc.map, sc.description))
    width = max(len(r[0]) for r in rows) if rows else 10
    mwidth = max(len(r[1]) for r in rows) if rows else 10
    print(f"{'scenario':<{width}}  {'map':<{mwidth}}  description")
    for name, m, desc in rows:
        print(f"{name:<{width}}  {m:<{mwidth}}  {desc}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from launch.bench import bench_sim

    if args.what == "sim":
        print(bench_sim(args.map, args.vehicles, args.pedestrians, args.steps, args.seed))
    if args.what == "env":
        print(planner_cli.bench_env(args.steps, args.seed))
    if args.what == "mpc":
        from launch.bench_mpc import bench_mpc

        print(bench_mpc(args.batches, args.solves, args.seed, args.fleet_on))
    if args.what == "record":
        from launch.record import bench_record_command

        print(bench_record_command(args))
    if args.what == "camera":
        from launch.camera_cmds import bench_camera

        print(bench_camera(args.map, args.vehicles, args.pedestrians, args.steps, args.seed))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from launch.evaluate import evaluate, format_table, parse_seeds

    seeds = parse_seeds(args.seeds)
    scenarios = args.scenarios or builtin_scenarios()
    cfg = StackConfig.from_args(args)
    out = Path(args.out) if args.out else Path("runs") / _run_name("evaluate", seeds[0])
    _check_writable(out)
    if sweep.wanted(args):  # Ray workers, recordings, step limits: launch/sweep.py
        return sweep.cmd_sweep(args, out)
    total = len(scenarios) * len(seeds)
    with tqdm(total=total, unit="episode", file=sys.stderr, disable=None) as bar:
        ev = evaluate(scenarios, seeds, cfg, out, lambda r: bar.update(1), connection_from(args))
    print(format_table(ev))
    print(f"wrote {out / 'summary.json'}")
    return 0


def _keep_partial_result(world: Any, cfg: StackConfig, out: Path, exc: BaseException) -> None:
    """A failed or interrupted episode keeps its result so far (when it got as far as starting)."""
    try:
        result = world.result().to_dict()
    except Exception:  # the world failed before its episode began: nothing to keep
        return
    crashed = isinstance(exc, DrivestackError)
    result["status"] = "Failed - Simulation crashed" if crashed else "Interrupted"
    result["error"] = str(exc) or type(exc).__name__
    result["stack"] = cfg.to_dict()
    _write_json(out / "result.json", result)
    print(f"kept the result so far in {out / 'result.json'}", file=sys.stderr)


def _run_name(scenario: str, seed: int) -> str:
    return f"{scenario}__seed{seed}__{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise DrivestackError(f"--out {out}: cannot write there ({exc.strerror})") from exc


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # never leave a half-written result behind


def _result_table(r: dict[str, Any]) -> str:
    lines = [
        f"scenario          {r['scenario']}  (seed {r['seed']}, map {r['map']})",
        f"status            {r['status']}",
        f"driving score     {r['driving_score']:.1f}",
        f"route completion  {r['route_completion']:.1f} %  of {r['route_length_m']:.0f} m",
        f"penalty           {r['infraction_penalty']:.3f}",
        f"sim time          {r['sim_time_s']:.1f} s in {r['steps']} steps "
        f"({r['wall_time_s']:.1f} s wall)",
    ]
    counts = {k: v for k, v in r["infraction_counts"].items() if v}
    if counts:
        lines.append("infractions       " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    else:
        lines.append("infractions       none")
    if r["outside_route_lanes_pct"] > 0:
        lines.append(f"outside lanes     {r['outside_route_lanes_pct']:.2f} % of the route")
    speeding = [e for e in r["events"] if e["type"] == "speeding"]
    if speeding:
        lines.append(f"speeding          {len(speeding)} interval(s) (reported, not scored)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m launch", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one scenario headless and score it")
    run.add_argument("scenario", help="a built-in scenario name or a path to a YAML file")
    run.add_argument("--backend", choices=BACKENDS, default="embedded")
    run.add_argument("--perception", choices=PERCEPTIONS, default="ground-truth")
    run.add_argument("--planner", choices=PLANNERS, default="rules")
    run.add_argument("--policy", default="", help="the RL planner's .zip (default: shipped)")
    add_weights_args(run)
    run.add_argument("--controller", choices=CONTROLLERS, default="pid")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", help="directory for result.json (default runs/<run-name>)")
    run.add_argument(
        "--max-steps", type=positive_int, default=None, help="stop after this many steps"
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_carla_args(run)
    add_record_args(run)
    run.set_defaults(func=_cmd_run)

    ev = sub.add_parser("evaluate", help="run scenarios × seeds and summarise the scores")
    ev.add_argument("--scenarios", nargs="+", help="names or YAML paths (default: all built-in)")
    ev.add_argument("--seeds", default="0", help="N, A..B (inclusive) or a comma list")
    ev.add_argument("--backend", choices=BACKENDS, default="embedded")
    ev.add_argument("--perception", choices=PERCEPTIONS, default="ground-truth")
    ev.add_argument("--planner", choices=PLANNERS, default="rules")
    ev.add_argument("--policy", default="", help="the RL planner's .zip (default: shipped)")
    add_weights_args(ev)
    ev.add_argument("--controller", choices=CONTROLLERS, default="pid")
    ev.add_argument("--out", help="directory for summary.json and the episodes' result.json")
    add_carla_args(ev)
    sweep.add_sweep_args(ev)
    ev.set_defaults(func=_cmd_evaluate)

    scen = sub.add_parser("scenarios", help="list the built-in scenarios")
    scen.set_defaults(func=_cmd_scenarios)

    bench = sub.add_parser("bench", help="benchmarks")
    bench.add_argument("what", choices=("sim", "record", "camera", "mpc", "env"))
    bench.add_argument("--map", default="town_grid")
    bench.add_argument("--vehicles", type=int, default=30)
    bench.add_argument("--pedestrians", type=int, default=20)
    bench.add_argument("--steps", type=positive_int, default=2000)
    bench.add_argument("--seed", type=int, default=0)
    add_bench_record_args(bench)
    bench.add_argument("--batches", default="1,64,1024,4096", help="mpc: fleet sizes")
    bench.add_argument("--solves", type=positive_int, default=200, help="mpc: one-vehicle solves")
    bench.add_argument(
        "--fleet-on",
        choices=("all", "cpu", "cuda"),
        default="all",
        help="mpc: time the fleets on the CPU, CUDA, or both (all: CUDA where there is one)",
    )
    bench.set_defaults(func=_cmd_bench)
    planner_cli.add_parser(sub)
    perception_cli.add_parser(sub)
    replay.add_parser(sub)
    report.add_parser(sub)
    add_render_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    retain_freed_memory()  # freed temporaries stay in the heap: no page faults per tick
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except DrivestackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
