"""Dynamics against hand-computed answers: no world, no map."""

import math

import numpy as np
import pytest

from sim.dynamics import bicycle_step, idm_accel
from sim.messages import VehicleParams

P = VehicleParams()
DT = 0.05


def _drive(
    state: np.ndarray, accel: float, steer: float, seconds: float, params: VehicleParams = P
) -> np.ndarray:
    for _ in range(round(seconds / DT)):
        state = bicycle_step(state, accel, steer, params, DT)
    return state


def test_straight_line_at_constant_speed() -> None:
    x = _drive(np.array([0.0, 0.0, 0.3, 10.0, 0.0, 0.0]), 0.0, 0.0, 2.0)
    # 20 m along a heading of 0.3 rad
    assert x[0] == pytest.approx(20 * math.cos(0.3), abs=1e-9)
    assert x[1] == pytest.approx(20 * math.sin(0.3), abs=1e-9)
    assert x[3] == pytest.approx(10.0)


def test_constant_steer_drives_the_circle_of_radius_L_over_tan_delta() -> None:
    delta, v = 0.2, 8.0
    radius = P.wheelbase_m / math.tan(delta)  # 14.09 m
    period = 2 * math.pi * radius / v
    x = np.array([0.0, 0.0, 0.0, v, 0.0, delta])
    xs = []
    for _ in range(round(period / DT)):
        x = bicycle_step(x, 0.0, delta, P, DT)
        xs.append(x.copy())
    pts = np.array(xs)
    # every point of the path is on the circle centred at (0, R)
    r = np.hypot(pts[:, 0], pts[:, 1] - radius)
    assert np.max(np.abs(r - radius)) < 1e-6
    # and after one period the car is back where it started
    assert math.hypot(x[0], x[1]) < 0.5 * v * DT


def test_actuator_lag_is_first_order() -> None:
    # a step in requested acceleration reaches 1 - e^-1 of its value after one time constant
    x = _drive(np.zeros(6), 1.0, 0.0, P.accel_time_constant_s)
    assert x[4] == pytest.approx(1.0 - math.exp(-1.0), abs=1e-9)


def test_steering_rate_and_range_are_limited() -> None:
    x = bicycle_step(np.array([0, 0, 0, 5.0, 0, 0]), 0.0, 1.0, P, DT)
    assert x[5] == pytest.approx(P.max_steer_rate_radps * DT)
    x = _drive(np.array([0, 0, 0, 5.0, 0, 0]), 0.0, 1.0, 5.0)
    assert x[5] == pytest.approx(P.max_steer_rad)


def test_braking_stops_the_car_without_reversing() -> None:
    params = VehicleParams(accel_time_constant_s=1e-6)  # no lag: a textbook stop
    x = _drive(np.array([0, 0, 0, 10.0, 0, 0]), -5.0, 0.0, 5.0, params)
    assert x[3] == 0.0
    assert x[0] == pytest.approx(10.0**2 / (2 * 5.0), abs=1e-6)  # v²/2a = 10 m


def test_idm_hand_computed() -> None:
    # v = 10, v0 = 20, gap 30 m, same speed: s* = 2 + 10 × 1.5 = 17 m
    a = idm_accel(np.array(10.0), np.array(20.0), np.array(30.0), np.array(0.0))
    assert float(a) == pytest.approx(1.5 * (1 - 0.5**4 - (17 / 30) ** 2))
    # free road: a = a_max (1 - (v/v0)^4)
    a = idm_accel(np.array(10.0), np.array(20.0), np.array(np.inf), np.array(0.0))
    assert float(a) == pytest.approx(1.5 * (1 - 0.5**4))


def test_idm_equilibrium_gap() -> None:
    # in a steady queue the gap is s_e = (s0 + v T) / sqrt(1 - (v/v0)^4)
    v, v0 = 8.0, 14.0
    s_e = (2.0 + v * 1.5) / math.sqrt(1 - (v / v0) ** 4)
    a = idm_accel(np.array(v), np.array(v0), np.array(s_e), np.array(0.0))
    assert abs(float(a)) < 1e-12
