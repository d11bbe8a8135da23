"""The MPC stage: failures and their fallback, warm starts, batches, periods, devices."""

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from control.closed_loop import plan_along, sine_path
from control.mpc import MPC, MPCSettings
from control.mpc_controller import MPCController
from sim.messages import Control, Plan, VehicleState

CFG = MPCSettings()
PATH = sine_path(length_m=200.0)


def _state(k: int = 0, **kw: Any) -> VehicleState:
    state = VehicleState(k * CFG.control_period_s, k, 0.5 * k, 0.3, 0.25, 10.0, 0.5, 0.05)
    return replace(state, **kw)


def _plan(state: VehicleState) -> Plan:
    return plan_along(PATH, state, 10.0)


def _nominal(ctl: MPCController, k: int = 0) -> Control:
    state = _state(k)
    control = ctl.update(_plan(state), state)
    assert control.valid and not control.reason
    return control


def test_non_finite_state_brakes_within_rates_holds_steer_and_resets_the_warm_start() -> None:
    ctl = MPCController(CFG)
    prev = _nominal(ctl)
    assert ctl.mpc._warm is not None and bool(ctl.mpc._warm.ok.all())
    bad = _state(1, x=math.nan)
    control = ctl.update(_plan(_state(1)), bad)
    assert not control.valid and control.reason == "state not finite"
    # brake at the jerk limit from the previous input, steer held at the previous one
    assert control.accel == pytest.approx(prev.accel - CFG.jerk_max_mps3 * CFG.control_period_s)
    assert control.steer == prev.steer
    assert ctl.mpc._warm is not None and not bool(ctl.mpc._warm.ok.any())
    # the fallback keeps braking down to the bound, never beyond it
    for k in range(2, 40):
        control = ctl.update(_plan(_state(k)), _state(k, speed=math.inf))
    assert control.accel == pytest.approx(CFG.accel_min_mps2)
    # and the controller recovers as soon as the state is good again
    state = _state(40)
    assert ctl.update(_plan(state), state).valid


@pytest.mark.parametrize(
    ("plan_change", "reason"),
    [
        ({"valid": False}, "plan invalid"),
        ({"path": np.zeros((0, 2)), "speed": np.zeros(0)}, "reference empty"),
        ({"path": np.zeros((1, 2)), "speed": np.ones(1)}, "reference too short"),
        ({"path": np.zeros((3, 2)), "speed": np.ones(3)}, "reference too short"),
        ({"speed": np.ones(2)}, "reference malformed"),
        ({"path": np.full((5, 2), np.nan), "speed": np.ones(5)}, "reference not finite"),
        ({"origin": (0.0, math.nan, 0.0)}, "reference not finite"),
    ],
)
def test_bad_references_fall_back_with_the_reason(plan_change: dict, reason: str) -> None:
    ctl = MPCController(CFG)
    _nominal(ctl)
    state = _state(1)
    plan = replace(_plan(state), **plan_change)
    control = ctl.update(plan, state)
    assert not control.valid
    assert control.reason.startswith(reason)


def test_not_converging_in_budget_falls_back_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    starved = replace(CFG, max_sqp_iters=1, sqp_tol=1e-9)
    ctl = MPCController(starved, log_interval_s=3600.0)
    with caplog.at_level(logging.WARNING, logger="control.mpc_controller"):
        for k in range(3):
            state = _state(k, y=2.0)  # off the path: one iteration cannot settle it
            control = ctl.update(_plan(state), state)
            assert not control.valid
            assert control.reason == "MPC did not converge within its budget"
    assert len(caplog.records) == 1  # rate-limited
    assert ctl.mpc._warm is not None and not bool(ctl.mpc._warm.ok.any())


def test_a_batch_solves_each_vehicle_as_alone() -> None:
    states = [_state(0, y=y, speed=v) for y, v in ((0.3, 10.0), (-1.0, 6.0), (1.5, 13.0))]
    plans = [_plan(s) for s in states]
    together = MPCController(CFG).update_batch(plans, states)
    for plan, state, control in zip(plans, states, together, strict=True):
        alone = MPCController(CFG).update(plan, state)
        assert control.accel == pytest.approx(alone.accel, abs=1e-4)
        assert control.steer == pytest.approx(alone.steer, abs=1e-5)
    # a failing vehicle does not disturb the others
    mixed = MPCController(CFG).update_batch(
        plans, [states[0], replace(states[1], y=math.nan), states[2]]
    )
    assert mixed[0].valid and not mixed[1].valid and mixed[2].valid
    assert mixed[2].steer == pytest.approx(together[2].steer, abs=1e-5)


def test_the_control_period_follows_the_calls() -> None:
    ctl = MPCController(CFG)
    for k in range(3):
        state = replace(_state(k), t=0.1 * k)
        ctl.update(_plan(state), state)
    assert ctl.cfg.control_period_s == pytest.approx(0.1)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="input_blocks"):
        MPCSettings(horizon=10)
    with pytest.raises(ValueError, match="model"):
        MPCSettings(model="dynamic")
    tied = MPCSettings.for_vehicle(replace(CFG.vehicle, max_steer_rad=0.4, max_accel_mps2=1.5))
    assert tied.steer_max_rad == 0.4 and tied.accel_max_mps2 == 1.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_cpu_answer() -> None:
    rng = np.random.default_rng(0)
    states = [_state(0, y=float(y)) for y in rng.uniform(-1, 1, 8)]
    from control.mpc_controller import plan_reference

    refs = torch.from_numpy(np.stack([plan_reference(_plan(s), s, CFG) for s in states]))
    x0 = torch.tensor([[0, 0, 0, s.speed, s.accel, s.steer] for s in states], dtype=torch.float64)
    u_prev = x0[:, 4:]
    u_cpu, _, _, _ = MPC(CFG).solve(x0, refs, u_prev)
    u_gpu, _, _, info = MPC(CFG, "cuda").solve(x0, refs, u_prev)
    assert u_gpu.device.type == "cuda" and bool(info["converged"].all())
    torch.testing.assert_close(u_gpu.cpu(), u_cpu, atol=1e-3, rtol=0)
