"""Composes the stages into the closed loop: world → perception → planning → control → world.

Only ``launch`` knows every stage. The loop is a plain function over messages, so the same code
runs a scenario, an evaluation sweep, or a benchmark.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from control.base import Controller
from control.pid import PIDController
from perception.ground_truth import GroundTruthPerceiver
from planning.rules import RulePlanner
from sim.backend import World
from sim.messages import Observation, PerceptionOutput, Plan, RouteAhead, VehicleState
from sim.scenario import Scenario
from sim.world import EmbeddedWorld, EpisodeResult

BACKENDS = ("embedded",)
PERCEPTIONS = ("ground-truth",)
PLANNERS = ("rules",)
CONTROLLERS = ("pid",)


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


def build_stack(cfg: StackConfig) -> Stack:
    """Instantiate the stages a configuration names (choices are checked by the CLI)."""
    perceivers = {"ground-truth": GroundTruthPerceiver}
    planners = {"rules": RulePlanner}
    controllers = {"pid": PIDController}
    return Stack(
        perceivers[cfg.perception](), planners[cfg.planner](), controllers[cfg.controller]()
    )


def make_world(backend: str) -> World:
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
    on_step: Callable[[Observation], None] | None = None,
) -> EpisodeRun:
    """Run one episode to its end (or ``max_steps``) and score it."""
    start = time.perf_counter()
    stack.reset()
    obs = world.reset(scenario, seed)
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
        if on_step is not None:
            on_step(obs)
    return EpisodeRun(
        world.result(), time.perf_counter() - start, world_time, stopped_early=not world.done
    )
