"""Reference solvers for the MPC problem, on the CPU, one vehicle at a time.

These are what control engineers already trust, used by the tests (is our optimum theirs?) and
by the benchmark (how fast are we against them?). Both solve exactly the problem of
:mod:`control.mpc` (same RK4 model, cost, move blocking and bounds):

- :class:`IpoptMPC`: the nonlinear problem, multiple shooting, IPOPT through CasADi.
- :class:`OsqpMPC`: one real-time iteration: the problem linearised about the shifted previous
  solution, as OSQP's sparse QP (state deviations and inputs as variables).

``casadi`` and ``osqp`` are test/benchmark dependencies (requirements-dev.txt), imported when a
reference is built. Arrays here are numpy ``float64``; the warm starts move like ours.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from control.base import Controller, fallback
from control.models import MODELS
from control.mpc import NU, REF_CURV, REF_V, REF_X, REF_Y, REF_YAW, MPCSettings
from control.mpc_controller import plan_reference
from sim.messages import Control, Plan, VehicleState

Array = NDArray[np.float64]


class _Blocks:
    """Move blocking and bounds of ``cfg`` in numpy, shared by both references."""

    def __init__(self, cfg: MPCSettings) -> None:
        self.cfg = cfg
        self.kb = np.repeat(np.arange(len(cfg.input_blocks)), cfg.input_blocks)  # step -> block
        self.nb = len(cfg.input_blocks)
        self.box_lo = np.array([cfg.accel_min_mps2, -cfg.steer_max_rad])
        self.box_hi = np.array([cfg.accel_max_mps2, cfg.steer_max_rad])
        self.rate = np.array([cfg.jerk_max_mps3, cfg.steer_rate_max_radps])

    def feedforward(self, ref: Array) -> Array:
        """Feed-forward step inputs ``(N, 2)``, as :func:`control.mpc.feedforward`."""
        accel = np.diff(ref[:, REF_V]) / self.cfg.dt_s
        return np.stack([accel, np.arctan(self.cfg.vehicle.wheelbase_m * ref[:-1, REF_CURV])], -1)

    def bounds(self, u_prev: Array) -> tuple[Array, Array]:
        """Box bounds of the block inputs ``(nb, 2)``; the first within the rate of u_prev."""
        lo, hi = np.tile(self.box_lo, (self.nb, 1)), np.tile(self.box_hi, (self.nb, 1))
        r = self.rate * self.cfg.control_period_s
        lo[0] = np.clip(u_prev - r, self.box_lo, self.box_hi)
        hi[0] = np.clip(u_prev + r, self.box_lo, self.box_hi)
        return lo, hi

    def to_blocks(self, us: Array) -> Array:
        return np.stack([us[self.kb == j].mean(0) for j in range(self.nb)])

    def shifted(self, xs: Array, ub: Array) -> tuple[Array, Array]:
        """A solution moved one control period forward in time (holding its end)."""
        n_h = self.cfg.horizon
        steps = self.cfg.control_period_s / self.cfg.dt_s
        whole, frac = int(np.floor(steps)), steps - np.floor(steps)
        k = np.arange(n_h + 1) + whole
        xs = xs[np.minimum(k, n_h)] + frac * (xs[np.minimum(k + 1, n_h)] - xs[np.minimum(k, n_h)])
        us = ub[self.kb]
        i0, i1 = np.minimum(k[:-1], n_h - 1), np.minimum(k[1:], n_h - 1)
        return xs, self.to_blocks(us[i0] + frac * (us[i1] - us[i0]))


def _moved(xs: Array, pose: Array) -> Array:
    """States re-expressed in a frame whose pose in theirs is ``(3,)``."""
    xs = xs.copy()
    c, s = np.cos(pose[2]), np.sin(pose[2])
    dx, dy = xs[:, 0] - pose[0], xs[:, 1] - pose[1]
    xs[:, 0], xs[:, 1], xs[:, 2] = c * dx + s * dy, -s * dx + c * dy, xs[:, 2] - pose[2]
    return xs


class _WarmStarted:
    """The warm start both references keep: the previous solution's states ``(N+1, nx)`` and block
    inputs ``(M, 2)``, re-expressed when the frame moves and shifted by each solve."""

    _warm: tuple[Array, Array] | None = None

    def reset(self) -> None:
        self._warm = None

    def move_frame(self, pose: Array) -> None:
        """Re-express the warm start in a frame whose pose in the old one is ``(3,)``."""
        if self._warm is not None:
            self._warm = (_moved(self._warm[0], pose), self._warm[1])


class IpoptMPC(_WarmStarted):
    """The MPC problem as a CasADi NLP solved by IPOPT (exact Hessian, multiple shooting).

    :param settings: the settings our MPC uses
    :param tol: IPOPT's convergence tolerance
    """

    def __init__(self, settings: MPCSettings, tol: float = 1e-8) -> None:
        import casadi as ca

        cfg = self.cfg = settings
        self.blocks = blk = _Blocks(cfg)
        n_h, nx, nb = cfg.horizon, MODELS[cfg.model].nx, blk.nb
        self.nx, lagged, p, h = nx, cfg.model == "lagged", cfg.vehicle, cfg.dt_s

        def f(x: Any, u: Any) -> Any:
            accel, steer = (x[4], x[5]) if lagged else (u[0], u[1])
            d = [
                x[3] * ca.cos(x[2]),
                x[3] * ca.sin(x[2]),
                x[3] * ca.tan(steer) / p.wheelbase_m,
                accel,
            ]
            if lagged:
                d += [
                    (u[0] - x[4]) / p.accel_time_constant_s,
                    (u[1] - x[5]) / p.steer_time_constant_s,
                ]
            return ca.vertcat(*d)

        xs, us = ca.SX.sym("x", nx), ca.SX.sym("u", NU)
        k1 = f(xs, us)
        k2 = f(xs + h / 2 * k1, us)
        k3 = f(xs + h / 2 * k2, us)
        k4 = f(xs + h * k3, us)
        step = ca.Function("step", [xs, us], [xs + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)])

        xv, ub = ca.SX.sym("X", nx, n_h + 1), ca.SX.sym("U", NU, nb)
        x0, u_prev = ca.SX.sym("x0", nx), ca.SX.sym("u_prev", NU)
        ref, uff = ca.SX.sym("ref", 5, n_h + 1), ca.SX.sym("uff", NU, n_h)
        cost: Any = 0
        for k in range(1, n_h + 1):
            c, s = ca.cos(ref[REF_YAW, k]), ca.sin(ref[REF_YAW, k])
            lat = -s * (xv[0, k] - ref[REF_X, k]) + c * (xv[1, k] - ref[REF_Y, k])
            e_yaw, e_v = xv[2, k] - ref[REF_YAW, k], xv[3, k] - ref[REF_V, k]
            w = cfg.w_terminal if k == n_h else 1.0
            cost += w * (cfg.w_lateral * lat**2 + cfg.w_heading * e_yaw**2 + cfg.w_speed * e_v**2)
        for k in range(n_h):
            u, prev = ub[:, blk.kb[k]], (u_prev if k == 0 else ub[:, blk.kb[k - 1]])
            tau = cfg.control_period_s if k == 0 else cfg.dt_s
            du, rate = u - uff[:, k], (u - prev) / tau
            cost += cfg.w_accel * du[0] ** 2 + cfg.w_steer * du[1] ** 2
            cost += cfg.w_jerk * rate[0] ** 2 + cfg.w_steer_rate * rate[1] ** 2
        g = [xv[:, 0] - x0] + [xv[:, k + 1] - step(xv[:, k], ub[:, blk.kb[k]]) for k in range(n_h)]
        g += [ub[:, j] - ub[:, j - 1] for j in range(1, nb)]
        nlp: dict[str, Any] = {
            "x": ca.vertcat(ca.vec(xv), ca.vec(ub)),
            "f": cost,
            "g": ca.vertcat(*g),
            "p": ca.vertcat(x0, ca.vec(ref), ca.vec(uff), u_prev),
        }
        opts: dict[str, Any] = {
            "ipopt.print_level": 0,
            "print_time": False,
            "ipopt.sb": "yes",
            "ipopt.tol": tol,
        }
        self._solver = ca.nlpsol("mpc", "ipopt", nlp, opts)
        n_eq, rate_bound = nx * (n_h + 1), np.tile(blk.rate * cfg.dt_s, nb - 1)
        self._lbg = np.concatenate([np.zeros(n_eq), -rate_bound])
        self._ubg = np.concatenate([np.zeros(n_eq), rate_bound])
        self._warm: tuple[Array, Array] | None = None
        self.last_cost = float("nan")

    def solve(self, x0: Array, ref: Array, u_prev: Array) -> tuple[Array, Array, Array, bool]:
        """Solve one problem; returns ``u0 (2,)``, ``X (N+1, nx)``, ``U (N, 2)``, success.

        The optimal cost is left in ``last_cost``.
        """
        blk, n_h, nx = self.blocks, self.cfg.horizon, self.nx
        uff = blk.feedforward(ref)
        lo, hi = blk.bounds(u_prev)
        n_x = nx * (n_h + 1)
        lbx = np.concatenate([np.full(n_x, -np.inf), lo.ravel()])
        ubx = np.concatenate([np.full(n_x, np.inf), hi.ravel()])
        if self._warm is None:
            xw, uw = np.tile(x0, (n_h + 1, 1)), np.clip(blk.to_blocks(uff), lo, hi)
        else:
            xw, uw = blk.shifted(*self._warm)
        params = np.concatenate([x0, ref.ravel(), uff.ravel(), u_prev])
        sol = self._solver(
            x0=np.concatenate([xw.ravel(), uw.ravel()]),
            p=params,
            lbx=lbx,
            ubx=ubx,
            lbg=self._lbg,
            ubg=self._ubg,
        )
        w = np.asarray(sol["x"]).ravel()
        xs, ub = w[:n_x].reshape(n_h + 1, nx), np.clip(w[n_x:].reshape(-1, NU), lo, hi)
        self._warm = (xs, ub)
        self.last_cost = float(sol["f"])
        us = ub[blk.kb]
        return us[0].copy(), xs, us, bool(self._solver.stats()["success"])


class OsqpMPC(_WarmStarted):
    """One real-time iteration of the MPC problem, the QP solved by OSQP.

    Variables: state deviations ``δx_1..δx_N`` from the linearisation point and the block
    inputs; rows: the linearised RK4 dynamics (equalities), the input box, the rate bounds.
    The linearisation comes from :mod:`control.models`. ``last_solve_s`` (and
    ``last_solve_cpu_s``) is the time of OSQP's ``update`` + ``solve`` alone.
    """

    def __init__(self, settings: MPCSettings, eps: float = 1e-4) -> None:
        import osqp
        import scipy.sparse as sp

        cfg = self.cfg = settings
        self.blocks = blk = _Blocks(cfg)
        self.model = MODELS[cfg.model]
        n_h, nx, nb = cfg.horizon, self.model.nx, blk.nb
        self.nx, self.n_x, self.n_u = nx, nx * n_h, NU * nb
        n_x, n_u = self.n_x, self.n_u
        # the input part of the cost on the block inputs: expand (N·nu, n_u) maps them to steps
        expand = np.kron(np.eye(nb)[blk.kb], np.eye(NU))
        wu = np.tile([cfg.w_accel, cfg.w_steer], n_h)
        wr = np.tile([cfg.w_jerk, cfg.w_steer_rate], n_h)
        tau = np.full(n_h * NU, cfg.dt_s)
        tau[:NU] = cfg.control_period_s
        d_full = np.eye(n_h * NU) - np.eye(n_h * NU, k=-NU)
        p_u = np.triu(
            2 * expand.T @ (np.diag(wu) + d_full.T @ np.diag(wr / tau**2) @ d_full) @ expand
        )
        ur, uc = np.nonzero(p_u)
        self._p_u, self._expand, self._wu = p_u[ur, uc], expand, wu
        self._wr0 = wr[:NU] / cfg.control_period_s**2
        self._stage = np.where(np.arange(n_h) == n_h - 1, cfg.w_terminal, 1.0)
        o = np.arange(n_h) * nx
        p_entries = (
            [o, o, o + 1, o + 2, o + 3, n_x + ur],
            [o, o + 1, o + 1, o + 2, o + 3, n_x + uc],
        )
        # dynamics rows: δx_{k+1} - A_k δx_k - B_k u_{b(k)} = d_k - B_k ū_k
        rows_k = o[:, None] + np.arange(nx)  # (N, nx)
        a_rows = [rows_k, np.repeat(rows_k[1:], nx, axis=1), np.repeat(rows_k, NU, axis=1)]
        a_cols = [
            rows_k,
            np.tile(rows_k[:-1], (1, nx)),
            np.tile(n_x + blk.kb[:, None] * NU + np.arange(NU), (1, nx)),
        ]
        r_rate = n_x + n_u + np.arange(n_u - NU)
        a_rows += [n_x + np.arange(n_u), r_rate, r_rate]
        a_cols += [n_x + np.arange(n_u), n_x + NU + np.arange(n_u - NU), n_x + np.arange(n_u - NU)]
        self._p, self._p_perm = self._pattern(sp, *p_entries, n_x + n_u, n_x + n_u)
        self._a, self._a_perm = self._pattern(sp, a_rows, a_cols, n_x + 2 * n_u - NU, n_x + n_u)
        self._a_tail = np.concatenate([np.ones(n_u), np.ones(n_u - NU), -np.ones(n_u - NU)])
        self._rate = np.tile(blk.rate * cfg.dt_s, nb - 1)
        self._solver = osqp.OSQP()
        m, ones = self._a.shape[0], np.ones(n_h)
        self._p.data[:] = np.concatenate([ones, 0 * ones, ones, ones, ones, self._p_u])[
            self._p_perm
        ]
        self._solver.setup(
            P=self._p,
            q=np.zeros(n_x + n_u),
            A=self._a,
            l=-np.ones(m),
            u=np.ones(m),
            verbose=False,
            eps_abs=eps,
            eps_rel=eps,
            polishing=False,
            warm_starting=True,
        )
        self._warm: tuple[Array, Array] | None = None
        self.last_solve_s = 0.0  # OSQP's update + solve: wall time
        self.last_solve_cpu_s = 0.0  # and CPU time

    @staticmethod
    def _pattern(
        sp: Any, rows: list[Any], cols: list[Any], m: int, n: int
    ) -> tuple[Any, NDArray[np.int64]]:
        """A CSC matrix holding every listed entry, and the map from list order to CSC order."""
        r = np.concatenate([np.ravel(x) for x in rows])
        c = np.concatenate([np.ravel(x) for x in cols])
        mat = sp.csc_matrix((np.arange(1, len(r) + 1, dtype=np.float64), (r, c)), shape=(m, n))
        perm = mat.data.astype(np.int64) - 1
        mat.data[:] = 1.0
        return mat, perm

    def solve(self, x0: Array, ref: Array, u_prev: Array) -> tuple[Array, Array, Array, bool]:
        """One real-time iteration; returns ``u0 (2,)``, ``X (N+1, nx)``, ``U (N, 2)``, solved."""
        cfg, blk, n_h, nx, n_x = self.cfg, self.blocks, self.cfg.horizon, self.nx, self.n_x
        uff = blk.feedforward(ref)
        lo, hi = blk.bounds(u_prev)
        if self._warm is None:
            ub = np.clip(blk.to_blocks(uff), lo, hi)
            xs = np.tile(x0, (n_h + 1, 1))
        else:
            xs, ub = blk.shifted(*self._warm)
        xs[0] = x0
        us = ub[blk.kb]
        f64 = torch.float64
        fx, a, b = (
            v.numpy()
            for v in self.model.step_jacobians(
                torch.as_tensor(xs[:-1], dtype=f64),
                torch.as_tensor(us, dtype=f64),
                cfg.vehicle,
                cfg.dt_s,
            )
        )
        # cost: ½ wᵀPw + qᵀw of the errors at the nominal states and of the inputs
        c, s = np.cos(ref[1:, REF_YAW]), np.sin(ref[1:, REF_YAW])
        e_lat = -s * (xs[1:, 0] - ref[1:, REF_X]) + c * (xs[1:, 1] - ref[1:, REF_Y])
        e_yaw, e_v = xs[1:, 2] - ref[1:, REF_YAW], xs[1:, 3] - ref[1:, REF_V]
        w2 = 2 * self._stage
        wl, wh, wv = w2 * cfg.w_lateral, w2 * cfg.w_heading, w2 * cfg.w_speed
        p_vals = np.concatenate([wl * s * s, -wl * s * c, wl * c * c, wh, wv, self._p_u])
        q_steps = -2 * self._wu * uff.ravel()
        q_steps[:NU] -= 2 * self._wr0 * u_prev
        q = np.concatenate(
            [
                np.stack(
                    [
                        -s * wl * e_lat,
                        c * wl * e_lat,
                        wh * e_yaw,
                        wv * e_v,
                        *np.zeros((nx - 4, n_h)),
                    ],
                    -1,
                ).ravel(),
                q_steps @ self._expand,
            ]
        )
        a_vals = np.concatenate([np.ones(n_x), -a[1:].ravel(), -b.ravel(), self._a_tail])
        rhs = (fx - xs[1:] - np.einsum("kij,kj->ki", b, us)).ravel()
        lo_all = np.concatenate([rhs, lo.ravel(), -self._rate])
        hi_all = np.concatenate([rhs, hi.ravel(), self._rate])
        t0, c0 = time.perf_counter(), time.process_time()
        self._solver.update(
            Px=p_vals[self._p_perm], q=q, Ax=a_vals[self._a_perm], l=lo_all, u=hi_all
        )
        res = self._solver.solve(raise_error=False)
        self.last_solve_s = time.perf_counter() - t0
        self.last_solve_cpu_s = time.process_time() - c0
        solved = res.info.status_val in (1, 2)  # solved, solved inaccurate
        if not solved:
            self._warm = None
            return np.clip(u_prev, lo[0], hi[0]), xs, us, False
        ub = np.clip(res.x[n_x:].reshape(-1, NU), lo, hi)
        xs = xs.copy()
        xs[1:] += res.x[:n_x].reshape(n_h, nx)
        self._warm = (xs, ub)
        us = ub[blk.kb]
        return us[0].copy(), xs, us, True


class ReferenceController(Controller):
    """A reference solver behind the :class:`Controller` interface, on the same references and
    frames as :class:`control.mpc_controller.MPCController` (for closed-loop comparisons).

    :param solver: an :class:`IpoptMPC` or :class:`OsqpMPC`
    """

    def __init__(self, solver: IpoptMPC | OsqpMPC) -> None:
        self.solver = solver
        self.solve_times_s: list[float] = []  # OSQP: update + solve; IPOPT: the whole solve
        self._prev: tuple[VehicleState, Control] | None = None

    def reset(self) -> None:
        self.solver.reset()
        self._prev = None

    def update(self, plan: Plan, state: VehicleState) -> Control:
        cfg = self.solver.cfg
        ref = plan_reference(plan, state, cfg)
        if isinstance(ref, str):
            return fallback(state, ref, decel_mps2=-cfg.accel_min_mps2)
        u_prev = np.array([state.accel, state.steer])
        if self._prev is not None:
            p_state, p_control = self._prev
            u_prev = np.array([p_control.accel, p_control.steer])
            c, s = np.cos(p_state.yaw), np.sin(p_state.yaw)
            dx, dy = state.x - p_state.x, state.y - p_state.y
            self.solver.move_frame(
                np.array([c * dx + s * dy, -s * dx + c * dy, state.yaw - p_state.yaw])
            )
        x0 = np.array([0.0, 0.0, 0.0, state.speed, state.accel, state.steer])[: self.solver.nx]
        t0 = time.perf_counter()
        u0, _, _, ok = self.solver.solve(x0, ref, u_prev)
        elapsed = time.perf_counter() - t0
        self.solve_times_s.append(
            self.solver.last_solve_s if isinstance(self.solver, OsqpMPC) else elapsed
        )
        control = Control(state.t, state.frame, float(u0[0]), float(u0[1]))
        if not ok:
            control = fallback(state, "reference solver failed", decel_mps2=-cfg.accel_min_mps2)
        self._prev = (state, control)
        return control
