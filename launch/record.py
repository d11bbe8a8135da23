"""Recording a run: ``run ... --record FILE.mcap`` and ``bench record``.

The stages are wrapped in taps that hand every message to a :class:`~sim.recording.Recorder`
on its way through the loop, so ``run_episode`` stays the one loop and the stages never know
they are recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launch.argtypes import positive_int
from launch.stack import EpisodeRun, Stack, StackConfig, build_stack, make_world, run_episode
from sim.backend import World
from sim.errors import DrivestackError
from sim.messages import (
    Observation,
    VehicleParams,
)
from sim.recording import McapSink, Recorder, RecorderSettings, map_lanes
from sim.recording.derive import DerivingSink
from sim.recording.pipe import PipeSink
from sim.scenario import CameraSpec, Scenario, load_scenario

log = logging.getLogger(__name__)

STAGES = ("perception", "planning", "control")


# ------------------------------------------------------------------------ stage settings
def stage_settings(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every stage's settings dataclass as a JSON-ready dict (what a recording stores)."""
    out = {}
    for name, stage in zip(STAGES, (stack.perceiver, stack.planner, stack.controller), strict=True):
        cfg = getattr(stage, "cfg", None)
        is_settings = dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)
        out[name] = dataclasses.asdict(cfg) if is_settings else {}  # type: ignore[arg-type]
    return json.loads(json.dumps(out, default=str))  # tuples -> lists, as they read back


def _rebuild(default: Any, values: dict[str, Any], where: str) -> Any:
    """``default`` (a frozen settings dataclass) with ``values`` applied, recursively."""
    fields = {f.name: f for f in dataclasses.fields(default)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise DrivestackError(
                f"{where}.{key}: no such setting; allowed: {', '.join(sorted(fields))}"
            )
        current = getattr(default, key)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            if not isinstance(value, dict):
                raise DrivestackError(f"{where}.{key}: expected a group of settings")
            changes[key] = _rebuild(current, value, f"{where}.{key}")
        else:
            changes[key] = _coerce(current, value, f"{where}.{key}")
    return dataclasses.replace(default, **changes)


def _coerce(current: Any, value: Any, where: str) -> Any:
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return value.lower() in ("true", "1")
            return bool(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, tuple):
            return tuple(type(current[0])(v) for v in value) if current else tuple(value)
    except (TypeError, ValueError):
        raise DrivestackError(
            f"{where}: cannot use {value!r} for a setting of type {type(current).__name__}"
        ) from None
    return value


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["planning.a_max=1.5", "control.ego.max_steer_rad=0.4"]`` → nested dicts per stage."""
    out: dict[str, dict[str, Any]] = {s: {} for s in STAGES}
    for item in items:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or parts[0] not in STAGES or not all(parts):
            raise DrivestackError(
                f"--set {item!r}: expected STAGE.FIELD=VALUE with STAGE one of "
                f"{', '.join(STAGES)} (e.g. planning.a_max=1.5)"
            )
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        node = out[parts[0]]
        for p in parts[1:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_configured_stack(
    cfg: StackConfig,
    settings: dict[str, dict[str, Any]] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Stack:
    """The stack ``cfg`` names, with recorded ``settings`` and then ``overrides`` applied."""
    stack = build_stack(cfg)
    stages = [stack.perceiver, stack.planner, stack.controller]
    for i, name in enumerate(STAGES):
        values = _merge((settings or {}).get(name, {}), (overrides or {}).get(name, {}))
        if not values:
            continue
        stage = stages[i]
        default = getattr(stage, "cfg", None)
        if not dataclasses.is_dataclass(default) or isinstance(default, type):
            raise DrivestackError(f"{name}: {type(stage).__name__} has no settings to change")
        new = _rebuild(default, values, name)
        if new != default:
            rebuild = getattr(stage, "with_settings", None)  # a stage holding more than settings
            try:
                stages[i] = rebuild(new) if rebuild else type(stage)(new)  # type: ignore[call-arg]
            except TypeError:
                raise DrivestackError(
                    f"{name}: {type(stage).__name__} cannot be rebuilt with changed settings "
                    "from the command line"
                ) from None
    return Stack(*stages)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- taps
class _Tap:
    """A stage whose ``update`` hands its output (and, with ``before``, its input) to the
    recorder; every other attribute (``camera_spec``, ``cfg``, ...) passes through to the stage."""

    def __init__(
        self, inner: Any, after: Callable[[Any], None], before: Callable[..., None] | None = None
    ) -> None:
        self.inner, self.after, self.before = inner, after, before

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def reset(self) -> None:
        self.inner.reset()

    def update(self, *args: Any) -> Any:
        if self.before is not None:
            self.before(*args)
        out = self.inner.update(*args)
        self.after(out)
        return out


def episode_config(
    world: World,
    stack: Stack,
    cfg: StackConfig,
    scenario: Scenario,
    seed: int,
    max_steps: int | None,
) -> dict[str, Any]:
    """What a recording stores to re-simulate the episode (``/config``)."""
    world_cfg = getattr(world, "cfg", None)
    vehicle = getattr(world_cfg, "ego", None) or VehicleParams()
    return {
        "stack": cfg.to_dict(),
        "seed": seed,
        "max_steps": max_steps,
        "settings": stage_settings(stack),
        "vehicle": dataclasses.asdict(vehicle),
        "backend": world.backend,
        "scenario_path": str(scenario.path) if scenario.path else None,
    }


def run_recorded(
    recorder: Recorder,
    world: World,
    stack: Stack,
    cfg: StackConfig,
    scenario: Scenario,
    seed: int,
    max_steps: int | None = None,
    on_step: Callable[[Observation], None] | None = None,
    config: dict[str, Any] | None = None,
) -> EpisodeRun:
    """``run_episode`` with every message recorded; the recording is finished whatever happens
    (its ``drivestack.end`` status says how the episode ended)."""
    if config is None:
        config = episode_config(world, stack, cfg, scenario, seed, max_steps)
        config["recorder"] = dataclasses.asdict(recorder.cfg)
    lanes, signs = map_lanes(scenario.map_path())
    recorder.begin(scenario.model_dump(mode="json"), config, lanes, signs)
    last: list[Observation] = []

    def observe(obs: Observation) -> None:  # before perception: the tick's observation
        if recorder.frames == 0:
            route = getattr(world, "route", None)  # known once the episode has started
            if route is not None:
                recorder.begin_route(route)
        recorder.observation(obs)

    def step(obs: Observation) -> None:
        last[:] = [obs]
        if on_step is not None:
            on_step(obs)

    tapped = Stack(
        _Tap(stack.perceiver, recorder.perception, before=observe),
        _Tap(stack.planner, recorder.plan),
        _Tap(stack.controller, recorder.control),  # type: ignore[arg-type]  # Controller is an ABC
    )
    status = "unknown"
    result: dict[str, Any] | None = None
    try:
        run = run_episode(world, tapped, scenario, seed, max_steps, step)
        status = run.result.score.status
        if run.stopped_early:
            status = f"Stopped after --max-steps {max_steps}"
        result = run.result.to_dict() | {"status": status}
        return run
    except KeyboardInterrupt:
        status = f"interrupted at frame {recorder.last_frame}"
        raise
    except BaseException as exc:
        status = f"failed at frame {recorder.last_frame}: {type(exc).__name__}: {exc}"
        raise
    finally:
        if last and last[0].frame > recorder.last_frame:
            recorder.observation(last[0])  # the final state, after the last control
        if result is None:
            try:
                result = world.result().to_dict() | {"status": status}
            except Exception:  # the world may be what failed
                result = None
        recorder.end(result, status)


def record_episode(
    path: Path,
    world: World,
    stack: Stack,
    cfg: StackConfig,
    scenario: Scenario,
    seed: int,
    max_steps: int | None = None,
    on_step: Callable[[Observation], None] | None = None,
    settings: RecorderSettings | None = None,
) -> EpisodeRun:
    """Run and record to ``path``; an interrupted or failed run still leaves a finished file,
    and the log says up to which frame."""
    recorder = open_recorder(path, settings or RecorderSettings())
    try:
        return run_recorded(recorder, world, stack, cfg, scenario, seed, max_steps, on_step)
    except BaseException:
        log.warning(
            "recording %s was closed after frame %d; it is readable up to there",
            path,
            recorder.last_frame,
        )
        raise


def open_recorder(path: Path, settings: RecorderSettings) -> Recorder:
    """A recorder writing to ``path`` through the sink ``settings.writer`` names."""
    try:
        sink: DerivingSink | PipeSink
        if settings.writer == "process":
            _check_writable(path)
            sink = PipeSink(path, settings)
        else:
            sink = DerivingSink(McapSink(path, settings.chunk_size_bytes), settings)
    except OSError as exc:
        raise DrivestackError(f"--record {path}: cannot write there ({exc.strerror})") from exc
    return Recorder(sink, settings)


def _check_writable(path: Path) -> None:
    """Fail here, in one line, rather than in the writer process."""
    with path.open("wb"):
        pass


def add_record_args(run: argparse.ArgumentParser) -> None:
    """``--record``, ``--record-images`` and ``--record-depth`` on the ``run`` command."""
    run.add_argument("--record", metavar="FILE.mcap", help="record every tick to an MCAP file")
    run.add_argument(
        "--record-images",
        choices=("jpeg", "png"),
        default="jpeg",
        help="camera image encoding (png is lossless, for exact perception replay; slower)",
    )
    run.add_argument(
        "--record-depth",
        action="store_true",
        help="also record the cameras' depth images, lossless (sizes: docs/recording.md): a "
        "learned perceiver places some objects by depth, so an exact perception replay needs "
        "them",
    )


# --------------------------------------------------------------------------------- bench
def bench_record(
    scenario_name: str, steps: int, seed: int, repeats: int, out: Path, camera: str | None = None
) -> str:
    """Episode time with and without recording in ``repeats`` alternating pairs, and the
    recording's size per minute of simulated driving.

    Overheads are medians over the pairs of each pair's ratio (the two runs of a pair are
    seconds apart, so a VM whose speed drifts over minutes disturbs them alike, and every other
    pair runs the recorded episode first), for the loop
    process's CPU time and for wall time; beside them, the time the loop spent inside the
    recorder's calls (encoding and handing over the messages), which no other process can
    inflate, and the writer process's CPU time."""
    import resource
    import statistics

    scenario = load_scenario(scenario_name)
    if camera:
        scenario = _with_camera(scenario, camera)
    cfg = StackConfig()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_record.mcap"
    cpu: dict[bool, list[float]] = {False: [], True: []}
    wall: dict[bool, list[float]] = {False: [], True: []}
    in_recorder: list[float] = []
    writer_cpu: list[float] = []
    run_episode(make_world(cfg.backend), build_stack(cfg), scenario, seed, 20)  # warm caches
    for pair in range(repeats):
        # ABBA: every other pair records first, so a drift of the VM's speed over the
        # benchmark does not always count against the same side
        for recording in (False, True) if pair % 2 == 0 else (True, False):
            world = make_world(cfg.backend)
            stack = build_stack(cfg)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            c0, w0 = time.process_time(), time.perf_counter()
            if recording:
                recorder = open_recorder(path, RecorderSettings())
                run = run_recorded(recorder, world, stack, cfg, scenario, seed, steps)
            else:
                run = run_episode(world, stack, scenario, seed, steps)
            cpu[recording].append(time.process_time() - c0)
            wall[recording].append(time.perf_counter() - w0)
            if recording:
                in_recorder.append(recorder.loop_s)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                writer_cpu.append(
                    after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
                )
    size = path.stat().st_size
    sim_s = run.result.sim_time_s
    n = run.result.steps
    per_min = size / max(sim_s, 1e-9) * 60.0

    def overhead(t: dict[bool, list[float]]) -> float:
        ratios = [r / p for p, r in zip(t[False], t[True], strict=True)]
        return 100.0 * (statistics.median(ratios) - 1.0)

    def ms(t: list[float]) -> str:
        return f"{1e3 * statistics.median(t) / n:8.3f}"

    c_plain, w_plain = statistics.median(cpu[False]), statistics.median(wall[False])
    rec_share = 100.0 * statistics.median(in_recorder) / w_plain
    return "\n".join(
        [
            f"bench record: {scenario.name} (seed {seed}), {n} steps, "
            f"{len(scenario.sensors)} camera(s), {repeats} alternating pairs, medians, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
            f"                    {'ms/step':>10} {'':>10}   {'ms/step':>8}",
            f"                    {'loop CPU':>10} {'':>10}   {'wall':>8}",
            f"without recording   {ms(cpu[False]):>10} {'':>10}   {ms(wall[False])}",
            f"with --record       {ms(cpu[True]):>10} {'':>10}   {ms(wall[True])}",
            f"overhead            {overhead(cpu):+9.1f} % {'':>10}   {overhead(wall):+7.1f} %"
            "   (median of the pairs' ratios)",
            f"in the recorder     {ms(in_recorder):>10} ms/step in the loop = {rec_share:.1f} % "
            "of the plain loop's wall time",
            f"writer process      {ms(writer_cpu):>10} ms/step CPU on another core",
            f"recording size      {size / 1e6:.2f} MB for {sim_s:.1f} s of driving = "
            f"{per_min / 1e6:.2f} MB per minute",
            f"(plain loop: {c_plain:.3f} s CPU, {w_plain:.3f} s wall per run)",
        ]
    )


def bench_record_command(args: argparse.Namespace) -> str:
    """``bench record`` with the command line's options."""
    return bench_record(
        args.scenario, args.steps, args.seed, args.repeats, Path(args.out), args.camera
    )


def _with_camera(scenario: Scenario, size: str) -> Scenario:
    """``scenario`` with a front camera of ``size`` (``WxH``, e.g. ``320x240``)."""
    try:
        w, h = (int(v) for v in size.lower().split("x"))
        spec = CameraSpec(name="front", width=w, height=h)
    except ValueError:
        raise DrivestackError(f"--camera {size!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    return scenario.model_copy(update={"sensors": [spec]})


def run_or_record(
    args: argparse.Namespace,
    world: World,
    stack: Stack,
    cfg: StackConfig,
    scenario: Scenario,
    on_step: Callable[[Observation], None] | None,
) -> EpisodeRun:
    """The ``run`` command's episode: recorded when ``--record`` is given."""
    if not getattr(args, "record", None):
        return run_episode(world, stack, scenario, args.seed, args.max_steps, on_step)
    settings = RecorderSettings(image_format=args.record_images, depth=args.record_depth)
    return record_episode(
        Path(args.record), world, stack, cfg, scenario, args.seed, args.max_steps, on_step, settings
    )


def add_bench_record_args(bench: argparse.ArgumentParser) -> None:
    """Options of ``bench record`` (``--steps`` and ``--seed`` are shared with ``bench sim``)."""
    bench.add_argument("--scenario", default="town_loop", help="bench record: the scenario")
    bench.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="bench record: alternating pairs of runs (medians are reported)",
    )
    bench.add_argument("--out", default="runs/bench", help="bench record: where the file goes")
    bench.add_argument("--camera", metavar="WxH", help="bench record: add a front camera")
