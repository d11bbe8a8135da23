"""Closed-loop manoeuvres for controllers, without a world: test paths, plans, a plant.

The plant is the lagged bicycle of :mod:`control.models` stepped with RK4 at the control period;
the planner is ideal (the path ahead, re-expressed in the ego frame every step). Tests and the
benchmark use these to compare controllers on the same problems.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from control.base import Controller
from control.models import LAGGED, rk4
from sim.messages import Control, FloatArray, Plan, VehicleParams, VehicleState


def sine_path(
    amplitude_m: float = 5.0, wavelength_m: float = 100.0, length_m: float = 400.0
) -> FloatArray:
    """``y = A sin(2πx/λ)`` sampled every 0.25 m of x, ``(P, 2)``, from x = -20 m."""
    x = np.arange(-20.0, length_m, 0.25)
    return np.stack([x, amplitude_m * np.sin(2 * np.pi * x / wavelength_m)], -1)


def circle_path(radius_m: float = 30.0, turns: float = 2.0) -> FloatArray:
    """A counter-clockwise circle through the origin heading +x, centre (0, R), ``(P, 2)``."""
    th = np.arange(-0.5, 2 * np.pi * turns, 0.25 / radius_m)
    return np.stack([radius_m * np.sin(th), radius_m * (1 - np.cos(th))], -1)


def cross_track_m(path: FloatArray, x: float, y: float) -> float:
    """Distance (m) from ``(x, y)`` to the polyline ``path``."""
    a, seg = path[:-1], np.diff(path, axis=0)
    t = np.clip(((x - a[:, 0]) * seg[:, 0] + (y - a[:, 1]) * seg[:, 1]) / (seg**2).sum(1), 0, 1)
    return float(np.min(np.hypot(a[:, 0] + t * seg[:, 0] - x, a[:, 1] + t * seg[:, 1] - y)))


def plan_along(
    path: FloatArray,
    state: VehicleState,
    speed: float | FloatArray,
    ahead_m: float = 60.0,
    step_m: float = 1.0,
) -> Plan:
    """The plan an ideal planner would send: ``path`` from 2 m behind the ego's nearest point to
    ``ahead_m`` ahead, every ``step_m``, in the ego frame; ``speed`` constant or per point."""
    seg = np.hypot(*np.diff(path, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    i = int(np.argmin(np.hypot(path[:, 0] - state.x, path[:, 1] - state.y)))
    q = np.arange(max(s[i] - 2.0, 0.0), min(s[i] + ahead_m, s[-1]), step_m)
    xy = np.stack([np.interp(q, s, path[:, 0]), np.interp(q, s, path[:, 1])], -1)
    v = np.broadcast_to(np.asarray(speed, dtype=np.float64), (len(path),))
    return Plan(
        t=state.t,
        frame=state.frame,
        path=state.to_ego(xy),
        speed=np.interp(q, s, v),
        step_m=step_m,
        horizon_s=ahead_m / max(float(np.max(v)), 1.0),
        origin=(state.x, state.y, state.yaw),
    )


@dataclass(frozen=True)
class Run:
    """A closed-loop run: states ``(T+1, 6)`` (x, y, yaw, v, a, delta), controls ``(T, 2)``,
    cross-track errors ``(T+1,)`` (m), and the fallback reasons seen."""

    states: FloatArray
    controls: FloatArray
    cross_track: FloatArray
    reasons: tuple[str, ...]

    @property
    def cross_track_rms(self) -> float:
        return float(np.sqrt(np.mean(self.cross_track**2)))


def run_closed_loop(
    controller: Controller,
    path: FloatArray,
    speed: float | FloatArray,
    x_init: tuple[float, ...],
    steps: int,
    dt: float = 0.05,
    params: VehicleParams | None = None,
) -> Run:
    """Drive ``controller`` along ``path`` for ``steps`` control periods from ``x_init``
    (x, y, yaw, v, a, delta); the plant is the lagged bicycle, RK4 at ``dt``."""
    params = params if params is not None else VehicleParams()
    controller.reset()
    x = torch.tensor(x_init, dtype=torch.float64).reshape(1, 6)
    states, controls, reasons = [x[0].numpy().copy()], [], []
    for k in range(steps):
        xs = states[-1]
        state = VehicleState(
            t=k * dt,
            frame=k,
            x=xs[0],
            y=xs[1],
            yaw=math.remainder(xs[2], 2 * math.pi),
            speed=xs[3],
            accel=xs[4],
            steer=xs[5],
        )
        control: Control = controller.update(plan_along(path, state, speed), state)
        if control.reason:
            reasons.append(control.reason)
        u = torch.tensor([[control.accel, control.steer]], dtype=torch.float64)
        x = rk4(LAGGED, x, u, params, dt)
        x[:, 3] = x[:, 3].clamp_min(0.0)
        states.append(x[0].numpy().copy())
        controls.append((control.accel, control.steer))
    st = np.array(states)
    cte = np.array([cross_track_m(path, p[0], p[1]) for p in st])
    return Run(st, np.array(controls), cte, tuple(reasons))
