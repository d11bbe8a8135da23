"""Batched nonlinear MPC: Gauss-Newton SQP over multiple shooting, condensed, ADMM for the QPs.

The problem, for each vehicle of the batch (docs/control.md has the reasoning)::

    min  Σ_{k=1..N} c_k (w_lat e_lat,k² + w_head e_head,k² + w_speed e_v,k²)
       + Σ_{k=0..N-1} w_accel (a_k - a_ff,k)² + w_steer (δ_k - δ_ff,k)²
                      + w_jerk ((a_k - a_{k-1}) / τ_k)² + w_steer_rate ((δ_k - δ_{k-1}) / τ_k)²
    s.t. x_{k+1} = RK4(x_k, u_k), x_0 = current state, u_{-1} = the previously applied input,
         accel_min ≤ a_k ≤ accel_max, |δ_k| ≤ steer_max,
         |a_k - a_{k-1}| ≤ jerk_max τ_k, |δ_k - δ_{k-1}| ≤ steer_rate_max τ_k

with ``τ_0`` the control period (the time since the previous input was applied), ``τ_k = dt``
after, ``c_N = w_terminal`` and 1 otherwise. The errors are measured against a time-indexed
reference ``(x, y, yaw, v, curvature)`` at each step: lateral error along the reference's
normal, heading error, speed error. The feed-forward inputs come from the reference: the speed
profile's slope and ``atan(wheelbase · curvature)``.

Every iteration linearises the RK4 model at all steps at once (no sequential rollout), condenses
the states away and solves the input QP with :func:`control.qp.solve_qp`. The condensing uses
the models' structure: only x, y and yaw have per-vehicle sensitivities; speed and the actuator
lags respond to the inputs alike for every vehicle (constants, built once). Inside a step the
tensors are feature-first, ``(state, step, vehicle)``, so every op runs over contiguous rows of
vehicles; the interface is batch-first. Everything stays on ``device``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

import torch
from torch import Tensor

from control.models import MODELS, YAW, Model, V, X, Y, rk4
from control.qp import ADMMSettings, QPResult, solve_qp
from sim.memory import retain_freed_memory
from sim.messages import VehicleParams

NU = 2  # inputs: accel (m/s²) and steer (rad), or their commands for the lagged model
REF_X, REF_Y, REF_YAW, REF_V, REF_CURV = range(5)  # reference channels, (B, N+1, 5)
SERIAL_BATCH_CPU = 256  # smaller batches on the CPU are solved on one thread
LINE_SEARCH_STEPS = (1.0, 0.5, 0.25)  # step lengths tried after the first iteration


class _Warm(NamedTuple):
    """The previous solution, the start of the next solve."""

    xs: Tensor  # (B, N+1, nx) predicted states
    zb: Tensor  # (B, nb, 2) block inputs
    ys: Tensor  # (B, 2n - 2) the QP's duals
    ok: Tensor  # (B,) usable (the solve converged)


class Status(IntEnum):
    """Per-vehicle outcome of :meth:`MPC.solve`."""

    OK = 0
    STATE_NOT_FINITE = 1
    REFERENCE_NOT_FINITE = 2
    NOT_CONVERGED = 3


@dataclass(frozen=True)
class MPCSettings:
    """Horizon, weights, bounds and solver budget of the MPC.

    The default bounds are comfort limits inside the default :class:`VehicleParams`; build
    settings for another car with :meth:`for_vehicle`.
    """

    horizon: int = 20  # N, prediction steps
    dt_s: float = 0.1  # prediction step
    # steps each input is held (move blocking); sums to horizon; fine early, coarse late
    input_blocks: tuple[int, ...] = (1, 1, 1, 1, 2, 2, 2, 2, 4, 4)
    control_period_s: float = 0.05  # time between applied inputs: rate bounds of the first step
    # the reference reads the plan's speed profile this far ahead (times the ego's speed, at
    # least 1 m), as the PID baseline does: the planner re-anchors its profile at the ego's
    # speed every cycle, so a reference read at the ego lags the profile by the actuator lag
    speed_preview_s: float = 0.5
    model: str = "lagged"  # "lagged" (inputs are actuator commands) or "kinematic"
    # tracking weights, per unit² of error at steps 1..N; the last step counts w_terminal times
    w_lateral: float = 1.0  # 1/m²
    w_heading: float = 2.0  # 1/rad²
    w_speed: float = 2.0  # s²/m²
    w_terminal: float = 3.0
    # input weights: distance from the feed-forward, and rates
    w_accel: float = 0.05  # s⁴/m²
    w_steer: float = 1.0  # 1/rad²
    w_jerk: float = 0.02  # s⁶/m²
    w_steer_rate: float = 0.5  # s²/rad²
    # bounds
    accel_min_mps2: float = -3.0
    accel_max_mps2: float = 2.0
    steer_max_rad: float = 0.5
    steer_rate_max_radps: float = 0.6
    jerk_max_mps3: float = 4.0
    vehicle: VehicleParams = field(default_factory=VehicleParams)
    # "sqp": Gauss-Newton SQP iterated to convergence (line search after the first step);
    # "rti": the real-time iteration (Diehl et al.): one Gauss-Newton QP per control step from
    # the shifted warm start, converged when its QP is; what OSQP's linearised QP does
    mode: str = "sqp"
    # solver budget
    max_sqp_iters: int = 8  # a warm start needs 1-2; a cold start far from the path up to ~6
    # converged when no input moves more than this fraction of its range in an iteration; what
    # is left is second order (~tol²), and the next control step iterates on (real-time iteration)
    sqp_tol: float = 0.02
    admm: ADMMSettings = field(default_factory=ADMMSettings)
    dtype: str = "float32"  # float32: half the memory traffic of float64, the same optimum

    def __post_init__(self) -> None:
        if self.speed_preview_s < 0.0:
            raise ValueError("MPCSettings.speed_preview_s must be >= 0")
        if self.horizon < 2 or self.dt_s <= 0.0 or self.control_period_s <= 0.0:
            raise ValueError("MPCSettings: horizon must be >= 2, dt_s and control_period_s > 0")
        if sum(self.input_blocks) != self.horizon or min(self.input_blocks) < 1:
            raise ValueError(
                f"MPCSettings.input_blocks {self.input_blocks} must be positive and sum to the "
                f"horizon {self.horizon}; use (1,) * horizon for one input per step"
            )
        if self.model not in MODELS:
            raise ValueError(
                f"MPCSettings.model must be one of {sorted(MODELS)}, not {self.model!r}"
            )
        if self.mode not in ("sqp", "rti"):
            raise ValueError(f"MPCSettings.mode must be 'sqp' or 'rti', not {self.mode!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(
                f"MPCSettings.dtype must be 'float32' or 'float64', not {self.dtype!r}"
            )
        if not self.accel_min_mps2 < 0.0 < self.accel_max_mps2 or self.steer_max_rad <= 0.0:
            raise ValueError("MPCSettings: need accel_min < 0 < accel_max and steer_max > 0")
        if self.steer_rate_max_radps <= 0.0 or self.jerk_max_mps3 <= 0.0:
            raise ValueError("MPCSettings: steer_rate_max_radps and jerk_max_mps3 must be > 0")
        if self.w_accel + self.w_jerk <= 0.0 or self.w_steer + self.w_steer_rate <= 0.0:
            raise ValueError("MPCSettings: each input needs a positive value or rate weight")

    @classmethod
    def for_vehicle(cls, params: VehicleParams, **overrides: Any) -> MPCSettings:
        """Settings whose bounds are the comfort defaults clipped to ``params``' own limits."""
        tied = dict(
            vehicle=params,
            accel_min_mps2=max(cls.accel_min_mps2, -params.max_decel_mps2),
            accel_max_mps2=min(cls.accel_max_mps2, params.max_accel_mps2),
            steer_max_rad=params.max_steer_rad,
            steer_rate_max_radps=params.max_steer_rate_radps,
        )
        return cls(**{**tied, **overrides})

    @classmethod
    def uniform(cls, horizon: int, **overrides: Any) -> MPCSettings:
        """Settings with one input per step (no move blocking) over ``horizon`` steps."""
        return cls(horizon=horizon, input_blocks=(1,) * horizon, **overrides)

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


def _finite_rows(t: Tensor) -> Tensor:
    """Whether each row of ``t (B, k)`` is all finite (``inf · 0`` and ``nan · 0`` are nan;
    ten times faster than ``isfinite().all()`` on the CPU)."""
    return (t * 0.0).sum(-1) == 0.0


def feedforward(ref: Tensor, cfg: MPCSettings) -> Tensor:
    """Inputs ``(B, N, 2)`` that hold the reference: its acceleration and Ackermann steer."""
    accel = (ref[:, 1:, REF_V] - ref[:, :-1, REF_V]) / cfg.dt_s
    steer = torch.atan(cfg.vehicle.wheelbase_m * ref[:, :-1, REF_CURV])
    return torch.stack([accel, steer], -1)


def tracking_errors(xs: Tensor, ref: Tensor) -> Tensor:
    """Lateral, heading and speed errors ``(..., 3)`` of states ``(..., nx)`` vs ``(..., 5)``."""
    c, s = torch.cos(ref[..., REF_YAW]), torch.sin(ref[..., REF_YAW])
    lat = -s * (xs[..., X] - ref[..., REF_X]) + c * (xs[..., Y] - ref[..., REF_Y])
    return torch.stack([lat, xs[..., YAW] - ref[..., REF_YAW], xs[..., V] - ref[..., REF_V]], -1)


def tracking_errors_t(xs: Tensor, ref: Tensor) -> Tensor:
    """:func:`tracking_errors` feature-first: states ``(nx, ...)``, reference ``(5, ...)``."""
    c, s = torch.cos(ref[REF_YAW]), torch.sin(ref[REF_YAW])
    lat = c * (xs[Y] - ref[REF_Y]) - s * (xs[X] - ref[REF_X])
    return torch.stack([lat, xs[YAW] - ref[REF_YAW], xs[V] - ref[REF_V]])


def trajectory_cost(
    xs: Tensor, us: Tensor, ref: Tensor, u_prev: Tensor, cfg: MPCSettings
) -> Tensor:
    """The MPC objective ``(B,)`` of states ``(B, N+1, nx)`` and inputs ``(B, N, 2)``."""
    n = cfg.horizon
    w = xs.new_tensor([cfg.w_lateral, cfg.w_heading, cfg.w_speed])
    stage = xs.new_ones(n)
    stage[-1] = cfg.w_terminal
    e = tracking_errors(xs[:, 1:], ref[:, 1:])  # (B, N, 3)
    track = ((e * e * w).sum(-1) * stage).sum(-1)
    wu = xs.new_tensor([cfg.w_accel, cfg.w_steer])
    du = us - feedforward(ref, cfg)
    tau = xs.new_full((n, 1), cfg.dt_s)
    tau[0] = cfg.control_period_s
    rate = torch.diff(us, dim=1, prepend=u_prev.unsqueeze(1)) / tau  # (B, N, 2)
    wr = xs.new_tensor([cfg.w_jerk, cfg.w_steer_rate])
    return track + (du * du * wu).sum((1, 2)) + (rate * rate * wr).sum((1, 2))


def rollout(model: Model, x0: Tensor, us: Tensor, cfg: MPCSettings) -> Tensor:
    """States ``(B, N+1, nx)`` from ``x0 (B, nx)`` under inputs ``(B, N, 2)``, RK4."""
    xs = [x0]
    for k in range(us.shape[1]):
        xs.append(rk4(model, xs[-1], us[:, k], cfg.vehicle, cfg.dt_s))
    return torch.stack(xs, 1)


class MPC:
    """The batched solver. It holds only the warm start: the shifted previous solution.

    :param settings: horizon, weights, bounds, budget
    :param device: where every tensor lives (``"cpu"``, ``"cuda"``, ...); default cpu
    """

    def __init__(
        self, settings: MPCSettings = MPCSettings(), device: str | torch.device | None = None
    ):
        self.cfg = cfg = settings
        self.device = torch.device(device if device is not None else "cpu")
        self.dtype = cfg.torch_dtype
        self.model = MODELS[cfg.model]
        if self.device.type == "cpu":
            retain_freed_memory()
        kw: dict[str, Any] = dict(dtype=self.dtype, device=self.device)
        n_h, nb = cfg.horizon, len(cfg.input_blocks)
        self.n_blocks, self.n = nb, nb * NU
        # move blocking: step k uses block kb[k]; expand = (N·nu, n) maps block to step inputs
        self._kb = torch.repeat_interleave(torch.arange(nb), torch.tensor(cfg.input_blocks)).to(
            self.device
        )
        self._kb_list = self._kb.tolist()
        self._block_map = torch.nn.functional.one_hot(self._kb, nb).to(**kw)  # (N, nb)
        expand = torch.kron(self._block_map, torch.eye(NU, **kw))  # (N·nu, n)
        self._expand = expand
        self._block_len = torch.tensor(cfg.input_blocks, **kw).unsqueeze(-1)  # (nb, 1)
        # the input part of the cost (feed-forward and rate weights), constant over the batch
        wu = torch.tensor([cfg.w_accel, cfg.w_steer], **kw).repeat(n_h)  # (N·nu,)
        wr = torch.tensor([cfg.w_jerk, cfg.w_steer_rate], **kw).repeat(n_h)
        tau = torch.full((n_h * NU,), cfg.dt_s, **kw)
        tau[:NU] = cfg.control_period_s
        eye = torch.eye(n_h * NU, **kw)
        d_full = eye - torch.diag(torch.ones((n_h - 1) * NU, **kw), -NU)  # row k: u_k - u_{k-1}
        self._h_inputs = (
            expand.T @ (torch.diag(wu) + d_full.T @ torch.diag(wr / tau**2) @ d_full) @ expand
        )
        self._w_inputs = wu
        self._w_rate0 = wr[:NU] / cfg.control_period_s**2  # pulls u_0 towards u_prev
        w = torch.tensor([cfg.w_lateral, cfg.w_heading, cfg.w_speed], **kw)
        stage = torch.ones(n_h, 1, **kw)
        stage[-1] = cfg.w_terminal
        self._sqrt_w = (w * stage).sqrt()  # (N, 3)
        self._rate_max = torch.tensor([cfg.jerk_max_mps3, cfg.steer_rate_max_radps], **kw)
        self._box_lo = torch.tensor([cfg.accel_min_mps2, -cfg.steer_max_rad], **kw)
        self._box_hi = torch.tensor([cfg.accel_max_mps2, cfg.steer_max_rad], **kw)
        self._step_scale = 1.0 / (self._box_hi - self._box_lo)  # normalises input steps
        tau_b = torch.full((nb, 1), cfg.dt_s, **kw)
        tau_b[0] = cfg.control_period_s  # a block's input changes at one step boundary
        self._rate_bound = self._rate_max * tau_b  # (nb, 2)
        self._init_condensing()
        self._init_shift()
        self.reset()

    def _init_shift(self) -> None:
        """The warm start's shift by one control period, as constant maps along the time axis:
        states interpolated between prediction steps, step inputs likewise (the last held),
        then averaged back over each block."""
        cfg, n_h = self.cfg, self.cfg.horizon
        steps = cfg.control_period_s / cfg.dt_s
        whole, frac = math.floor(steps), steps - math.floor(steps)

        def interpolation(size: int) -> Tensor:
            m = torch.zeros(size, size, dtype=torch.float64)
            for i in range(size):
                m[i, min(i + whole, size - 1)] += 1.0 - frac
                m[i, min(i + whole + 1, size - 1)] += frac
            return m

        block_map = self._block_map.double().cpu()  # (N, nb)
        average = block_map.T / block_map.sum(0, keepdim=True).T  # (nb, N)
        blocks = average @ interpolation(n_h) @ block_map  # (nb, nb)
        kw: dict[str, Any] = dict(dtype=self.dtype, device=self.device)
        self._shift_states = interpolation(n_h + 1).to(**kw)
        self._shift_blocks_t = torch.kron(blocks, torch.eye(NU, dtype=torch.float64)).T.to(**kw)

    def _init_condensing(self) -> None:
        """Constants of the condensing: the model's linear states (speed, lags) respond to the
        inputs the same way for every vehicle and at every step (:meth:`Model.linear_part`)."""
        cfg, n_h, n = self.cfg, self.cfg.horizon, self.n
        lin, lin_u = self.model.linear_part(cfg.vehicle, cfg.dt_s)  # float64
        nl = lin.shape[0]
        self._nl = nl
        # c_lin[k] = d rest_{k+1} / d z (nl, n): c_lin[k] = L c_lin[k-1] + B_l E_k
        c_lin = torch.zeros(n_h, nl, n, dtype=torch.float64)
        prev = torch.zeros(nl, n, dtype=torch.float64)
        for k, j in enumerate(self._kb_list):
            prev = lin @ prev
            prev[:, NU * j : NU * j + NU] += lin_u
            c_lin[k] = prev
        # defects of the linear states propagate through L: aff[:, k] = Σ_{i<=k} L^(k-i) d[:, i]
        powers = [torch.eye(nl, dtype=torch.float64)]
        for _ in range(n_h - 1):
            powers.append(lin @ powers[-1])
        prop = torch.zeros(nl, n_h, nl, n_h, dtype=torch.float64)
        for k in range(n_h):
            for i in range(k + 1):
                prop[:, k, :, i] = powers[k - i]
        # the speed residual rows: the same for every vehicle, so their share of GᵀG is constant
        g_speed = self._sqrt_w[:, 2:3].double().cpu() * c_lin[:, V - YAW - 1]  # (N, n)
        kw: dict[str, Any] = dict(dtype=self.dtype, device=self.device)
        self._c_lin = c_lin.permute(1, 0, 2).reshape(nl * n_h, n).to(**kw)  # (nl·N, n)
        c_prev = torch.cat([torch.zeros(1, nl, n, dtype=torch.float64), c_lin[:-1]])
        self._c_prev = c_prev.to(**kw)  # (N, nl, n): c_lin[k-1]
        self._prop = prop.reshape(nl * n_h, nl * n_h).to(**kw)
        self._g_speed_t = g_speed.T.contiguous().to(**kw)  # (n, N)
        self._h_speed = (g_speed.T @ g_speed).to(**kw)
        # (step, input column) pairs: step k's inputs are its block's columns
        self._b_steps = torch.arange(n_h, device=self.device).repeat_interleave(NU)
        self._b_cols = (NU * self._kb.unsqueeze(1) + torch.arange(NU, device=self.device)).ravel()
        self._tri = torch.ones(n_h, n_h, **kw).tril()  # running sums over the steps
        self._sw_lat = self._sqrt_w[:, 0:1].unsqueeze(-1)  # (N, 1, 1)
        self._sw_head = self._sqrt_w[:, 1:2].unsqueeze(-1)
        self._sw_speed = self._sqrt_w[:, 2:3]  # (N, 1)

    def reset(self) -> None:
        """Forget the warm start (a new episode, or after a failure)."""
        self._warm: _Warm | None = None

    def move_frame(self, pose: Tensor) -> None:
        """Re-express the warm start in a new frame whose pose in the old one is ``(B, 3)``.

        The controller solves in the ego frame, which moves between calls.
        """
        if self._warm is None:
            return
        xs = self._warm.xs
        pose = pose.to(self.device, self.dtype)
        if pose.shape != (xs.shape[0], 3):
            return  # a different batch: the warm start will not be used
        c, s = torch.cos(pose[:, 2:3]), torch.sin(pose[:, 2:3])  # (B, 1)
        dx, dy = xs[..., X] - pose[:, 0:1], xs[..., Y] - pose[:, 1:2]
        xs = xs.clone()
        xs[..., X], xs[..., Y] = c * dx + s * dy, -s * dx + c * dy
        xs[..., YAW] = xs[..., YAW] - pose[:, 2:3]
        self._warm = self._warm._replace(xs=xs)

    def solve(
        self, x0: Tensor, ref: Tensor, u_prev: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
        """Solve a batch of problems, warm-started from the previous solve where there is one.

        A small batch on the CPU runs on one thread: its ops are too small to share out, and
        threads waiting on a busy core cost it ten times over (measured, docs/control.md).

        :param x0: current states ``(B, nx)`` (``nx`` of ``settings.model``)
        :param ref: time-indexed reference ``(B, N+1, 5)``: x, y, yaw, v, curvature at
            ``t = 0, dt, ..., N dt``; yaw continuous along the horizon
        :param u_prev: the inputs applied last ``(B, 2)`` (the rate bounds start from them)
        :return: first inputs ``u0 (B, 2)``, predicted states ``X (B, N+1, nx)``, inputs
            ``U (B, N, 2)`` (always within the bounds), and ``info``: ``status (B,)``
            (:class:`Status` values), ``converged (B,)``, ``sqp_iters`` and
            ``qp_iters`` (the most any problem of the batch needed)
        """
        if self.device.type != "cpu" or x0.shape[0] >= SERIAL_BATCH_CPU:
            return self._solve(x0, ref, u_prev)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._solve(x0, ref, u_prev)
        finally:
            torch.set_num_threads(threads)

    def _solve(
        self, x0: Tensor, ref: Tensor, u_prev: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
        cfg, nx, n_h = self.cfg, self.model.nx, self.cfg.horizon
        x0, ref, u_prev = (t.to(self.device, self.dtype) for t in (x0, ref, u_prev))
        bsz = x0.shape[0]
        if x0.shape != (bsz, nx) or ref.shape != (bsz, n_h + 1, 5) or u_prev.shape != (bsz, NU):
            raise ValueError(
                f"MPC.solve expects x0 (B, {nx}), ref (B, {n_h + 1}, 5), u_prev (B, 2); got "
                f"{tuple(x0.shape)}, {tuple(ref.shape)}, {tuple(u_prev.shape)}"
            )
        # rows that cannot be solved get a harmless stand-in problem and a status
        bad_state = ~(_finite_rows(x0) & _finite_rows(u_prev))
        bad_ref = ~_finite_rows(ref.reshape(bsz, -1)) & ~bad_state
        bad = bad_state | bad_ref
        if bool(bad.any()):
            x0 = torch.where(bad[:, None], torch.zeros_like(x0), x0)
            u_prev = torch.where(bad[:, None], torch.zeros_like(u_prev), u_prev)
            ref = torch.where(bad[:, None, None], torch.zeros_like(ref), ref)
        # the reference's yaw is taken to within π of the state's
        turns = torch.round((ref[:, :1, REF_YAW] - x0[:, YAW : YAW + 1]) / (2 * math.pi))
        ref = torch.cat(
            [
                ref[..., :REF_YAW],
                ref[..., REF_YAW:REF_V] - 2 * math.pi * turns.unsqueeze(-1),
                ref[..., REF_V:],
            ],
            -1,
        )
        uff = feedforward(ref, cfg)  # (B, N, 2)
        # bounds per block; the first input's rate interval around u_prev, kept inside the box
        tc = cfg.control_period_s
        lo = self._box_lo.repeat(bsz, self.n_blocks)
        hi = self._box_hi.repeat(bsz, self.n_blocks)
        lo[:, :NU] = (u_prev - self._rate_max * tc).clamp(self._box_lo, self._box_hi)
        hi[:, :NU] = (u_prev + self._rate_max * tc).clamp(self._box_lo, self._box_hi)
        rhi = (self._rate_max * cfg.dt_s).repeat(bsz, self.n_blocks - 1)
        problem = (x0, ref, uff, u_prev, lo, hi, -rhi, rhi)

        xs, zb, ys = self._initial_guess(x0, uff, u_prev)
        rows = torch.arange(bsz, device=self.device)  # problems still iterating
        qp_ok = torch.zeros(bsz, dtype=torch.bool, device=self.device)
        converged = torch.zeros_like(qp_ok)
        sqp_iters = qp_iters = 0
        rti = cfg.mode == "rti"
        for it in range(1 if rti else cfg.max_sqp_iters):
            sqp_iters += 1
            full = len(rows) == bsz
            sub = problem if full else tuple(t[rows] for t in problem)
            warm = (xs, zb, ys) if full else (xs[rows], zb[rows], ys[rows])
            xs_n, zb_n, res = self._sqp_step(*warm, *sub)
            zb_r = warm[1]
            step = ((zb_n - zb_r).abs() * self._step_scale).amax((1, 2))  # (b,) full step
            if it > 0:  # not settled by one full step: globalise with a line search
                xs_n, zb_n = self._line_search(zb_r, zb_n, sub[0], sub[1], sub[3])
            if full:
                xs, zb, ys, qp_ok = xs_n, zb_n, res.y, res.converged
            else:
                xs[rows], zb[rows], ys[rows] = xs_n, zb_n, res.y
                qp_ok[rows] = res.converged
            qp_iters = max(qp_iters, res.iters)
            done = torch.ones_like(step, dtype=torch.bool) if rti else step <= cfg.sqp_tol
            converged[rows[done]] = True
            rows = rows[~done]
            if len(rows) == 0:
                break
        zb = self._project(zb, u_prev)
        us = self._steps(zb)  # (B, N, 2)
        converged = converged & qp_ok & ~bad
        status = torch.full((bsz,), int(Status.OK), dtype=torch.long, device=self.device)
        status[~converged] = int(Status.NOT_CONVERGED)
        status[bad_ref] = int(Status.REFERENCE_NOT_FINITE)
        status[bad_state] = int(Status.STATE_NOT_FINITE)
        self._warm = _Warm(xs, zb, ys, converged)
        info: dict[str, Any] = dict(
            status=status,
            converged=converged,
            sqp_iters=sqp_iters,
            qp_iters=qp_iters,
        )
        return us[:, 0], xs, us, info

    def _initial_guess(
        self, x0: Tensor, uff: Tensor, u_prev: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The warm start (states, block inputs, QP duals) moved one control period on where
        usable, else the feed-forward with zero duals."""
        bsz = x0.shape[0]
        warm = self._warm if self._warm is not None and self._warm.xs.shape[0] == bsz else None
        if warm is not None and bool(warm.ok.all()):
            xs, zb, ys = self._shift(warm.xs, warm.zb, warm.ys)
        else:
            zb = self._project(self._to_blocks(uff), u_prev)
            xs = rollout(self.model, x0, self._steps(zb), self.cfg)
            ys = x0.new_zeros((bsz, 2 * self.n - NU))
            if warm is not None and bool(warm.ok.any()):
                use = warm.ok
                w_xs, w_zb, w_ys = self._shift(warm.xs, warm.zb, warm.ys)
                xs = torch.where(use[:, None, None], w_xs, xs)
                zb = torch.where(use[:, None, None], w_zb, zb)
                ys = torch.where(use[:, None], w_ys, ys)
        turns = torch.round((xs[:, :1, YAW] - x0[:, YAW : YAW + 1]) / (2 * math.pi))
        xs = xs.clone()
        xs[..., YAW] -= 2 * math.pi * turns
        xs[:, 0] = x0
        return xs, zb, ys

    def _line_search(
        self, z_old: Tensor, z_new: Tensor, x0: Tensor, ref: Tensor, u_prev: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The best of a few steps from ``z_old`` towards ``z_new`` ``(b, nb, 2)`` by the true
        (rolled-out) cost; returns its states ``(b, N+1, nx)`` (no defects) and inputs.

        Full Gauss-Newton steps can cycle far from the optimum (large offsets, saturated
        inputs); shorter steps that lower the cost make the iteration converge there too.
        Steps between two feasible inputs stay feasible.
        """
        k, b = len(LINE_SEARCH_STEPS), z_old.shape[0]
        cand = torch.cat([torch.lerp(z_old, z_new, a) for a in LINE_SEARCH_STEPS])  # (k·b, ...)
        us = self._steps(cand)
        xs = rollout(self.model, x0.repeat(k, 1), us, self.cfg)
        cost = trajectory_cost(xs, us, ref.repeat(k, 1, 1), u_prev.repeat(k, 1), self.cfg)
        pick = cost.view(k, b).argmin(0) * b + torch.arange(b, device=self.device)  # (b,)
        return xs[pick], cand[pick]

    def _steps(self, zb: Tensor) -> Tensor:
        """Block inputs ``(B, nb, 2)`` -> step inputs ``(B, N, 2)``."""
        return zb.index_select(1, self._kb)

    def _to_blocks(self, us: Tensor) -> Tensor:
        """Step inputs ``(B, N, 2)`` -> block inputs ``(B, nb, 2)`` (the mean over each block)."""
        return torch.einsum("bkn,kj->bjn", us, self._block_map) / self._block_len

    def _shift(self, xs: Tensor, zb: Tensor, ys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Move a solution one control period forward in time (holding its end).

        Along the time axis each part is a constant linear map (``_init_shift``): states
        interpolated between prediction steps (feature-first, where our own solutions already
        are), block inputs and the QP's duals of their bounds through the step inputs.
        """
        xt = xs.permute(2, 1, 0).contiguous()  # (nx, N+1, B)
        xs = torch.matmul(self._shift_states, xt).permute(2, 1, 0)
        zb = (zb.reshape(zb.shape[0], self.n) @ self._shift_blocks_t).view(zb.shape)
        n = self.n
        ys = ys.clone()
        ys[:, :n] = ys[:, :n] @ self._shift_blocks_t  # box rows, one per block input
        # rate rows: block j's change from block j - 1 (j >= 1), shifted as block j's input
        rates = torch.nn.functional.pad(ys[:, n:], (NU, 0)) @ self._shift_blocks_t
        ys[:, n:] = rates[:, NU:]
        return xs, zb, ys

    def _project(self, zb: Tensor, u_prev: Tensor) -> Tensor:
        """The nearest block inputs, in order, that keep every bound (bounds win over rates).

        Block j is clamped into the box and the rate interval around block j-1's projected
        value: a forward recursion, run here as a fixed-point iteration over all blocks at once
        (after i sweeps the first i blocks are final, so it ends within ``nb`` sweeps with the
        recursion's answer; the QP's rounding-level violations take two).
        """
        lo_box, hi_box = self._box_lo, self._box_hi
        out = zb.clamp(lo_box, hi_box)
        first = u_prev.unsqueeze(1)
        for _ in range(zb.shape[1]):
            prev = torch.cat([first, out[:, :-1]], 1)  # (B, nb, 2)
            lo = (prev - self._rate_bound).clamp(lo_box, hi_box)
            hi = (prev + self._rate_bound).clamp(lo_box, hi_box)
            new = torch.clamp(zb, lo, hi)
            if torch.equal(new, out):
                break
            out = new
        return out

    def _sqp_step(
        self,
        xs: Tensor,
        zb: Tensor,
        ys: Tensor,
        x0: Tensor,
        ref: Tensor,
        uff: Tensor,
        u_prev: Tensor,
        lo: Tensor,
        hi: Tensor,
        rlo: Tensor,
        rhi: Tensor,
    ) -> tuple[Tensor, Tensor, QPResult]:
        """One Gauss-Newton step: linearise, condense, solve the QP, full step.

        Feature-first inside (``(state, step, vehicle)``): every op runs over contiguous rows
        of vehicles. Only x, y and yaw need per-vehicle sensitivities; the linear states' are
        constants (``_init_condensing``).
        """
        cfg, bsz, nx, n, nl = self.cfg, x0.shape[0], self.model.nx, self.n, self._nl
        n_h = cfg.horizon
        r = YAW + 1  # the pose rows x, y, yaw
        xt = xs.permute(2, 1, 0).contiguous()  # (nx, N+1, b)
        ut = self._steps(zb).permute(2, 1, 0).contiguous()  # (2, N, b)
        ref_t = ref[:, 1:].permute(2, 1, 0).contiguous()  # (5, N, b)
        # linearise at every step at once
        fx, jr = self.model.pose_jacobians(
            xt[:, :-1].reshape(nx, n_h * bsz), ut.reshape(NU, n_h * bsz), cfg.vehicle, cfg.dt_s
        )
        jr = jr.view(nx, r, n_h, bsz)  # d(x, y, yaw)' / d(yaw, rest, u)
        defect = fx.view(nx, n_h, bsz) - xt[:, 1:]  # (nx, N, b)
        q_rest, b_pose, a_yaw = jr[1 : 1 + nl], jr[1 + nl :], jr[0, :YAW]
        # the linear states: d rest_{k+1} = c_lin[k] dz + aff[:, k]
        aff = (self._prop @ defect[r:].reshape(nl * n_h, bsz)).view(nl, n_h, bsz)
        aff_prev = torch.nn.functional.pad(aff[:, :-1], (0, 0, 1, 0))  # at step k: aff[:, k-1]
        # the pose rows gam[i, k] = d pose_i,{k+1} / d(z, 1): (3, N, b, n + 1); each step adds
        # Q_k d rest_k + B_k (its block's columns) + defect_k, and x, y also a_yaw,k d yaw_k
        gam = xs.new_empty((r, n_h, bsz, n + 1))
        for i in range(r):
            torch.bmm(q_rest[:, i].permute(1, 2, 0), self._c_prev, out=gam[i, :, :, :n])
        gam[..., n] = (q_rest * aff_prev.unsqueeze(1)).sum(0) + defect[:r]
        # B_k into the columns of step k's block: (step, column) pairs, one indexed add
        gam[:, self._b_steps, :, self._b_cols] += b_pose.permute(2, 0, 1, 3).reshape(-1, r, bsz)
        steps, xy, yaw = gam.unbind(1), gam[:YAW].unbind(1), gam[YAW].unbind(0)
        a_k = a_yaw.unsqueeze(-1).unbind(1)  # (2, b, 1) per step
        for k in range(1, n_h):  # running sums (torch's cumsum over a leading dim is slower)
            steps[k].add_(steps[k - 1])
            xy[k].addcmul_(a_k[k], yaw[k - 1])
        # residual rows √W (e + G dz) of the lateral and heading errors, linear in the pose,
        # written batch-first (b, 2N, n + 1) for GᵀG
        yaw_ref = ref_t[REF_YAW].unsqueeze(-1)  # (N, b, 1)
        sw_lat, sw_head = self._sw_lat.view(n_h, 1, 1), self._sw_head.view(n_h, 1, 1)
        c, s = torch.cos(yaw_ref) * sw_lat, torch.sin(yaw_ref) * sw_lat
        err = tracking_errors_t(xt[:, 1:], ref_t)  # (3, N, b)
        g_bf = xs.new_empty((bsz, 2 * n_h, n + 1))
        lat, head = g_bf[:, :n_h].transpose(0, 1), g_bf[:, n_h:].transpose(0, 1)  # (N, b, n + 1)
        torch.mul(gam[Y], c, out=lat)
        lat.addcmul_(gam[X], s, value=-1.0)
        lat[..., n].addcmul_(err[0], sw_lat[..., 0])
        torch.mul(gam[YAW], sw_head, out=head)
        head[..., n].addcmul_(err[1], sw_head[..., 0])
        hg = g_bf.mT @ g_bf  # (b, n + 1, n + 1): [[GᵀG, Gᵀr], ...]
        # the speed rows: constant G, per-vehicle residuals
        r_speed = self._sw_speed * (aff[V - r] + err[2])  # (N, b)
        z_flat = zb.reshape(bsz, n)
        # Gᵀr - GᵀG z in one product: [-z, 1] with the symmetric [[GᵀG, Gᵀr], [rᵀG, rᵀr]]
        z_one = torch.cat([-z_flat, torch.ones_like(z_flat[:, :1])], 1).unsqueeze(1)
        q_steps = -self._w_inputs * uff.reshape(bsz, -1)
        q_steps[:, :NU] -= self._w_rate0 * u_prev
        q = torch.bmm(z_one, hg)[:, 0, :n] + (self._g_speed_t @ r_speed).T
        q += q_steps @ self._expand - z_flat @ self._h_speed
        h = hg[:, :n, :n] + (self._h_speed + self._h_inputs)
        res = solve_qp(h, q, lo, hi, rlo, rhi, NU, cfg.admm, y0=ys, z0=z_flat)
        # the states move along the linearisation: the same recursion on the step taken
        dz = (res.z - z_flat).T  # (n, b)
        d_rest = (self._c_lin @ dz).view(nl, n_h, bsz) + aff
        d_rest_prev = torch.nn.functional.pad(d_rest[:, :-1], (0, 0, 1, 0))
        dz_steps = dz.view(self.n_blocks, NU, bsz).index_select(0, self._kb).transpose(0, 1)
        d_pose = (
            (q_rest * d_rest_prev.unsqueeze(1)).sum(0)
            + (b_pose * dz_steps.unsqueeze(1)).sum(0)
            + defect[:r]
        )  # (3, N, b)
        d_yaw = self._tri @ d_pose[YAW]  # (N, b)
        d_pose[:YAW, 1:].addcmul_(a_yaw[:, 1:], d_yaw[None, :-1])
        d_xy = torch.matmul(self._tri, d_pose[:YAW])  # (2, N, b)
        xt_new = torch.empty_like(xt)
        xt_new[:, 0] = x0.T
        torch.add(xt[:YAW, 1:], d_xy, out=xt_new[:YAW, 1:])
        torch.add(xt[YAW, 1:], d_yaw, out=xt_new[YAW, 1:])
        torch.add(xt[r:, 1:], d_rest, out=xt_new[r:, 1:])
        xs_new = xt_new.permute(2, 1, 0)  # (b, N+1, nx), a view of the feature-first layout
        return xs_new, res.z.view(bsz, self.n_blocks, NU), res
