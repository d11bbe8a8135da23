"""Scenario sweeps as Ray tasks: ``python -m launch evaluate --workers N [--address A]``.

Each (scenario, seed) is one Ray task running one episode in a worker process; the driver
collects every task's ``result.json`` (and, with ``--record``, its recording's bytes, so a
cluster's workers need no shared disk) into ``OUT/<scenario>__seed<N>/``, then aggregates the
finished episodes into ``OUT/summary.json``. A task that fails is listed under ``failures``
with its error; the others are kept. Without ``--address`` a local Ray starts with
``--workers`` CPUs; with ``--workers 1`` and no address the tasks run in this process.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from launch.evaluate import Evaluation, build_summary, format_table, parse_seeds
from launch.record import record_episode
from launch.stack import StackConfig, build_stack, make_world, run_episode
from sim.errors import DrivestackError
from sim.scenario import Scenario, builtin_scenarios, load_scenario
from sim.world import EpisodeResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One episode to run: everything a worker needs, as plain data."""

    scenario: dict[str, Any]  # Scenario.model_dump(mode="json") plus its file's "path"
    seed: int
    stack: dict[str, str]
    max_steps: int | None
    record: bool

    @property
    def name(self) -> str:
        return f"{self.scenario['name']}__seed{self.seed}"


@dataclass(frozen=True)
class TaskOutput:
    result: EpisodeResult
    result_json: dict[str, Any]
    recording: bytes | None


def run_task(task: Task) -> TaskOutput:
    """Run one episode (in a Ray worker or in this process)."""
    scenario = Scenario.model_validate(task.scenario)
    cfg = StackConfig(**task.stack)
    world = make_world(cfg.backend)
    stack = build_stack(cfg)
    recording = None
    try:
        if task.record:
            with tempfile.TemporaryDirectory(prefix="drivestack-") as tmp:
                path = Path(tmp) / "recording.mcap"
                run = record_episode(path, world, stack, cfg, scenario, task.seed, task.max_steps)
                recording = path.read_bytes()
        else:
            run = run_episode(world, stack, scenario, task.seed, task.max_steps)
    finally:
        world.close()
    data = run.result.to_dict() | {"wall_time_s": round(run.wall_time_s, 3), "stack": task.stack}
    if run.stopped_early:
        data["status"] = f"Stopped after --max-steps {task.max_steps}"
    return TaskOutput(run.result, data, recording)


@dataclass(frozen=True)
class SweepSettings:
    workers: int = 1
    address: str | None = None  # a Ray cluster ("auto", "ray://host:10001"); None = local
    record: bool = False
    max_steps: int | None = None


def _tasks(
    scenarios: list[Scenario], seeds: list[int], cfg: StackConfig, s: SweepSettings
) -> list[Task]:
    out = []
    for sc in scenarios:
        data = sc.model_dump(mode="json") | ({"path": str(sc.path)} if sc.path else {})
        for seed in seeds:
            out.append(Task(data, seed, cfg.to_dict(), s.max_steps, s.record))
    return out


def sweep(
    scenario_names: list[str],
    seeds: list[int],
    cfg: StackConfig,
    out: Path,
    settings: SweepSettings,
    on_done: Any = None,
) -> tuple[Evaluation, list[dict[str, Any]]]:
    """Run scenarios × seeds (on Ray when ``workers > 1`` or ``address`` is set); write each
    episode's files and ``summary.json``; return the evaluation and the failed tasks."""
    scenarios = [load_scenario(s) for s in scenario_names]  # bad files fail before any task
    tasks = _tasks(scenarios, seeds, cfg, settings)
    outputs: dict[int, TaskOutput] = {}
    failures: list[dict[str, Any]] = []

    def collect(i: int, output: TaskOutput | None, error: BaseException | None) -> None:
        task = tasks[i]
        if output is not None:
            outputs[i] = output
            _write_episode(out / task.name, output)
        else:
            failures.append(
                {
                    "scenario": task.scenario["name"],
                    "seed": task.seed,
                    "error": _one_line(error),
                }
            )
            log.warning("task %s failed: %s", task.name, _one_line(error))
        if on_done is not None:
            on_done(task, output)

    if settings.workers <= 1 and settings.address is None:
        for i, task in enumerate(tasks):
            try:
                collect(i, run_task(task), None)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                collect(i, None, exc)
    else:
        _run_on_ray(tasks, settings, collect)
    results = [outputs[i].result for i in sorted(outputs)]
    summary = build_summary(results, cfg, seeds)
    for row, i in zip(summary["episodes"], sorted(outputs), strict=True):
        row["status"] = outputs[i].result_json["status"]  # "Stopped after --max-steps N"
    summary["failures"] = failures
    summary["workers"] = settings.workers
    summary["ray_address"] = settings.address
    summary["max_steps"] = settings.max_steps
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return Evaluation(results, summary), failures


def _run_on_ray(tasks: list[Task], s: SweepSettings, collect: Any) -> None:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if s.address is not None:
            ray.init(address=s.address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(
                num_cpus=s.workers,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        pending = {remote.remote(t): i for i, t in enumerate(tasks)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    collect(i, ray.get(ref), None)
                except ray.exceptions.RayTaskError as exc:
                    collect(i, None, exc.cause if exc.cause is not None else exc)
                except ray.exceptions.RayError as exc:  # a worker died, the node went away
                    collect(i, None, exc)
    finally:
        if started_here:
            ray.shutdown()


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _write_episode(d: Path, output: TaskOutput) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "result.json").write_text(json.dumps(output.result_json, indent=2) + "\n")
    if output.recording is not None:
        (d / "recording.mcap").write_bytes(output.recording)


# ---------------------------------------------------------------------------------- command
def wanted(args: argparse.Namespace) -> bool:
    """Whether ``evaluate`` needs this module (Ray, recording, a step limit)."""
    return bool(args.workers > 1 or args.address or args.record or args.max_steps)


def cmd_sweep(args: argparse.Namespace, out: Path) -> int:
    seeds = parse_seeds(args.seeds)
    scenarios = args.scenarios or builtin_scenarios()
    cfg = StackConfig.from_args(args)
    if cfg.backend != "embedded" and args.workers > 1:
        raise DrivestackError(
            f"--workers {args.workers}: parallel sweeps run the embedded backend only "
            "(a CARLA server serves one episode at a time)"
        )
    settings = SweepSettings(args.workers, args.address, args.record, args.max_steps)
    t0 = time.perf_counter()
    total = len(scenarios) * len(seeds)
    with tqdm(total=total, unit="episode", file=sys.stderr, disable=None) as bar:
        ev, failures = sweep(scenarios, seeds, cfg, out, settings, lambda t, o: bar.update(1))
    if ev.results:
        print(format_table(ev))
    for f in failures:
        print(f"FAILED {f['scenario']} seed {f['seed']}: {f['error']}")
    if args.address:
        where = f"Ray at {args.address}"
    elif args.workers > 1:
        where = f"local Ray, {args.workers} workers"
    else:
        where = "in process"
    print(
        f"{len(ev.results)} of {total} episodes finished ({where}) in "
        f"{time.perf_counter() - t0:.1f} s; wrote {out / 'summary.json'}"
    )
    if args.report:
        from launch.report import sweep_report

        sweep_report(out, out / "report", video=False, stride=1)
        print(f"wrote {out / 'report' / 'report.html'}")
    return 1 if failures else 0


def add_sweep_args(ev: argparse.ArgumentParser) -> None:
    ev.add_argument(
        "--workers", type=int, default=1, help="parallel Ray tasks (a local Ray with N CPUs)"
    )
    ev.add_argument("--address", help="a Ray cluster to run on (e.g. auto, ray://host:10001)")
    ev.add_argument("--record", action="store_true", help="record each episode to MCAP")
    ev.add_argument("--max-steps", type=int, default=None, help="stop each episode after N steps")
    ev.add_argument("--report", action="store_true", help="also write OUT/report/report.html")
