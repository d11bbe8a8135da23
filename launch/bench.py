"""Benchmarks people can re-run: ``python -m launch bench sim``."""

from __future__ import annotations

import time

import numpy as np

from launch.stack import StackConfig, build_stack
from sim.messages import Control
from sim.scenario import Scenario
from sim.world import EmbeddedWorld


def bench_scenario(name: str, map_name: str, vehicles: int, pedestrians: int) -> Scenario:
    """A long random route through a map with traffic: what every benchmark drives."""
    return Scenario.model_validate(
        {
            "name": name,
            "map": map_name,
            "route": {"random": {"min_length_m": 2000.0}},
            "traffic": {"vehicles": vehicles, "pedestrians": pedestrians},
            "timeout_s": 7200.0,
        }
    )


def bench_sim(map_name: str, vehicles: int, pedestrians: int, steps: int, seed: int) -> str:
    """World steps per second with traffic and pedestrians, no camera, on this process's core.

    The ego is driven by the default stack (ground truth, rules, PID) so junctions, lights and
    events are exercised as in a real run; only the time inside ``world.step`` counts as world
    time, and the full loop's rate is printed beside it.
    """
    scenario = bench_scenario("bench_sim", map_name, vehicles, pedestrians)
    world = EmbeddedWorld()
    stack = build_stack(StackConfig())
    obs = world.reset(scenario, seed)
    stack.reset()
    # warm-up: caches, first allocations
    for _ in range(50):
        obs = world.step(Control(obs.t, obs.frame, 0.0, 0.0))
    world_s = 0.0
    loop_start = time.perf_counter()
    done = 0
    per_step = []
    while done < steps and not world.done:
        perception = stack.perceiver.update(obs)
        plan = stack.planner.update(perception, obs.route, obs.ego)
        control = stack.controller.update(plan, obs.ego)
        t0 = time.thread_time()
        obs = world.step(control)
        dt = time.thread_time() - t0
        world_s += dt
        per_step.append(dt)
        done += 1
    loop_s = time.perf_counter() - loop_start
    ms = np.array(per_step) * 1e3
    return "\n".join(
        [
            f"bench sim: map {map_name}, {world.traffic.n} vehicles, {world.peds.n} pedestrians, "
            f"no camera, {done} steps (seed {seed})",
            f"world steps per second   {done / world_s:8.0f}   "
            f"(median {np.median(ms):.3f} ms, p95 {np.percentile(ms, 95):.3f} ms per step)",
            f"full loop steps/second   {done / loop_s:8.0f}   "
            "(perception + planning + control + world)",
        ]
    )
