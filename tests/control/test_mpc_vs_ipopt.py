"""Our MPC against the reference the field trusts: the same problem in CasADi + IPOPT.

Like micrograd against PyTorch: on random feasible instances our optimum must be IPOPT's (cost
within 1 %, first control within a small tolerance), and in closed loop on a sine path and a
circle our cross-track error must be within 10 % of IPOPT's NMPC.
"""

import math

import numpy as np
import pytest
import torch

from control.closed_loop import circle_path, plan_along, run_closed_loop, sine_path
from control.mpc import MPC, MPCSettings, rollout, trajectory_cost
from control.mpc_controller import MPCController, plan_reference
from control.references import IpoptMPC, ReferenceController
from sim.messages import FloatArray, VehicleState

pytest.importorskip("casadi")

CFG = MPCSettings()


def _instance(rng: np.random.Generator, path: FloatArray) -> tuple[FloatArray, ...]:
    """A vehicle near ``path`` (offset, heading error, speed, lagged actuators): x0, ref, u_prev."""
    j = int(rng.integers(100, len(path) - 400))
    d = path[j + 1] - path[j]
    yaw = math.atan2(d[1], d[0]) + rng.normal(0.0, 0.1)
    state = VehicleState(
        0.0,
        0,
        path[j, 0] + rng.normal(0.0, 0.5),
        path[j, 1] + rng.normal(0.0, 0.5),
        yaw,
        rng.uniform(3.0, 15.0),
        rng.uniform(-1.0, 1.0),
        rng.uniform(-0.1, 0.1),
    )
    ref = plan_reference(plan_along(path, state, rng.uniform(3.0, 15.0)), state, CFG)
    assert not isinstance(ref, str)
    x0 = np.array([0.0, 0.0, 0.0, state.speed, state.accel, state.steer])
    u_prev = np.array(
        [state.accel + rng.uniform(-0.1, 0.1), state.steer + rng.uniform(-0.02, 0.02)]
    )
    return x0, ref, u_prev


def test_optimum_matches_ipopt_on_random_instances() -> None:
    rng = np.random.default_rng(0)
    ipopt = IpoptMPC(CFG)
    paths = [sine_path(), circle_path()]
    instances = [_instance(rng, paths[i % 2]) for i in range(6)]
    # ours solves them all in one batch, cold
    x0, ref, u_prev = (torch.from_numpy(np.stack(a)) for a in zip(*instances, strict=True))
    mpc = MPC(CFG)
    u0, _, us, info = mpc.solve(x0, ref, u_prev)
    assert bool(info["converged"].all())
    d = mpc.dtype
    # the true (nonlinear) cost of our inputs, rolled out through the model
    xs = rollout(mpc.model, x0.to(d), us, CFG)
    ours = trajectory_cost(xs, us, ref.to(d), u_prev.to(d), CFG).double().numpy()
    for i, (x0_i, ref_i, u_prev_i) in enumerate(instances):
        ipopt.reset()
        u0_ipopt, _, _, ok = ipopt.solve(x0_i, ref_i, u_prev_i)
        assert ok
        assert ours[i] == pytest.approx(ipopt.last_cost, rel=0.01)
        assert abs(float(u0[i, 0]) - u0_ipopt[0]) < 0.02  # m/s²
        assert abs(float(u0[i, 1]) - u0_ipopt[1]) < 0.002  # rad


@pytest.mark.parametrize(
    ("name", "path", "x_init"),
    [
        ("sine", sine_path(length_m=200.0), (0.0, 1.0, 0.2, 10.0, 0.0, 0.0)),
        ("circle", circle_path(turns=0.5), (0.0, -1.0, 0.0, 10.0, 0.0, 0.0)),
    ],
)
def test_closed_loop_cross_track_matches_ipopt_nmpc(
    name: str, path: FloatArray, x_init: tuple[float, ...]
) -> None:
    steps = 80  # 4 s: the offset start and the settling, both solvers
    ours = run_closed_loop(MPCController(CFG), path, 10.0, x_init, steps)
    ipopt = run_closed_loop(ReferenceController(IpoptMPC(CFG)), path, 10.0, x_init, steps)
    assert not ours.reasons and not ipopt.reasons
    assert ours.cross_track_rms == pytest.approx(ipopt.cross_track_rms, rel=0.10), name
