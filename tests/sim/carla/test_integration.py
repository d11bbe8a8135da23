"""A shipped scenario on a real CARLA 0.9.16 server: skipped unless ``CARLA_HOST`` is set.

    CARLA_HOST=localhost [CARLA_PORT=2000 CARLA_TM_PORT=8000] \\
        .venv/bin/pytest -q tests/sim/carla/test_integration.py

It generates the country road from its ``.xodr`` (OpenDRIVE standalone mode), drives the
lead-vehicle scenario with the rule-based stack for 30 s of simulated time, and checks the
episode and the server's state after ``close`` (docs/carla.md).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from launch.stack import StackConfig, build_stack, run_episode
from sim.carla_backend.client import CarlaConnection, connect
from sim.carla_backend.world import CarlaSettings, CarlaWorld
from sim.messages import Observation
from sim.scenario import CameraSpec, load_scenario

HOST = os.environ.get("CARLA_HOST")
pytestmark = pytest.mark.skipif(not HOST, reason="set CARLA_HOST to run against a CARLA server")


@pytest.fixture
def connection() -> CarlaConnection:
    assert HOST is not None
    port = int(os.environ.get("CARLA_PORT", "2000"))
    tm_port = int(os.environ.get("CARLA_TM_PORT", "8000"))
    return CarlaConnection(HOST, port, tm_port, timeout_s=20.0)


def test_lead_vehicle_scenario_on_a_real_server(connection: CarlaConnection) -> None:
    client = connect(connection)
    before = client.get_world().get_settings()
    scenario = load_scenario("lead_vehicle_brakes").model_copy(
        update={"sensors": [CameraSpec(width=320, height=180)]}
    )
    world = CarlaWorld(CarlaSettings(connection=connection))
    seen: list[Observation] = []
    try:
        run = run_episode(
            world, build_stack(StackConfig()), scenario, seed=0, max_steps=600,
            on_step=seen.append,
        )  # fmt: skip
    finally:
        world.close()
    assert [o.frame for o in seen] == list(range(1, len(seen) + 1))
    last = seen[-1]
    assert len(last.ground_truth.actors) == 1  # the lead vehicle
    cam = last.sensors["front"]
    assert cam.rgb.shape == (180, 320, 3) and cam.depth is not None
    r = run.result.to_dict()
    assert r["route_completion"] > 20.0  # 30 s at ~11 m/s on a 560 m route
    assert r["infraction_counts"]["collisions_vehicle"] == 0
    after = connect(connection).get_world()
    assert after.get_settings().synchronous_mode == before.synchronous_mode
    ours = [a for a in after.get_actors() if a.attributes.get("role_name") == "hero"]
    assert not ours
    assert np.isfinite(r["driving_score"])
