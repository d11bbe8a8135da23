"""The structured condensing, the warm-start shift and the projection against plain versions.

The MPC condenses with the models' structure (per-vehicle sensitivities for x, y and yaw only,
constants for speed and the lags, running sums instead of a loop of mat-muls) and shifts its
warm start with constant maps and projects by a fixed-point iteration; here the same quantities
come from the generic RK4 Jacobians and step-by-step loops, in float64.
"""

import math
from typing import Any

import numpy as np
import pytest
import torch

import control.mpc as mpc_module
from control.closed_loop import plan_along, sine_path
from control.models import YAW, V, X, Y, rk4_jacobians
from control.mpc import MPC, MPCSettings, feedforward, tracking_errors
from control.mpc_controller import plan_reference
from sim.messages import VehicleState

F64 = torch.float64


def _problems(cfg: MPCSettings, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Vehicles near a sine path with offsets and lagged actuators: x0, ref, u_prev (float64)."""
    rng = np.random.default_rng(seed)
    path = sine_path()
    x0, refs, u_prev = [], [], []
    for _ in range(n):
        j = int(rng.integers(100, len(path) - 400))
        d = path[j + 1] - path[j]
        state = VehicleState(
            0.0,
            0,
            path[j, 0] + rng.normal(0.0, 0.5),
            path[j, 1] + rng.normal(0.0, 0.5),
            math.atan2(d[1], d[0]) + rng.normal(0.0, 0.1),
            rng.uniform(3.0, 15.0),
            rng.uniform(-1.0, 1.0),
            rng.uniform(-0.1, 0.1),
        )
        ref = plan_reference(plan_along(path, state, rng.uniform(3.0, 15.0)), state, cfg)
        assert not isinstance(ref, str)
        refs.append(ref)
        x0.append([0.0, 0.0, 0.0, state.speed, state.accel, state.steer])
        u_prev.append([state.accel, state.steer])
    return tuple(torch.tensor(np.array(v), dtype=F64) for v in (x0, refs, u_prev))


def _plain_qp(mpc: MPC, xs: Any, zb: Any, ref: Any, uff: Any, u_prev: Any) -> tuple[Any, Any]:
    """``H``, ``q`` of the Gauss-Newton QP condensed step by step with the full Jacobians."""
    cfg, (bsz, n_h1, nx), n = mpc.cfg, xs.shape, mpc.n
    n_h = n_h1 - 1
    us = zb[:, mpc._kb]
    fx, a, b = rk4_jacobians(
        mpc.model, xs[:, :-1].reshape(-1, nx), us.reshape(-1, 2), cfg.vehicle, cfg.dt_s
    )
    fx, a, b = fx.view(bsz, n_h, nx), a.view(bsz, n_h, nx, nx), b.view(bsz, n_h, nx, 2)
    gam = torch.zeros(bsz, n_h, nx, n + 1, dtype=F64)
    prev = torch.zeros(bsz, nx, n + 1, dtype=F64)
    for k in range(n_h):
        g = a[:, k] @ prev
        j = 2 * int(mpc._kb[k])
        g[:, :, j : j + 2] += b[:, k]
        g[:, :, n] += fx[:, k] - xs[:, k + 1]
        gam[:, k] = prev = g
    c = torch.cos(ref[:, 1:, 2]).unsqueeze(-1)
    s = torch.sin(ref[:, 1:, 2]).unsqueeze(-1)
    rows = torch.stack([c * gam[:, :, Y] - s * gam[:, :, X], gam[:, :, YAW], gam[:, :, V]], 2)
    rows = rows * mpc._sqrt_w.unsqueeze(-1)
    rows[..., n] += tracking_errors(xs[:, 1:], ref[:, 1:]) * mpc._sqrt_w
    g_full = rows.reshape(bsz, 3 * n_h, n + 1)
    hg = g_full.mT @ g_full
    z = zb.reshape(bsz, n)
    q_steps = -mpc._w_inputs * uff.reshape(bsz, -1)
    q_steps[:, :2] -= mpc._w_rate0 * u_prev
    q = hg[:, :n, n] - (hg[:, :n, :n] @ z.unsqueeze(-1)).squeeze(-1) + q_steps @ mpc._expand
    return hg[:, :n, :n] + mpc._h_inputs, q


@pytest.mark.parametrize("model", ["lagged", "kinematic"])
def test_condensed_qp_equals_the_step_by_step_one(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = MPCSettings(dtype="float64", model=model, mode="rti")
    mpc = MPC(cfg)
    x0, ref, u_prev = _problems(cfg, 6, seed=0)
    x0 = x0[:, : mpc.model.nx]
    captured: dict[str, Any] = {}
    solve_qp = mpc_module.solve_qp

    def capture(h: Any, q: Any, *args: Any, **kwargs: Any) -> Any:
        captured["h"], captured["q"] = h, q
        return solve_qp(h, q, *args, **kwargs)

    step = mpc._sqp_step

    def capture_step(*args: Any) -> Any:
        captured["args"] = args
        return step(*args)

    monkeypatch.setattr(mpc_module, "solve_qp", capture)
    monkeypatch.setattr(mpc, "_sqp_step", capture_step)
    mpc.solve(x0, ref, u_prev)  # a cold start: states rolled out, no defects
    mpc.solve(x0, ref, u_prev)  # warm: shifted states, with defects
    xs, zb, _, _, ref_in, uff, u_prev_in = captured["args"][:7]
    torch.testing.assert_close(uff, feedforward(ref_in, cfg))
    h, q = _plain_qp(mpc, xs, zb, ref_in, uff, u_prev_in)
    torch.testing.assert_close(captured["h"], h, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(captured["q"], q, rtol=1e-10, atol=1e-10)


def test_warm_start_shift_interpolates_half_a_step() -> None:
    cfg = MPCSettings(dtype="float64")  # control period 0.05 s: half a prediction step
    mpc = MPC(cfg)
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(3, cfg.horizon + 1, 6, generator=gen, dtype=F64)
    zb = torch.randn(3, mpc.n_blocks, 2, generator=gen, dtype=F64)
    ys = torch.randn(3, 2 * mpc.n - 2, generator=gen, dtype=F64)
    xs_s, zb_s, ys_s = mpc._shift(xs, zb, ys)
    nxt = torch.cat([xs[:, 1:], xs[:, -1:]], 1)  # the end held
    torch.testing.assert_close(xs_s, 0.5 * (xs + nxt))
    us = zb[:, mpc._kb]
    us = 0.5 * (us + torch.cat([us[:, 1:], us[:, -1:]], 1))
    blocks = torch.stack([us[:, mpc._kb == j].mean(1) for j in range(mpc.n_blocks)], 1)
    torch.testing.assert_close(zb_s, blocks)
    # a constant solution stays where it is, duals included
    const = torch.ones_like(ys)
    _, _, ys_c = mpc._shift(xs, zb, const)
    torch.testing.assert_close(ys_c, const)
    assert ys_s.shape == ys.shape


def test_projection_is_the_sequential_one() -> None:
    cfg = MPCSettings(dtype="float64")
    mpc = MPC(cfg)
    gen = torch.Generator().manual_seed(1)
    zb = 2.0 * torch.randn(64, mpc.n_blocks, 2, generator=gen, dtype=F64)  # far out of bounds
    u_prev = 0.5 * torch.randn(64, 2, generator=gen, dtype=F64)
    zb[:8] = zb[:8].clamp(-0.1, 0.1) * 1e-3 + u_prev[:8].unsqueeze(1)  # some already feasible
    out, prev = [], u_prev
    for j in range(mpc.n_blocks):  # the definition: block by block, in order
        lo = (prev - mpc._rate_bound[j]).clamp(mpc._box_lo, mpc._box_hi)
        hi = (prev + mpc._rate_bound[j]).clamp(mpc._box_lo, mpc._box_hi)
        prev = zb[:, j].clamp(lo, hi)
        out.append(prev)
    torch.testing.assert_close(mpc._project(zb, u_prev), torch.stack(out, 1), rtol=0, atol=0)
