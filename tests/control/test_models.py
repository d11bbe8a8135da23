"""Vehicle models: hand-computed motion, and every Jacobian against finite differences."""

import math
from collections.abc import Callable

import pytest
import torch

from control.models import KINEMATIC, LAGGED, Model, lagged_rk4_jacobians, rk4, rk4_jacobians
from sim.messages import VehicleParams

P = VehicleParams()
F64 = torch.float64


def _random_inputs(model: Model, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model.nx, generator=g, dtype=F64)
    x[:, 3] = 2.0 + 15.0 * torch.rand(n, generator=g, dtype=F64)  # speed 2..17 m/s
    x[:, 2] *= 2.0  # yaw anywhere
    if model.nx == 6:
        x[:, 5] = 0.4 * torch.rand(n, generator=g, dtype=F64) - 0.2  # wheel angle
    u = torch.stack(
        [4.0 * torch.rand(n, generator=g, dtype=F64) - 2.0, 0.8 * torch.rand(n, generator=g) - 0.4],
        -1,
    ).to(F64)
    return x, u


def _finite_difference(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    u: torch.Tensor,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of ``fn(x, u) -> (B, nx)``: ``(B, nx, nx)``, ``(B, nx, 2)``."""
    cols_x, cols_u = [], []
    for j in range(x.shape[1]):
        d = torch.zeros_like(x)
        d[:, j] = eps
        cols_x.append((fn(x + d, u) - fn(x - d, u)) / (2 * eps))
    for j in range(u.shape[1]):
        d = torch.zeros_like(u)
        d[:, j] = eps
        cols_u.append((fn(x, u + d) - fn(x, u - d)) / (2 * eps))
    return torch.stack(cols_x, -1), torch.stack(cols_u, -1)


@pytest.mark.parametrize("model", [KINEMATIC, LAGGED], ids=lambda m: m.name)
def test_continuous_jacobians_match_finite_differences(model: Model) -> None:
    x, u = _random_inputs(model, 64, seed=1)
    jx, ju = model.jac(x, u, P)
    fx, fu = _finite_difference(lambda a, b: model.f(a, b, P), x, u)
    torch.testing.assert_close(jx, fx, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ju, fu, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("model", [KINEMATIC, LAGGED], ids=lambda m: m.name)
def test_rk4_jacobians_match_finite_differences(model: Model) -> None:
    x, u = _random_inputs(model, 64, seed=2)
    dt = 0.1
    x_next, a, b = rk4_jacobians(model, x, u, P, dt)
    torch.testing.assert_close(x_next, rk4(model, x, u, P, dt), rtol=1e-12, atol=1e-12)
    fa, fb = _finite_difference(lambda s, v: rk4(model, s, v, P, dt), x, u)
    torch.testing.assert_close(a, fa, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(b, fb, rtol=1e-6, atol=1e-7)


def test_written_out_lagged_jacobians_equal_the_generic_ones() -> None:
    x, u = _random_inputs(LAGGED, 128, seed=3)
    for dt in (0.05, 0.1):
        fast = lagged_rk4_jacobians(x, u, P, dt)
        generic = rk4_jacobians(LAGGED, x, u, P, dt)
        for f, g in zip(fast, generic, strict=True):
            torch.testing.assert_close(f, g, rtol=1e-10, atol=1e-12)
    # and the model's own entry point uses them
    torch.testing.assert_close(LAGGED.step_jacobians(x, u, P, 0.1)[1], generic[1])


def test_straight_line_and_circle_by_hand() -> None:
    dt = 0.05
    # straight: 2 s at 10 m/s along yaw 0.3
    x = torch.tensor([[0.0, 0.0, 0.3, 10.0]], dtype=F64)
    for _ in range(40):
        x = rk4(KINEMATIC, x, torch.zeros(1, 2, dtype=F64), P, dt)
    assert x[0, 0].item() == pytest.approx(20 * math.cos(0.3), abs=1e-9)
    assert x[0, 1].item() == pytest.approx(20 * math.sin(0.3), abs=1e-9)
    # circle: steer atan(L/R) drives the rear axle on radius R, turning by v t / R
    radius, v = 20.0, 5.0
    u = torch.tensor([[0.0, math.atan(P.wheelbase_m / radius)]], dtype=F64)
    x = torch.tensor([[0.0, 0.0, 0.0, v]], dtype=F64)
    for _ in range(120):
        x = rk4(KINEMATIC, x, u, P, dt)
    turned = v * 120 * dt / radius
    assert x[0, 0].item() == pytest.approx(radius * math.sin(turned), abs=1e-6)
    assert x[0, 1].item() == pytest.approx(radius * (1 - math.cos(turned)), abs=1e-6)
    assert x[0, 2].item() == pytest.approx(turned, abs=1e-9)


def test_lag_reaches_63_percent_after_one_time_constant() -> None:
    x = torch.tensor([[0.0, 0.0, 0.0, 10.0, 0.0, 0.0]], dtype=F64)
    u = torch.tensor([[1.0, 0.1]], dtype=F64)
    dt = 0.01
    for _ in range(round(P.accel_time_constant_s / dt)):
        x = rk4(LAGGED, x, u, P, dt)
    assert x[0, 4].item() == pytest.approx(1.0 - math.exp(-1.0), abs=1e-6)
    assert x[0, 5].item() == pytest.approx(0.1 * (1.0 - math.exp(-2.0)), abs=1e-7)


@pytest.mark.parametrize("model", [KINEMATIC, LAGGED], ids=lambda m: m.name)
def test_pose_jacobians_are_rows_of_the_step_jacobians(model: Model) -> None:
    x, u = _random_inputs(model, 64, seed=4)
    x_next, rows = model.pose_jacobians(x.T.contiguous(), u.T.contiguous(), P, 0.1)
    generic = rk4_jacobians(model, x, u, P, 0.1)
    torch.testing.assert_close(x_next.T, generic[0], rtol=1e-10, atol=1e-12)
    expected = torch.cat([generic[1][:, :3, 2:], generic[2][:, :3]], -1)  # (M, 3, nx)
    torch.testing.assert_close(rows.permute(2, 1, 0), expected, rtol=1e-10, atol=1e-12)
    # and the structure the MPC relies on: the rest of the Jacobian is the constant part
    lin, lin_u = model.linear_part(P, 0.1)
    torch.testing.assert_close(generic[1][:, 3:, 3:], lin.expand(64, *lin.shape))
    torch.testing.assert_close(generic[2][:, 3:], lin_u.expand(64, *lin_u.shape))
    assert bool((generic[1][:, 3:, :3] == 0).all())


def test_a_model_without_the_structure_is_refused() -> None:
    def dragged(x: torch.Tensor, u: torch.Tensor, p: VehicleParams) -> torch.Tensor:
        f = KINEMATIC.f(x, u, p)
        return torch.cat([f[..., :3], f[..., 3:] - 0.01 * x[..., 3:] ** 2], -1)

    def dragged_jac(
        x: torch.Tensor, u: torch.Tensor, p: VehicleParams
    ) -> tuple[torch.Tensor, torch.Tensor]:
        jx, ju = KINEMATIC.jac(x, u, p)
        jx = jx.clone()
        jx[..., 3, 3] = -0.02 * x[..., 3]
        return jx, ju

    with pytest.raises(ValueError, match="linear with constant coefficients"):
        Model("dragged", 4, dragged, dragged_jac).linear_part(P, 0.1)
