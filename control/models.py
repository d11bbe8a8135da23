"""Vehicle models as pure, batched torch functions, and their RK4 discretisation.

Both models describe the rear axle of a kinematic bicycle (the embedded world's ego, see
``sim/dynamics.py``); the second adds the first-order actuator lags as states, so its inputs are
the *commands* a controller sends.

=========  =========================================  =================================
model      state ``(B, nx)``                          input ``(B, 2)``
=========  =========================================  =================================
kinematic  x, y (m), yaw (rad), v (m/s)                accel (m/s²), steer (rad)
lagged     x, y, yaw, v, a (m/s²), delta (rad)         accel_cmd (m/s²), steer_cmd (rad)
=========  =========================================  =================================

``f(x, u, params)`` is the time derivative; ``jac(x, u, params)`` its Jacobians
``(df/dx (B, nx, nx), df/du (B, nx, 2))`` written by hand; :func:`rk4` and
:func:`rk4_jacobians` turn either into the discrete step ``x' = F(x, u)`` (inputs held over
the step) and its exact Jacobians, propagated through the four RK4 stages in forward mode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sim.messages import VehicleParams

X, Y, YAW, V, A, DELTA = range(6)  # state indices (the kinematic model uses the first four)
ACCEL, STEER = range(2)  # input indices

Dynamics = Callable[[Tensor, Tensor, VehicleParams], Tensor]
Jacobian = Callable[[Tensor, Tensor, VehicleParams], tuple[Tensor, Tensor]]
StepJacobian = Callable[[Tensor, Tensor, VehicleParams, float], tuple[Tensor, Tensor, Tensor]]
PoseJacobian = Callable[[Tensor, Tensor, VehicleParams, float], tuple[Tensor, Tensor]]


def kinematic_bicycle(x: Tensor, u: Tensor, p: VehicleParams) -> Tensor:
    """dx/dt ``(B, 4)`` of the kinematic bicycle at the rear axle; ``u`` = (accel, steer)."""
    yaw, v = x[..., YAW], x[..., V]
    return torch.stack(
        [
            v * torch.cos(yaw),
            v * torch.sin(yaw),
            v * torch.tan(u[..., STEER]) / p.wheelbase_m,
            u[..., ACCEL],
        ],
        -1,
    )


def kinematic_bicycle_jac(x: Tensor, u: Tensor, p: VehicleParams) -> tuple[Tensor, Tensor]:
    """Jacobians ``(B, 4, 4)`` and ``(B, 4, 2)`` of :func:`kinematic_bicycle`."""
    yaw, v, steer = x[..., YAW], x[..., V], u[..., STEER]
    c, s, t = torch.cos(yaw), torch.sin(yaw), torch.tan(steer)
    jx = x.new_zeros((*x.shape, 4))
    jx[..., X, YAW], jx[..., X, V] = -v * s, c
    jx[..., Y, YAW], jx[..., Y, V] = v * c, s
    jx[..., YAW, V] = t / p.wheelbase_m
    ju = x.new_zeros((*x.shape, 2))
    ju[..., V, ACCEL] = 1.0
    ju[..., YAW, STEER] = v * (1.0 + t * t) / p.wheelbase_m
    return jx, ju


def lagged_bicycle(x: Tensor, u: Tensor, p: VehicleParams) -> Tensor:
    """dx/dt ``(B, 6)``: the kinematic bicycle driven by first-order lagged actuators."""
    yaw, v, a, delta = x[..., YAW], x[..., V], x[..., A], x[..., DELTA]
    return torch.stack(
        [
            v * torch.cos(yaw),
            v * torch.sin(yaw),
            v * torch.tan(delta) / p.wheelbase_m,
            a,
            (u[..., ACCEL] - a) / p.accel_time_constant_s,
            (u[..., STEER] - delta) / p.steer_time_constant_s,
        ],
        -1,
    )


def lagged_bicycle_jac(x: Tensor, u: Tensor, p: VehicleParams) -> tuple[Tensor, Tensor]:
    """Jacobians ``(B, 6, 6)`` and ``(B, 6, 2)`` of :func:`lagged_bicycle`."""
    yaw, v, delta = x[..., YAW], x[..., V], x[..., DELTA]
    c, s, t = torch.cos(yaw), torch.sin(yaw), torch.tan(delta)
    jx = x.new_zeros((*x.shape, 6))
    jx[..., X, YAW], jx[..., X, V] = -v * s, c
    jx[..., Y, YAW], jx[..., Y, V] = v * c, s
    jx[..., YAW, V], jx[..., YAW, DELTA] = t / p.wheelbase_m, v * (1.0 + t * t) / p.wheelbase_m
    jx[..., V, A] = 1.0
    jx[..., A, A] = -1.0 / p.accel_time_constant_s
    jx[..., DELTA, DELTA] = -1.0 / p.steer_time_constant_s
    ju = x.new_zeros((*x.shape[:-1], 6, 2))
    ju[..., A, ACCEL] = 1.0 / p.accel_time_constant_s
    ju[..., DELTA, STEER] = 1.0 / p.steer_time_constant_s
    return jx, ju


def rk4(model: Model, x: Tensor, u: Tensor, p: VehicleParams, dt: float) -> Tensor:
    """One RK4 step ``x' (B, nx)`` of ``dt`` seconds with the input ``u (B, 2)`` held."""
    k1 = model.f(x, u, p)
    k2 = model.f(x + 0.5 * dt * k1, u, p)
    k3 = model.f(x + 0.5 * dt * k2, u, p)
    k4 = model.f(x + dt * k3, u, p)
    return x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def rk4_jacobians(
    model: Model, x: Tensor, u: Tensor, p: VehicleParams, dt: float
) -> tuple[Tensor, Tensor, Tensor]:
    """One RK4 step and its exact Jacobians.

    :return: ``x' (B, nx)``, ``dx'/dx (B, nx, nx)``, ``dx'/du (B, nx, 2)``
    """
    nx = model.nx
    eye = torch.eye(nx, dtype=x.dtype, device=x.device)
    # T = d(stage point)/d(x, u), (B, nx, nx + 2); the first stage point is x itself
    t = torch.cat([eye.expand(*x.shape[:-1], nx, nx), x.new_zeros((*x.shape, 2))], -1)
    xs, k_sum, dk_sum = x, torch.zeros_like(x), torch.zeros_like(t)
    for i, (c_next, w) in enumerate(((0.5, 1.0), (0.5, 2.0), (1.0, 2.0), (0.0, 1.0))):
        k = model.f(xs, u, p)  # (B, nx)
        jx, ju = model.jac(xs, u, p)
        dk = jx @ t  # (B, nx, nx + 2)
        dk[..., nx:] += ju
        k_sum = k_sum + w * k
        dk_sum = dk_sum + w * dk
        if i < 3:
            xs = x + c_next * dt * k
            t = dt * c_next * dk
            t[..., :nx] += eye
    x_next = x + dt / 6.0 * k_sum
    d = dt / 6.0 * dk_sum
    return x_next, d[..., :nx] + eye, d[..., nx:]


_STAGE_C = (0.0, 0.5, 0.5, 1.0)  # RK4: where each stage evaluates, as a fraction of dt
_STAGE_W = (1.0, 2.0, 2.0, 1.0)  # and its weight (over 6)


@functools.lru_cache(maxsize=16)
def _lagged_constants(
    p: VehicleParams, dt: float, dtype: torch.dtype, device: torch.device
) -> dict[str, Tensor]:
    """Constants of :func:`lagged_rk4_jacobians`: the linear part (v, a, delta) through RK4.

    Over lin = (v, a, delta, accel_cmd, steer_cmd): ``stage`` (5, 12) gives v, a, delta at the
    four stage points; ``step`` (5, 3) their values after the step. ``basis`` (9, 6) holds the
    tangents, over (yaw, v, a, delta, accel_cmd, steer_cmd), that the nonlinear rows combine:
    e_yaw, then v and delta at each stage.
    """
    ia, isr = 1.0 / p.accel_time_constant_s, 1.0 / p.steer_time_constant_s
    # d/dt (v, a, delta) over (v, a, delta, accel_cmd, steer_cmd)
    lin_dyn = np.array([[0, 1, 0, 0, 0], [0, -ia, 0, ia, 0], [0, 0, -isr, 0, isr]])
    eye = np.eye(5)[:3]  # (3, 5): the stage values start at (v, a, delta)
    stages, ks = [], []
    s = eye
    for i in range(4):
        stages.append(s)
        k = lin_dyn[:, :3] @ s + lin_dyn[:, 3:] @ np.eye(5)[3:]  # (3, 5)
        ks.append(k)
        if i < 3:
            s = eye + _STAGE_C[i + 1] * dt * k
    step = eye + dt / 6 * sum(w * k for w, k in zip(_STAGE_W, ks, strict=True))  # (3, 5)
    to_dirs = np.zeros((5, 6))  # lin coefficients -> tangent over the six directions
    to_dirs[np.arange(5), np.arange(1, 6)] = 1.0
    basis = np.concatenate(
        [np.eye(6)[:1], [st[0] @ to_dirs for st in stages], [st[2] @ to_dirs for st in stages]]
    )
    stage = np.stack(stages, -1).reshape(3, 5, 4).transpose(1, 0, 2).reshape(5, 12)
    c, w = np.array(_STAGE_C), np.array(_STAGE_W)
    consts = {
        "stage": stage,
        "step": step.T,
        "step_jac": step @ to_dirs,  # (3, 6) rows of v, a, delta
        "basis": basis,
        "c": c * dt,
        "g": w * dt / 6,
        "gc": w[1:] * c[1:] * dt * dt / 6,
    }
    return {k: torch.tensor(v, dtype=dtype, device=device) for k, v in consts.items()}


def lagged_pose_jacobians(
    x: Tensor, u: Tensor, p: VehicleParams, dt: float
) -> tuple[Tensor, Tensor]:
    """One RK4 step of the lagged bicycle and its nonlinear Jacobian rows, *feature-first*.

    Speed and the lags are linear with constant coefficients, so their values at the RK4 stage
    points are one mat-mul and their tangents are constants; yaw's stage values do not depend
    on yaw, so all four stages are computed at once. The x, y and yaw rows of the Jacobian are
    per-sample combinations of nine constant tangents; the others are constant (see
    :meth:`Model.linear_part`). Every tensor is ``(features, M)``, so each op runs over
    contiguous rows of M samples.

    :param x: states ``(6, M)``
    :param u: inputs ``(2, M)``
    :return: ``x' (6, M)`` and ``rows (6, 3, M)``: the derivatives of ``(x', y', yaw')``
        (second index) by ``(yaw, v, a, delta, accel_cmd, steer_cmd)`` (first index); by x and
        y they are the identity
    """
    k = _lagged_constants(p, dt, x.dtype, x.device)
    inv_l = 1.0 / p.wheelbase_m
    m = x.shape[1]
    lin = torch.cat([x[V:], u])  # (5, M): v, a, delta, accel_cmd, steer_cmd
    st = k["stage"].T @ lin  # (12, M): v, a, delta at the four stages
    v, d = st[0:4], st[8:12]  # (4, M)
    tan = torch.tan(d)
    alpha = tan * inv_l  # d(yaw rate)/dv
    beta = v * (1.0 + tan * tan) * inv_l  # d(yaw rate)/d delta
    k_yaw = v * alpha  # (4, M), yaw rate at each stage
    c, g, gc = k["c"], k["g"], k["gc"]
    yaw = torch.cat([x[YAW : YAW + 1], x[YAW] + c[1:, None] * k_yaw[:3]])  # (4, M)
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    vc, vs = v * cos, v * sin
    moves = torch.tensordot(g, torch.stack([vc, vs, k_yaw], 1), 1)  # (3, M): x, y, yaw moves
    x_next = torch.cat([x[: YAW + 1] + moves, k["step"].T @ lin])
    # coefficients of rows x, y, yaw over the basis (e_yaw, v at stages 1-4, delta at 1-4)
    ux, uy = gc[:, None] * vs[1:], gc[:, None] * vc[1:]  # a stage's yaw tangent feeds the next
    g1 = g[:, None]
    coef = x.new_empty((9, 3, m))  # written in place, no temporaries
    torch.neg(moves[1], out=coef[0, 0])
    coef[0, 1], coef[0, 2] = moves[0], 1.0
    torch.mul(g1, cos, out=coef[1:5, 0])
    torch.mul(g1, sin, out=coef[1:5, 1])
    coef[1:4, 0].addcmul_(ux, alpha[:3], value=-1.0)
    coef[1:4, 1].addcmul_(uy, alpha[:3])
    torch.mul(ux, beta[:3], out=coef[5:8, 0]).neg_()
    torch.mul(uy, beta[:3], out=coef[5:8, 1])
    coef[8, :2] = 0.0
    torch.mul(g1, alpha, out=coef[1:5, 2])
    torch.mul(g1, beta, out=coef[5:9, 2])
    rows = (k["basis"].T @ coef.view(9, 3 * m)).view(6, 3, m)
    return x_next, rows


def lagged_rk4_jacobians(
    x: Tensor, u: Tensor, p: VehicleParams, dt: float
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`rk4_jacobians` of the lagged bicycle, written out (:func:`lagged_pose_jacobians`);
    same results, far fewer ops."""
    lead = x.shape[:-1]
    x_next, rows = lagged_pose_jacobians(x.reshape(-1, 6).T, u.reshape(-1, 2).T, p, dt)
    k = _lagged_constants(p, dt, x.dtype, x.device)
    m = rows.shape[-1]
    jac = x.new_zeros((m, 6, 8))
    jac[:, 0, 0] = jac[:, 1, 1] = 1.0  # x and y feed only themselves
    jac[:, :3, 2:] = rows.permute(2, 1, 0)
    jac[:, 3:, 2:] = k["step_jac"]
    jac = jac.view(*lead, 6, 8)
    return x_next.T.reshape(*lead, 6), jac[..., :6], jac[..., 6:]


@dataclass(frozen=True)
class Model:
    """A continuous-time model: its state size, derivative, hand-written Jacobians, and
    optionally faster equivalents of :func:`rk4_jacobians` for it.

    Both models share the structure the MPC's condensing relies on: the state is
    ``(x, y, yaw, rest...)``; x and y feed only themselves, yaw's own derivative is one, and the
    rest (speed, lags) evolves linearly with constant coefficients (:meth:`linear_part`).
    """

    name: str
    nx: int
    f: Dynamics
    jac: Jacobian
    rk4_jac: StepJacobian | None = None
    pose_jac: PoseJacobian | None = None

    def step_jacobians(
        self, x: Tensor, u: Tensor, p: VehicleParams, dt: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``x' (B, nx)``, ``A (B, nx, nx)``, ``B (B, nx, 2)`` of one RK4 step."""
        if self.rk4_jac is not None:
            return self.rk4_jac(x, u, p, dt)
        return rk4_jacobians(self, x, u, p, dt)

    def pose_jacobians(
        self, x: Tensor, u: Tensor, p: VehicleParams, dt: float
    ) -> tuple[Tensor, Tensor]:
        """One RK4 step feature-first, ``x (nx, M)``, ``u (2, M)``: ``x' (nx, M)`` and the
        derivatives ``(nx, 3, M)`` of ``(x', y', yaw')`` by ``(yaw, rest..., inputs)``."""
        if self.pose_jac is not None:
            return self.pose_jac(x, u, p, dt)
        x_next, a, b = self.step_jacobians(x.T, u.T, p, dt)
        rows = torch.cat([a[:, : YAW + 1, YAW:], b[:, : YAW + 1]], -1)  # (M, 3, nx)
        return x_next.T, rows.permute(2, 1, 0).contiguous()

    def linear_part(self, p: VehicleParams, dt: float) -> tuple[Tensor, Tensor]:
        """The constant rows of one RK4 step, float64: ``d rest' / d rest (nx-3, nx-3)`` and
        ``d rest' / d u (nx-3, 2)``.

        :raises ValueError: if the model lacks the structure (checked at a few states)
        """
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(4, self.nx, generator=gen, dtype=torch.float64)
        x[:, V] += 5.0
        u = 0.2 * torch.randn(4, 2, generator=gen, dtype=torch.float64)
        x[0], u[0] = 0.0, 0.0
        _, a, b = self.step_jacobians(x, u, p, dt)
        r = YAW + 1
        ok = (
            torch.equal(a[:, r:, :r], torch.zeros_like(a[:, r:, :r]))
            and torch.allclose(a[:, :r, :2], torch.eye(r, 2, dtype=a.dtype).expand(4, r, 2))
            and torch.allclose(a[:, YAW, YAW], torch.ones_like(a[:, YAW, YAW]))
            and torch.allclose(a[:, r:, r:], a[:1, r:, r:].expand_as(a[:, r:, r:]))
            and torch.allclose(b[:, r:], b[:1, r:].expand_as(b[:, r:]))
        )
        if not ok:
            raise ValueError(
                f"model {self.name!r}: the MPC needs x, y feeding only themselves and the "
                "states after yaw linear with constant coefficients"
            )
        return a[0, r:, r:], b[0, r:]


KINEMATIC = Model("kinematic", 4, kinematic_bicycle, kinematic_bicycle_jac)
LAGGED = Model(
    "lagged", 6, lagged_bicycle, lagged_bicycle_jac, lagged_rk4_jacobians, lagged_pose_jacobians
)
MODELS = {m.name: m for m in (KINEMATIC, LAGGED)}
