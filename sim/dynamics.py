"""Pure dynamics: the ego's kinematic bicycle with actuator lag, and IDM for traffic.

Functions here take and return arrays; they hold no state and know nothing of the world, so they
can be checked against hand-computed answers (tests/sim/test_dynamics.py).
"""

from __future__ import annotations

import math

import numpy as np

from sim.messages import FloatArray, VehicleParams

# Ego state vector layout: rear-axle x, y (m), yaw (rad), speed (m/s), accel (m/s²), steer (rad).
X, Y, YAW, V, A, DELTA = range(6)


def bicycle_step(
    state: FloatArray, accel_cmd: float, steer_cmd: float, params: VehicleParams, dt: float
) -> FloatArray:
    """Advance the ego by ``dt`` seconds.

    The actuators are first-order lags (exact discretisation) with the steering rate and both
    ranges clipped; the kinematics (rear axle: x' = v cos ψ, y' = v sin ψ, ψ' = v tan δ / L,
    v' = a) are integrated with RK4 holding the new actuator values over the step. Speed never
    goes negative: braking to a stop holds the car at rest.

    :param state: ``(6,)`` x, y, yaw, v, accel, steer
    :param accel_cmd: requested acceleration (m/s²), clipped to the vehicle's limits
    :param steer_cmd: requested front-wheel angle (rad), clipped to the vehicle's limit
    :return: the next state ``(6,)``
    """
    p = params
    x, y, yaw, v, a0, d0 = (float(c) for c in state)
    a_cmd = min(max(accel_cmd, -p.max_decel_mps2), p.max_accel_mps2)
    d_cmd = min(max(steer_cmd, -p.max_steer_rad), p.max_steer_rad)
    a = a0 + (a_cmd - a0) * (1.0 - math.exp(-dt / p.accel_time_constant_s))
    d_target = d0 + (d_cmd - d0) * (1.0 - math.exp(-dt / p.steer_time_constant_s))
    max_dd = p.max_steer_rate_radps * dt
    delta = d0 + min(max(d_target - d0, -max_dd), max_dd)
    a_eff = 0.0 if v <= 0.0 and a < 0.0 else a  # a car at rest does not roll back when braking
    k = math.tan(delta) / p.wheelbase_m  # path curvature (1/m)
    # RK4 on (x, y, yaw) with v(t) = v + a t known in closed form over the step
    v1, v2, v4 = v, v + 0.5 * dt * a_eff, v + dt * a_eff
    y1 = yaw
    y2 = yaw + 0.5 * dt * v1 * k
    y3 = yaw + 0.5 * dt * v2 * k
    y4 = yaw + dt * v2 * k
    nx = x + dt / 6.0 * (
        v1 * math.cos(y1) + 2 * v2 * math.cos(y2) + 2 * v2 * math.cos(y3) + v4 * math.cos(y4)
    )
    ny = y + dt / 6.0 * (
        v1 * math.sin(y1) + 2 * v2 * math.sin(y2) + 2 * v2 * math.sin(y3) + v4 * math.sin(y4)
    )
    nyaw = yaw + dt / 6.0 * k * (v1 + 4 * v2 + v4)
    nv = v4
    if nv < 0.0:
        # Stopped within the step: the distance covered is v²/(2|a|), not what RK4 extrapolated.
        travel = 0.5 * v * (v / -a_eff)
        nx, ny, nyaw, nv = x + travel * math.cos(yaw), y + travel * math.sin(yaw), yaw, 0.0
    nyaw = math.remainder(nyaw, 2.0 * math.pi)
    nv = min(nv, p.max_speed_mps)
    return np.array([nx, ny, nyaw, nv, a, delta])


def idm_accel(
    v: FloatArray,
    v0: FloatArray,
    gap: FloatArray,
    dv: FloatArray,
    a_max: float = 1.5,
    b_comf: float = 2.0,
    s0: float = 2.0,
    time_headway: float = 1.5,
    delta: float = 4.0,
) -> FloatArray:
    """Intelligent Driver Model acceleration (Treiber, Hennecke & Helbing 2000), batched.

    :param v: own speed (m/s)
    :param v0: desired speed (m/s), > 0
    :param gap: bumper-to-bumper distance to the leader (m); ``inf`` for a free road
    :param dv: approach rate ``v - v_leader`` (m/s)
    :return: acceleration (m/s²), unclipped (may be strongly negative when too close)
    """
    v = np.asarray(v, dtype=np.float64)
    s_star = s0 + np.maximum(0.0, v * time_headway + v * dv / (2.0 * math.sqrt(a_max * b_comf)))
    free = 1.0 - (v / np.maximum(v0, 1e-3)) ** delta
    interaction = (s_star / np.maximum(gap, 0.1)) ** 2
    return a_max * (free - interaction)
