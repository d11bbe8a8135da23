"""Closed-loop manoeuvres with analytic expectations, and the bounds holding throughout."""

import math

import numpy as np
import pytest

from control.closed_loop import Run, circle_path, plan_along, run_closed_loop, sine_path
from control.mpc import MPCSettings
from control.mpc_controller import MPCController, plan_reference
from sim.messages import VehicleParams, VehicleState

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


def test_real_time_iteration_tracks_like_the_full_sqp() -> None:
    # one QP per control step (mode="rti"), from 4 m off the path: bounds hold, back on the path
    rti = MPCSettings(mode="rti")
    x_init = (0.0, -4.0, -0.2, 6.0, 1.0, -0.2)
    run = run_closed_loop(MPCController(rti), sine_path(), 6.0, x_init, 160)
    assert not run.reasons
    _assert_within_bounds(run, x_init)
    assert run.cross_track[-20:].max() < 0.1
    full = run_closed_loop(MPCController(CFG), sine_path(), 6.0, x_init, 160)
    rms = [float(np.sqrt(np.mean(r.cross_track**2))) for r in (run, full)]
    assert rms[0] == pytest.approx(rms[1], rel=0.1)


def test_unknown_mode_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="mode must be 'sqp' or 'rti'"):
        MPCSettings(mode="ilqr")


def test_reference_reads_the_speed_profile_ahead() -> None:
    # a profile re-anchored at the ego at rest, rising at 1 m/s²: v(s) = √(2 s)
    straight = np.stack([np.arange(0.0, 100.0, 0.5), np.zeros(200)], -1)
    at_rest = VehicleState(0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    plan = plan_along(straight, at_rest, np.sqrt(2.0 * straight[:, 0]))
    ahead = plan_reference(plan, at_rest, CFG)
    here = plan_reference(plan, at_rest, MPCSettings(speed_preview_s=0.0))
    assert not isinstance(ahead, str) and not isinstance(here, str)
    assert here[0, 3] == pytest.approx(0.0, abs=1e-9)  # read at the ego: at rest
    assert ahead[0, 3] == pytest.approx(math.sqrt(2.0), rel=1e-6)  # read 1 m ahead
    assert np.all(ahead[1:, 3] > here[1:, 3])  # and it leads the whole horizon
    with pytest.raises(ValueError, match="speed_preview_s"):
        MPCSettings(speed_preview_s=-0.1)
