"""The baseline controller: pure pursuit for steering, PID on speed with a feed-forward.

Pure pursuit (Coulter 1992) steers the rear axle onto the circle through a point ``lookahead``
metres ahead on the path: ``delta = atan(2 L sin(alpha) / l_d)``. The speed loop tracks the
plan's speed at a short preview distance, with the acceleration that reaches it there as
feed-forward and a PI correction on the error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from control.base import Controller, fallback
from sim.messages import Control, Plan, VehicleParams, VehicleState


@dataclass(frozen=True)
class PIDSettings:
    lookahead_gain_s: float = 0.6  # lookahead = gain × speed + min, clipped to [min, max]
    lookahead_min_m: float = 4.5
    lookahead_max_m: float = 20.0
    speed_preview_s: float = 0.5  # track the plan's speed this far ahead
    kp: float = 1.0  # 1/s
    ki: float = 0.1  # 1/s²
    integral_limit: float = 2.0  # m/s
    max_accel_mps2: float = 2.0  # comfort bounds within the vehicle's limits
    max_decel_mps2: float = 8.0
    ego: VehicleParams = field(default_factory=VehicleParams)


class PIDController(Controller):
    """Pure pursuit + PID behind the :class:`Controller` interface."""

    def __init__(self, settings: PIDSettings = PIDSettings()) -> None:
        self.cfg = settings
        self.reset()

    def reset(self) -> None:
        self._integral = 0.0
        self._last_t: float | None = None

    def update(self, plan: Plan, state: VehicleState) -> Control:
        cfg = self.cfg
        if not plan.valid:
            return fallback(state, "plan invalid")
        if len(plan.path) < 2 or not np.all(np.isfinite(plan.path)):
            return fallback(state, "plan path empty or not finite")
        if not all(math.isfinite(v) for v in (state.x, state.y, state.yaw, state.speed)):
            self.reset()
            return fallback(state, "state not finite")
        path = plan.path_in(state)  # (N, 2) in the current ego frame
        seg = np.hypot(*np.diff(path, axis=0).T)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        i0 = int(np.argmin(np.hypot(path[:, 0], path[:, 1])))
        # steering: pure pursuit
        ld = min(
            max(cfg.lookahead_gain_s * state.speed + cfg.lookahead_min_m, cfg.lookahead_min_m),
            cfg.lookahead_max_m,
        )
        target_s = s[i0] + ld
        if target_s <= s[-1]:
            tx = float(np.interp(target_s, s, path[:, 0]))
            ty = float(np.interp(target_s, s, path[:, 1]))
        else:  # extend the last segment
            d = path[-1] - path[-2]
            d = d / max(float(np.hypot(*d)), 1e-9)
            tx, ty = path[-1] + d * (target_s - s[-1])
        dist = max(math.hypot(tx, ty), 1e-3)
        alpha = math.atan2(ty, tx)
        steer = math.atan2(2.0 * cfg.ego.wheelbase_m * math.sin(alpha), dist)
        steer = min(max(steer, -cfg.ego.max_steer_rad), cfg.ego.max_steer_rad)
        # speed: feed-forward to the previewed speed + PI
        preview = max(state.speed * cfg.speed_preview_s, 1.0)
        v_now = float(np.interp(s[i0], s, plan.speed))
        v_ref = float(np.interp(s[i0] + preview, s, plan.speed))
        ff = (v_ref**2 - state.speed**2) / (2.0 * preview)
        err = v_now - state.speed
        dt = 0.0 if self._last_t is None else max(state.t - self._last_t, 0.0)
        self._last_t = state.t
        self._integral = min(
            max(self._integral + err * dt, -cfg.integral_limit), cfg.integral_limit
        )
        accel = ff + cfg.kp * err + cfg.ki * self._integral
        if v_ref <= 0.0 and v_now <= 0.0 and state.speed < 0.5:
            accel = min(accel, -1.0)  # hold the car at rest
            self._integral = 0.0
        accel = min(max(accel, -cfg.max_decel_mps2), cfg.max_accel_mps2)
        return Control(state.t, state.frame, accel, steer)
