"""The batched ADMM QP solver against OSQP on random box- and rate-bounded QPs."""

from typing import Any

import numpy as np
import pytest
import torch

from control.qp import ADMMSettings, batch_first, batch_last, solve_qp, spd_inverse, spd_solve_

F64 = torch.float64


def test_spd_inverse() -> None:
    g = torch.randn(8, 30, 12, generator=torch.Generator().manual_seed(0), dtype=F64)
    h = g.mT @ g + 0.01 * torch.eye(12, dtype=F64)
    inv = batch_first(spd_inverse(batch_last(h)))
    torch.testing.assert_close(
        inv @ h, torch.eye(12, dtype=F64).expand(8, 12, 12), atol=1e-9, rtol=0
    )


def _problems(bsz: int, q_scale: float, seed: int) -> tuple[Any, ...]:
    """Random QPs: ``h (B, 20, 20)``, ``q``, box bounds (two channels, own ranges), rate bound."""
    gen = torch.Generator().manual_seed(seed)
    n = 20
    g = torch.randn(bsz, 40, n, generator=gen, dtype=F64)
    h = g.mT @ g + 0.1 * torch.eye(n, dtype=F64)
    q = q_scale * torch.randn(bsz, n, generator=gen, dtype=F64)
    lo, hi = -torch.ones(bsz, n, dtype=F64), torch.ones(bsz, n, dtype=F64)
    lo[:, 1::2], hi[:, 1::2] = -0.5, 0.5  # a second channel with its own range
    rhi = torch.full((bsz, n - 2), 0.3, dtype=F64)
    return h, q, lo, hi, -rhi, rhi


def _osqp(h: Any, q: Any, lo: Any, hi: Any, rlo: Any, rhi: Any) -> Any:
    """OSQP's solutions ``(B, n)``, one problem at a time, to a tight tolerance."""
    osqp = pytest.importorskip("osqp")
    sp = pytest.importorskip("scipy.sparse")
    n, nu = q.shape[1], 2
    a = np.vstack([np.eye(n), np.eye(n)[nu:] - np.eye(n)[:-nu]])
    out = []
    for b in range(q.shape[0]):
        solver = osqp.OSQP()
        solver.setup(
            P=sp.csc_matrix(np.triu(h[b].numpy())),
            q=q[b].numpy(),
            A=sp.csc_matrix(a),
            l=np.concatenate([lo[b].numpy(), rlo[b].numpy()]),
            u=np.concatenate([hi[b].numpy(), rhi[b].numpy()]),
            verbose=False,
            eps_abs=1e-10,
            eps_rel=1e-10,
            max_iter=200000,
            polishing=True,
        )
        out.append(solver.solve(raise_error=False).x)
    return np.stack(out)


@pytest.mark.parametrize("unconstrained_first", [True, False])
def test_matches_osqp_on_random_problems(unconstrained_first: bool) -> None:
    h, q, lo, hi, rlo, rhi = _problems(16, 5.0, seed=1)
    nu, bsz = 2, q.shape[0]
    tight = ADMMSettings(
        eps_abs=1e-8, eps_rel=1e-8, max_iters=5000, unconstrained_first=unconstrained_first
    )
    res = solve_qp(h, q, lo, hi, rlo, rhi, nu, tight)
    assert bool(res.converged.all())
    z = res.z
    np.testing.assert_allclose(z.numpy(), _osqp(h, q, lo, hi, rlo, rhi), atol=1e-5)
    # the bounds hold up to the tolerance, and a default-tolerance solve is close
    assert bool((z >= lo - 1e-6).all() and (z <= hi + 1e-6).all())
    assert bool((torch.diff(z.view(bsz, -1, nu), dim=1).abs() <= 0.3 + 1e-6).all())
    default = solve_qp(h, q, lo, hi, rlo, rhi, nu, ADMMSettings())
    assert bool(default.converged.all())
    torch.testing.assert_close(default.z, z, atol=5e-3, rtol=0)
    # warm-started from the solution (primal and dual), ADMM settles at its first check
    warm = solve_qp(h, q, lo, hi, rlo, rhi, nu, ADMMSettings(), y0=default.y, z0=default.z)
    assert bool(warm.converged.all()) and warm.iters <= ADMMSettings().check_every
    torch.testing.assert_close(warm.z, default.z, atol=5e-3, rtol=0)


def test_unconstrained_minimisers_inside_the_bounds_are_taken_exactly() -> None:
    # linear terms from small to large: some unconstrained minimisers are feasible, the others
    # are not
    h, q, lo, hi, rlo, rhi = _problems(32, 1.0, seed=2)
    q = q * torch.linspace(0.05, 3.0, len(q), dtype=F64).unsqueeze(1)
    n = q.shape[1]
    free = torch.linalg.solve(h, -q)  # (B, n)
    inside = (
        (free >= lo).all(1)
        & (free <= hi).all(1)
        & ((free[:, 2:] - free[:, :-2]).abs() <= rhi[:, 0:1]).all(1)
    )
    assert 0 < int(inside.sum()) < len(q)  # both kinds present
    res = solve_qp(h, q, lo, hi, rlo, rhi, 2, ADMMSettings())
    assert bool(res.converged.all())
    # taken as they are: exact (to the float64 inverse), zero duals
    torch.testing.assert_close(res.z[inside], free[inside], atol=1e-9, rtol=0)
    assert bool((res.y[inside] == 0).all())
    assert res.y.shape == (len(q), 2 * n - 2)
    # the others match ADMM alone and OSQP
    alone = solve_qp(h, q, lo, hi, rlo, rhi, 2, ADMMSettings(unconstrained_first=False))
    torch.testing.assert_close(res.z, alone.z, atol=5e-3, rtol=0)
    np.testing.assert_allclose(res.z.numpy(), _osqp(h, q, lo, hi, rlo, rhi), atol=5e-3)


def test_float32_batch_of_many_matches_float64() -> None:
    h, q, lo, hi, rlo, rhi = _problems(300, 2.0, seed=3)
    ref = solve_qp(h, q, lo, hi, rlo, rhi, 2, ADMMSettings())
    h32, q32, lo32, hi32, rlo32, rhi32 = (t.float() for t in (h, q, lo, hi, rlo, rhi))
    f32 = solve_qp(h32, q32, lo32, hi32, rlo32, rhi32, 2, ADMMSettings())
    assert bool(ref.converged.all()) and bool(f32.converged.all())
    torch.testing.assert_close(f32.z.double(), ref.z, atol=1e-2, rtol=0)


def test_spd_solve() -> None:
    g = torch.randn(8, 30, 12, generator=torch.Generator().manual_seed(4), dtype=F64)
    h = g.mT @ g + 0.01 * torch.eye(12, dtype=F64)
    b = torch.randn(8, 12, generator=torch.Generator().manual_seed(5), dtype=F64)
    x = spd_solve_(torch.cat([batch_last(h), b.T.unsqueeze(1)], 1))
    torch.testing.assert_close(x.T, torch.linalg.solve(h, b), atol=1e-9, rtol=0)
