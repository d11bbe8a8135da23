"""Shared pieces of the CARLA backend's tests: the fake server, a world on it, a simple driver."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from sim.carla_backend.client import CarlaConnection
from sim.carla_backend.world import CarlaSettings, CarlaWorld
from sim.messages import Control, Observation
from tests.sim.carla.fake_carla import WHEELBASE_M, FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def world(server: FakeServer) -> Iterator[CarlaWorld]:
    w = CarlaWorld(CarlaSettings(connection=CarlaConnection(timeout_s=0.5)), server.factory)
    yield w
    w.close()


def follow(obs: Observation, speed_mps: float = 8.0, lookahead_m: float = 6.0) -> Control:
    """Pure pursuit on the route ahead at a set speed: enough to drive a route in tests."""
    xy = obs.route.xy
    d = np.hypot(xy[:, 0], xy[:, 1])
    i = int(np.argmax(d >= lookahead_m)) if (d >= lookahead_m).any() else len(xy) - 1
    x, y = xy[i]
    steer = math.atan(2.0 * WHEELBASE_M * y / max(x * x + y * y, 1e-6))
    accel = float(np.clip(0.8 * (speed_mps - obs.ego.speed), -6.0, 2.0))
    return Control(obs.t, obs.frame, accel, steer)
