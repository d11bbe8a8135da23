"""The embedded world: determinism, traffic that never collides, lights, and each infraction."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from control.pid import PIDController
from launch.stack import StackConfig, build_stack, run_episode
from perception.ground_truth import GroundTruthPerceiver
from planning.rules import RulePlanner
from sim.events import EventSettings
from sim.geometry import overlaps
from sim.messages import Control, LightState, Observation, PerceptionOutput
from sim.scenario import Scenario, load_scenario
from sim.world import EmbeddedWorld, WorldSettings


def _scenario(**fields: object) -> Scenario:
    base: dict[str, object] = {
        "name": "t",
        "map": "town_grid",
        "route": {"waypoints": [[20, 103.25], [150, 103.25]]},
        "timeout_s": 60.0,
    }
    base.update(fields)
    return Scenario.model_validate(base)


class _Blind(GroundTruthPerceiver):
    """Ground truth with some classes removed, to provoke infractions."""

    def __init__(self, lights: bool = True, signs: bool = True, objects: bool = True) -> None:
        super().__init__()
        self.keep = (lights, signs, objects)

    def update(self, obs: Observation) -> PerceptionOutput:
        out = super().update(obs)
        lights, signs, objects = self.keep
        return dataclasses.replace(
            out,
            lights=out.lights if lights else (),
            signs=out.signs if signs else (),
            objects=out.objects if objects else (),
        )


def _drive(
    world: EmbeddedWorld,
    scenario: Scenario,
    perceiver: GroundTruthPerceiver,
    seed: int = 0,
    max_steps: int = 4000,
) -> list[str]:
    planner, controller = RulePlanner(), PIDController()
    obs = world.reset(scenario, seed)
    types: list[str] = []
    for _ in range(max_steps):
        if world.done:
            break
        plan = planner.update(perceiver.update(obs), obs.route, obs.ego)
        obs = world.step(controller.update(plan, obs.ego))
        types += [e.type for e in obs.events]
    return types


def test_same_seed_same_episode_bit_for_bit() -> None:
    scenario = load_scenario("town_loop")
    a = run_episode(EmbeddedWorld(), build_stack(StackConfig()), scenario, 7, max_steps=600)
    b = run_episode(EmbeddedWorld(), build_stack(StackConfig()), scenario, 7, max_steps=600)
    c = run_episode(EmbeddedWorld(), build_stack(StackConfig()), scenario, 8, max_steps=600)
    assert a.result.to_dict() == b.result.to_dict()
    assert a.result.trajectory_sha256 == b.result.trajectory_sha256
    assert c.result.trajectory_sha256 != a.result.trajectory_sha256


def test_a_step_callback_that_returns_true_ends_the_episode_there() -> None:
    seen: list[int] = []

    def on_step(obs: Observation) -> bool:
        seen.append(obs.frame)
        return len(seen) == 5

    scenario = load_scenario("town_loop")
    run = run_episode(EmbeddedWorld(), build_stack(StackConfig()), scenario, 7, 600, on_step)
    assert seen == [1, 2, 3, 4, 5]
    assert run.stopped_early


def test_traffic_never_collides_with_itself() -> None:
    world = EmbeddedWorld()
    scenario = _scenario(
        route={"random": {"min_length_m": 500}},
        traffic={"vehicles": 50, "pedestrians": 20},
        timeout_s=120.0,
    )
    obs = world.reset(scenario, 1)
    moved = np.zeros(world.traffic.n)
    start = np.stack([world.traffic.x, world.traffic.y], -1)
    for k in range(1600):  # 80 s
        obs = world.step(Control(obs.t, obs.frame, -1.0, 0.0))  # the ego stands aside
        if k % 4 == 0:
            boxes = world.traffic.boxes()
            for i, j in itertools.combinations(range(len(boxes)), 2):
                if abs(boxes[i, 0] - boxes[j, 0]) + abs(boxes[i, 1] - boxes[j, 1]) < 8:
                    assert not overlaps(boxes[i], boxes[j : j + 1])[0], (k, i, j)
    moved = np.hypot(*(np.stack([world.traffic.x, world.traffic.y], -1) - start).T)
    assert np.median(moved) > 100.0  # and it does move: through lights and stops


def test_lights_give_one_green_per_junction_and_every_head_its_turn() -> None:
    world = EmbeddedWorld()
    world.reset(_scenario(), 0)
    lights = world.lights
    seen_green = np.zeros(len(lights.state), dtype=bool)
    for t in np.arange(0.0, 80.0, 0.05):
        lights.update(float(t))
        green = lights.state == int(LightState.GREEN)
        seen_green |= green
        for j in np.unique(lights.junction):
            heads = {lights.landmarks[i].id for i in np.flatnonzero(green & (lights.junction == j))}
            assert len(heads) <= 1
    assert seen_green.all()


def test_running_a_red_light_is_an_infraction() -> None:
    world = EmbeddedWorld()
    world.reset(_scenario(), 0)
    world.lights.update = lambda t: None  # type: ignore[method-assign]
    world.lights.state[:] = int(LightState.RED)
    types = _drive(world, _scenario(), _Blind(lights=False), max_steps=2000)
    assert types.count("red_light") == 1


def test_stopping_at_a_red_light_is_not() -> None:
    world = EmbeddedWorld()
    world.reset(_scenario(), 0)
    scenario = _scenario(timeout_s=30.0)
    perceiver = GroundTruthPerceiver()
    planner, controller = RulePlanner(), PIDController()
    obs = world.reset(scenario, 0)
    world.lights.update = lambda t: None  # type: ignore[method-assign]
    world.lights.state[:] = int(LightState.RED)
    while not world.done:
        obs = world.step(
            controller.update(planner.update(perceiver.update(obs), obs.route, obs.ego), obs.ego)
        )
    result = world.result()
    assert result.score.infraction_counts["red_light"] == 0
    assert result.score.status != "Completed"


def test_stop_sign_needs_a_full_stop() -> None:
    scenario = _scenario(route={"waypoints": [[20, -1.75], [150, -1.75]]})
    assert _drive(EmbeddedWorld(), scenario, _Blind(signs=False)).count("stop_infraction") == 1
    assert _drive(EmbeddedWorld(), scenario, GroundTruthPerceiver()).count("stop_infraction") == 0


def test_collision_with_a_parked_car_counts_once() -> None:
    scenario = _scenario(events=[{"type": "parked_vehicle", "at_route_m": 50}])
    types = _drive(EmbeddedWorld(), scenario, _Blind(objects=False), max_steps=600)
    assert types.count("collisions_vehicle") == 1


def test_route_deviation_ends_the_episode() -> None:
    world = EmbeddedWorld()
    obs = world.reset(_scenario(), 0)
    while not world.done:
        # a wide left circle: off the lanes, through the block, > 30 m from the route
        obs = world.step(Control(obs.t, obs.frame, 1.0 if obs.ego.speed < 8 else 0.0, 0.08))
    assert world.monitor.terminal is not None
    assert world.monitor.terminal.type == "route_dev"
    assert world.result().score.status.startswith("Failed")


def test_blocked_and_timeout() -> None:
    settings = WorldSettings(events=EventSettings(blocked_time_s=5.0))
    world = EmbeddedWorld(settings)
    obs = world.reset(_scenario(), 0)
    while not world.done:
        obs = world.step(Control(obs.t, obs.frame, -3.0, 0.0))
    assert world.monitor.terminal is not None
    assert world.monitor.terminal.type == "vehicle_blocked"
    assert obs.t == pytest.approx(5.0, abs=0.1)

    world = EmbeddedWorld()
    obs = world.reset(_scenario(timeout_s=3.0), 0)
    while not world.done:
        obs = world.step(Control(obs.t, obs.frame, 0.5, 0.0))
    assert world.monitor.terminal is not None
    assert world.monitor.terminal.type == "route_timeout"
