"""The MPC as a controller stage: ``Plan`` + ``VehicleState`` -> ``Control``, one or many cars.

Each call re-expresses the plan in the current ego frame, turns it into a time-indexed reference
(progress along the path at the plan's speeds), solves, and returns the first input. The solver's
warm start is carried from the previous ego frame into the current one. Failures (an invalid
plan, a non-finite state, a reference that is too short, a solve that does not converge in its
budget) are logged at most once per ``log_interval_s`` per reason, reset that vehicle's warm
start, and return the safe fallback (brake, hold the steer, within the bounds and rate bounds)
with ``valid=False`` and the reason in ``Control.reason``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from control.base import Controller
from control.mpc import MPC, MPCSettings, Status
from sim.messages import Control, FloatArray, Plan, VehicleState

log = logging.getLogger(__name__)

REFERENCE_ACCEL_BASE_M = 1.0  # distance over which the plan's acceleration is measured

STATUS_REASONS = {
    Status.STATE_NOT_FINITE: "state not finite",
    Status.REFERENCE_NOT_FINITE: "reference not finite",
    Status.NOT_CONVERGED: "MPC did not converge within its budget",
}


def plan_reference(plan: Plan, state: VehicleState, cfg: MPCSettings) -> FloatArray | str:
    """The reference ``(N+1, 5)`` (x, y, yaw, v, curvature) in ``state``'s ego frame.

    The reference point starts at the ego's projection on the path and advances by
    ``dt · v_ref`` each step, its speeds read ``settings.speed_preview_s`` ahead (at least
    1 m); beyond the path's ends it continues straight at the last speed.

    :return: the reference, or why there is none (a string)
    """
    path_in = np.asarray(plan.path)
    if path_in.size == 0:
        return "reference empty"
    if path_in.ndim != 2 or path_in.shape[1] != 2 or np.shape(plan.speed) != (len(path_in),):
        return "reference malformed: path must be (N, 2) and speed (N,)"
    finite = (np.all(np.isfinite(v)) for v in (plan.path, plan.speed, plan.origin))
    if not all(finite):
        return "reference not finite"
    path = plan.path_in(state)  # (P, 2)
    seg = np.diff(path, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    keep = np.concatenate([[True], seg_len > 1e-6])
    path, speed = path[keep], np.maximum(np.asarray(plan.speed, dtype=np.float64)[keep], 0.0)
    if len(path) < 2:
        return "reference too short: it needs two distinct points or more"
    seg = np.diff(path, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    s = np.concatenate([[0.0], np.cumsum(seg_len)])  # (P,)
    heading = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))  # (P-1,) per segment
    vertex_heading = np.concatenate([heading[:1], (heading[:-1] + heading[1:]) / 2, heading[-1:]])
    curvature = np.gradient(vertex_heading, s) if len(s) > 2 else np.zeros(len(s))
    # the ego's (the origin's) projection; before the start or past the end it extrapolates
    t = -np.einsum("ij,ij->i", path[:-1], seg) / seg_len**2
    t[1:] = np.maximum(t[1:], 0.0)
    t[:-1] = np.minimum(t[:-1], 1.0)
    foot = path[:-1] + t[:, None] * seg
    i = int(np.argmin(np.hypot(foot[:, 0], foot[:, 1])))
    # The reference point is a car that keeps to the speed profile: each step it travels at
    # the constant acceleration that brings its speed to the profile's speed a short distance
    # ahead, a = (v_ahead² - v²) / 2ds (exact for the planner's piecewise v²-linear profiles),
    # so a profile that starts at rest and rises ahead gets it going (advancing by dt·v(s)
    # alone would stay at rest for ever), and one that falls to rest stops it there.
    # Its speeds are read a preview distance ahead (as the PID baseline does): the planner
    # re-anchors its profile at the ego's speed every cycle, and a reference read at the ego
    # would leave the car behind the profile by its actuator lag, cycle after cycle.
    progress, v_ref = np.empty(cfg.horizon + 1), np.empty(cfg.horizon + 1)
    progress[0] = s[i] + t[i] * seg_len[i]
    preview = max(state.speed * cfg.speed_preview_s, 1.0) if cfg.speed_preview_s > 0 else 0.0
    v_ref[0] = float(np.interp(progress[0] + preview, s, speed))
    dt, ds = cfg.dt_s, REFERENCE_ACCEL_BASE_M
    for k in range(cfg.horizon):
        v0 = v_ref[k]
        v1 = float(np.interp(max(progress[k], 0.0) + preview + ds, s, speed))
        accel = (v1 * v1 - v0 * v0) / (2.0 * ds)
        if v0 + accel * dt < 0.0:  # comes to rest within the step
            step, v_ref[k + 1] = v0 * v0 / (-2.0 * accel), 0.0
        else:
            step, v_ref[k + 1] = v0 * dt + 0.5 * accel * dt * dt, v0 + accel * dt
        progress[k + 1] = progress[k] + step
    inside = np.clip(progress, 0.0, s[-1])
    beyond = progress - inside  # < 0 before the start, > 0 past the end
    yaw = np.interp(progress, s, vertex_heading)
    ref = np.stack(
        [
            np.interp(inside, s, path[:, 0]) + beyond * np.cos(yaw),
            np.interp(inside, s, path[:, 1]) + beyond * np.sin(yaw),
            yaw,
            v_ref,
            np.where(beyond == 0.0, np.interp(progress, s, curvature), 0.0),
        ],
        -1,
    )
    return ref


class _RateLimitedLog:
    """Logs each reason at most once per interval, with a count of what it held back."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -math.inf) < self.interval_s:
            self._held[reason] = self._held.get(reason, 0) + 1
            return
        held = self._held.pop(reason, 0)
        self._last[reason] = now
        log.warning(
            "MPC fallback: %s%s", reason, f" ({held} more since last report)" if held else ""
        )


class MPCController(Controller):
    """The batched MPC behind the :class:`Controller` interface.

    The time between two calls is the control period of the rate bounds: it is measured from
    the states' ``t``, and when it differs from ``settings.control_period_s`` the solver is
    rebuilt for it (once, logged).

    :param settings: MPC settings (``MPCSettings.for_vehicle(params)`` for another car)
    :param device: torch device for the solver (``"cuda"`` when there is one); default cpu
    :param log_interval_s: a failure reason is logged at most this often
    """

    def __init__(
        self,
        settings: MPCSettings | None = None,
        device: str | torch.device | None = None,
        log_interval_s: float = 10.0,
    ) -> None:
        self.cfg = settings if settings is not None else MPCSettings()
        self.device = device
        self.mpc = MPC(self.cfg, device)
        self._log = _RateLimitedLog(log_interval_s)
        self._prev: list[_Previous | None] = []
        self.last_info: dict[str, object] = {}

    def reset(self) -> None:
        self.mpc.reset()
        self._prev = []

    def update(self, plan: Plan, state: VehicleState) -> Control:
        return self.update_batch([plan], [state])[0]

    def update_batch(self, plans: Sequence[Plan], states: Sequence[VehicleState]) -> list[Control]:
        """One control step for many vehicles at once (one batched solve).

        Call it with the same vehicles in the same order every step; a change of batch size
        resets the warm starts.
        """
        if len(plans) != len(states):
            raise ValueError(f"update_batch: {len(plans)} plans for {len(states)} states")
        bsz = len(states)
        if len(self._prev) != bsz:
            self.reset()
            self._prev = [None] * bsz
        self._match_period(states)
        cfg, nx = self.cfg, self.mpc.model.nx
        x0 = np.full((bsz, nx), np.nan)
        refs = np.zeros((bsz, cfg.horizon + 1, 5))
        u_prev = np.zeros((bsz, 2))
        pose = np.zeros((bsz, 3))
        reasons = [""] * bsz
        for i, (plan, state) in enumerate(zip(plans, states, strict=True)):
            prev = self._prev[i]
            if prev is not None:
                u_prev[i] = (prev.control.accel, prev.control.steer)
            if not state.valid:
                reasons[i] = "state invalid"
                continue
            values = (state.x, state.y, state.yaw, state.speed, state.accel, state.steer)
            if not all(math.isfinite(v) for v in values):
                reasons[i] = "state not finite"
                continue
            if not plan.valid:
                reasons[i] = "plan invalid"
                continue
            ref = plan_reference(plan, state, cfg)
            if isinstance(ref, str):
                reasons[i] = ref
                continue
            refs[i] = ref
            x0[i] = (0.0, 0.0, 0.0, state.speed, state.accel, state.steer)[:nx]
            if prev is None:
                u_prev[i] = (state.accel, state.steer)
            elif prev.pose is not None:
                px, py, pyaw = prev.pose
                c, s = math.cos(pyaw), math.sin(pyaw)
                dx, dy = state.x - px, state.y - py
                pose[i] = (c * dx + s * dy, -s * dx + c * dy, state.yaw - pyaw)
        self.mpc.move_frame(torch.from_numpy(pose))
        u0, _, _, info = self.mpc.solve(
            torch.from_numpy(x0), torch.from_numpy(refs), torch.from_numpy(u_prev)
        )
        self.last_info = info
        u0_np = u0.cpu().double().numpy()
        status = info["status"].cpu().numpy()
        controls = []
        for i, state in enumerate(states):
            prev = self._prev[i]
            reason = reasons[i] or STATUS_REASONS.get(Status(int(status[i])), "")
            if reason:
                self._log.warning(reason)
                control = self._fallback(state, None if prev is None else prev.control, reason)
            else:
                control = self._within_bounds(state, u0_np[i], u_prev[i])
            pose_ok = all(math.isfinite(v) for v in (state.x, state.y, state.yaw))
            self._prev[i] = _Previous(
                state.t, (state.x, state.y, state.yaw) if pose_ok else None, control
            )
            controls.append(control)
        return controls

    def _within_bounds(self, state: VehicleState, u: FloatArray, u_prev: FloatArray) -> Control:
        """The solver's first input, clipped in float64 to the bounds and rate bounds it was
        solved for, so that rounding in the solver's dtype cannot exceed them."""
        cfg = self.cfg
        rate = np.array([cfg.jerk_max_mps3, cfg.steer_rate_max_radps]) * cfg.control_period_s
        box_lo = np.array([cfg.accel_min_mps2, -cfg.steer_max_rad])
        box_hi = np.array([cfg.accel_max_mps2, cfg.steer_max_rad])
        lo = np.clip(u_prev - rate, box_lo, box_hi)
        hi = np.clip(u_prev + rate, box_lo, box_hi)
        accel, steer = np.clip(u, lo, hi)
        return Control(state.t, state.frame, float(accel), float(steer))

    def _fallback(self, state: VehicleState, prev: Control | None, reason: str) -> Control:
        """Brake towards ``accel_min`` and hold the steer, within every bound and rate bound.

        The braking ramps at the jerk limit from the previously applied input; the steer held
        is the previously applied one (the current wheel angle when there is none). A state
        whose speed is unknown brakes.
        """
        cfg = self.cfg
        stopped = math.isfinite(state.speed) and state.speed <= 0.0
        accel = 0.0 if stopped else cfg.accel_min_mps2
        steer = state.steer if math.isfinite(state.steer) else 0.0
        if prev is not None:
            da = cfg.jerk_max_mps3 * cfg.control_period_s
            accel = min(max(accel, prev.accel - da), prev.accel + da)
            steer = prev.steer
        accel = min(max(accel, cfg.accel_min_mps2), cfg.accel_max_mps2)
        steer = min(max(steer, -cfg.steer_max_rad), cfg.steer_max_rad)
        return Control(state.t, state.frame, accel, steer, valid=False, reason=reason)

    def _match_period(self, states: Sequence[VehicleState]) -> None:
        """Rebuild the solver when the time between calls is not its control period."""
        periods = [s.t - p.t for s, p in zip(states, self._prev, strict=True) if p is not None]
        if not periods or not all(math.isfinite(d) and d > 0.0 for d in periods):
            return
        period = float(np.median(periods))
        if abs(period - self.cfg.control_period_s) <= 1e-6 * self.cfg.control_period_s:
            return
        log.info(
            "MPC: calls are %.4f s apart, not %.4f s: rebuilding for that control period",
            period,
            self.cfg.control_period_s,
        )
        self.cfg = replace(self.cfg, control_period_s=period)
        self.mpc = MPC(self.cfg, self.device)


@dataclass(frozen=True)
class _Previous:
    """What the controller remembers of a vehicle's last call."""

    t: float
    pose: tuple[float, float, float] | None  # map-frame x, y, yaw; None if it was not finite
    control: Control
