"""Closed-loop manoeuvres with analytic expectations, and the bounds holding throughout."""

import math

import numpy as np
import pytest

from control.closed_loop import Run, circle_path, run_closed_loop, sine_path
from control.mpc import MPCSettings
from control.mpc_controller import MPCController
from sim.messages import VehicleParams

CFG = MPCSettings()
DT = CFG.control_period_s
P = VehicleParams()


def _assert_within_bounds(run: Run, x_init: tuple[float, ...]) -> None:
    """Every applied input within its bounds, and every change within its rate bound, the
    first one counted from the actuators' state at the start."""
    u = run.controls
    assert np.all(u[:, 0] >= CFG.accel_min_mps2) and np.all(u[:, 0] <= CFG.accel_max_mps2)
    assert np.all(np.abs(u[:, 1]) <= CFG.steer_max_rad)
    du = np.diff(np.vstack([[x_init[4], x_init[5]], u]), axis=0)
    assert np.all(np.abs(du[:, 0]) <= CFG.jerk_max_mps3 * DT + 1e-9)
    assert np.all(np.abs(du[:, 1]) <= CFG.steer_rate_max_radps * DT + 1e-9)


def test_steady_state_circle_steer_is_atan_wheelbase_over_radius() -> None:
    radius = 30.0
    x_init = (0.0, 0.0, 0.0, 10.0, 0.0, 0.0)
    run = run_closed_loop(MPCController(CFG), circle_path(radius), 10.0, x_init, 160)
    assert not run.reasons
    steady = run.controls[-40:, 1]  # the last 2 s
    assert float(np.mean(steady)) == pytest.approx(math.atan(P.wheelbase_m / radius), rel=0.01)
    assert float(np.ptp(steady)) < 1e-3
    assert float(np.max(run.cross_track[-40:])) < 0.05
    _assert_within_bounds(run, x_init)


def test_speed_step_settles_within_accel_and_jerk_limits() -> None:
    straight = np.stack([np.arange(-20.0, 400.0, 0.5), np.zeros(840)], -1)
    x_init = (0.0, 0.0, 0.0, 5.0, 0.0, 0.0)
    run = run_closed_loop(MPCController(CFG), straight, 10.0, x_init, 160)
    assert not run.reasons
    speed = run.states[:, 3]
    accel = run.controls[:, 0]
    assert accel.max() == pytest.approx(CFG.accel_max_mps2, abs=0.05)  # the bound is reached
    _assert_within_bounds(run, x_init)
    settled = np.abs(speed[round(6.0 / DT) :] - 10.0)  # from 6 s on
    assert settled.max() < 0.1
    assert speed.max() < 10.3  # no more than a small overshoot


def test_bounds_and_rates_hold_when_they_bind() -> None:
    # 4 m off the path, pointing away from it: the steer saturates and its rate binds
    x_init = (0.0, -4.0, -0.2, 6.0, 1.0, -0.2)
    run = run_closed_loop(MPCController(CFG), sine_path(), 6.0, x_init, 160)
    assert not run.reasons
    _assert_within_bounds(run, x_init)
    assert np.abs(run.controls[:, 1]).max() == pytest.approx(CFG.steer_max_rad, abs=1e-6)
    rates = np.abs(np.diff(run.controls[:, 1])) / DT
    assert rates.max() == pytest.approx(CFG.steer_rate_max_radps, rel=1e-3)
    assert run.cross_track[-20:].max() < 0.1  # and it is back on the path after 8 s


def test_closed_loop_is_deterministic() -> None:
    x_init = (0.0, 1.0, 0.2, 10.0, 0.0, 0.0)
    a = run_closed_loop(MPCController(CFG), sine_path(length_m=100.0), 10.0, x_init, 40)
    b = run_closed_loop(MPCController(CFG), sine_path(length_m=100.0), 10.0, x_init, 40)
    assert np.array_equal(a.controls, b.controls)
    assert np.array_equal(a.states, b.states)
