"""Composes the stages into the closed loop: world → perception → planning → control → world.

Only ``launch`` knows every stage. The loop is a plain function over messages, so the same code
runs a scenario, an evaluation sweep, or a benchmark.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from control.base import Controller
from control.pid import PIDController
from perception.ground_truth import GroundTruthPerceiver
from planning.rules import RulePlanner
from sim.backend import World
from sim.carla_backend.client import CarlaConnection
from sim.errors import DrivestackError
from sim.messages import (
    Observation,
    PerceptionOutput,
    Plan,
    RouteAhead,
    VehicleParams,
    VehicleState,
)
from sim.scenario import CameraSpec, Scenario
from sim.world import EmbeddedWorld, EpisodeResult

BACKENDS = ("embedded", "carla")
PERCEPTIONS = ("ground-truth", "cnn", "transformer")
PLANNERS = ("rules", "rl")
CONTROLLERS = ("pid", "mpc")


class Perceiver(Protocol):
    def update(self, obs: Observation) -> PerceptionOutput: ...

    def reset(self) -> None: ...


class Planner(Protocol):
    def update(
        self, perception: PerceptionOutput, route: RouteAhead, ego: VehicleState
    ) -> Plan: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class StackConfig:
    """Which implementation runs each stage (the ``run`` command's flags)."""

    backend: str = "embedded"
    perception: str = "ground-truth"
    planner: str = "rules"
    controller: str = "pid"
    policy: str = ""  # the RL planner's policy .zip; empty: the shipped one
    detector: str = ""  # learned perception's detector .safetensors; empty: the shipped one
    classifier: str = ""  # ... and its classifier's

    @classmethod
    def from_args(cls, args: object) -> StackConfig:
        """The stages ``run``'s and ``evaluate``'s flags name (an argparse namespace); the
        perception's files as absolute paths, which a sweep's workers and a replay elsewhere
        find (the policy as given: it may be a ``constant:`` baseline, planning/rl.py)."""
        names = [f.name for f in dataclasses.fields(cls)]
        given = {n: getattr(args, n) for n in names if hasattr(args, n)}
        for n in ("detector", "classifier"):
            given[n] = weights_path(given.get(n, ""))
        return cls(**given)

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass
class Stack:
    perceiver: Perceiver
    planner: Planner
    controller: Controller

    def reset(self) -> None:
        self.perceiver.reset()
        self.planner.reset()
        self.controller.reset()


def weights_path(given: str) -> str:
    """A ``--detector`` or ``--classifier`` file as an absolute path ("" stays "": the shipped
    one), so that a sweep's workers and a replay run elsewhere find it."""
    return str(Path(given).resolve()) if given else ""


def build_stack(cfg: StackConfig) -> Stack:
    """Instantiate the stages a configuration names (choices are checked by the CLI)."""
    if (cfg.detector or cfg.classifier) and cfg.perception not in ("cnn", "transformer"):
        raise DrivestackError(
            f"--detector and --classifier are learned perception's weights; --perception is "
            f"{cfg.perception!r}, allowed with them: cnn, transformer"
        )
    perceivers: dict[str, Callable[[], Perceiver]] = {
        "ground-truth": GroundTruthPerceiver,
        "cnn": lambda: _learned("cnn", cfg.detector, cfg.classifier),
        "transformer": lambda: _learned("transformer", cfg.detector, cfg.classifier),
    }
    planners: dict[str, Callable[[], Planner]] = {
        "rules": RulePlanner,
        "rl": lambda: _rl(cfg.policy),
    }
    controllers: dict[str, Callable[[], Controller]] = {"pid": PIDController, "mpc": _mpc}
    return Stack(
        perceivers[cfg.perception](), planners[cfg.planner](), controllers[cfg.controller]()
    )


def _learned(kind: str, detector: str = "", classifier: str = "") -> Perceiver:
    import torch  # only when asked for

    from perception.perceiver import default_perceiver

    # One CPU thread, as the perceiver's latency is specified and as each of `evaluate`'s
    # workers gets: a closed-loop score hangs on the networks' last bits (a box a hair over a
    # threshold), and those depend on how many threads sum a convolution. With the default two
    # threads, `run town_loop --seed 1 --perception cnn` scored 59.2 where `evaluate` had 77.4.
    torch.set_num_threads(1)
    return default_perceiver(kind, detector=detector, classifier=classifier)


def with_camera(scenario: Scenario, perceiver: Perceiver) -> Scenario:
    """The scenario with the cameras a learned perceiver reads, those it has none of that name.
    Its first camera is the detector's; a further one (the classifier's) is added at the pose
    and optics of the scenario's own camera of the first's name where it has one, scaled as
    the perceiver scales it, at the perceiver's capture rate."""
    specs: tuple[CameraSpec, ...] = getattr(perceiver, "camera_specs", ())
    if not specs:
        return scenario
    first = specs[0]
    have = {s.name: s for s in scenario.sensors}
    own = have.get(first.name)  # the scenario's own camera of the detector's name, if any
    new = []
    for spec in specs:
        if spec.name in have:
            continue
        if spec is not first and own is not None:
            k = spec.width / first.width
            spec = own.model_copy(
                update={
                    "name": spec.name,
                    "width": round(own.width * k),
                    "height": round(own.height * k),
                    "blur_px": own.blur_px * k,
                    "sensor_tick": spec.sensor_tick,  # the perceiver's rate, not the scenario's
                }
            )
        new.append(spec)
    if not new:
        return scenario
    return scenario.model_copy(update={"sensors": [*scenario.sensors, *new]})


def _rl(policy: str) -> Planner:
    from planning.rl import RLPlanner, RLPlannerSettings  # imports torch and SB3: only when asked

    return RLPlanner(RLPlannerSettings(policy=Path(policy)) if policy else None)


def _mpc() -> Controller:
    """The MPC with the ego's emergency braking allowed (docs/control.md says why)."""
    from control.mpc import MPCSettings  # imports torch: only when asked for
    from control.mpc_controller import MPCController

    ego = VehicleParams()
    return MPCController(MPCSettings.for_vehicle(ego, accel_min_mps2=-ego.max_decel_mps2))


def make_world(backend: str, connection: CarlaConnection | None = None) -> World:
    """The world of a backend; ``connection`` says where the CARLA server is (docs/carla.md)."""
    if backend == "carla":
        from sim.carla_backend.world import CarlaSettings, CarlaWorld

        return CarlaWorld(CarlaSettings(connection=connection or CarlaConnection()))
    if backend != "embedded":
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    return EmbeddedWorld()


@dataclass(frozen=True)
class EpisodeRun:
    result: EpisodeResult
    wall_time_s: float
    world_time_s: float  # wall time spent inside world.step
    stopped_early: bool


def run_episode(
    world: World,
    stack: Stack,
    scenario: Scenario,
    seed: int,
    max_steps: int | None = None,
    on_step: Callable[[Observation], bool | None] | None = None,
) -> EpisodeRun:
    """Run one episode to its end (or ``max_steps``) and score it. ``on_step`` sees each new
    observation; returning True ends the episode there (a collector with all the frames it
    wants), which, like ``max_steps``, counts as stopped early."""
    start = time.perf_counter()
    stack.reset()
    obs = world.reset(with_camera(scenario, stack.perceiver), seed)
    world_time = 0.0
    steps = 0
    while not world.done and (max_steps is None or steps < max_steps):
        perception = stack.perceiver.update(obs)
        plan = stack.planner.update(perception, obs.route, obs.ego)
        control = stack.controller.update(plan, obs.ego)
        t0 = time.perf_counter()
        obs = world.step(control)
        world_time += time.perf_counter() - t0
        steps += 1
        if on_step is not None and on_step(obs):
            break
    return EpisodeRun(
        world.result(), time.perf_counter() - start, world_time, stopped_early=not world.done
    )
