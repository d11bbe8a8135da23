"""The batched ADMM QP solver against OSQP on random box- and rate-bounded QPs."""

import numpy as np
import pytest
import torch

from control.qp import ADMMSettings, solve_qp, spd_inverse

F64 = torch.float64


def test_spd_inverse() -> None:
    g = torch.randn(8, 30, 12, generator=torch.Generator().manual_seed(0), dtype=F64)
    h = g.mT @ g + 0.01 * torch.eye(12, dtype=F64)
    inv = spd_inverse(h.permute(1, 2, 0).contiguous()).permute(2, 0, 1)
    torch.testing.assert_close(
        inv @ h, torch.eye(12, dtype=F64).expand(8, 12, 12), atol=1e-9, rtol=0
    )


def test_matches_osqp_on_random_problems() -> None:
    osqp = pytest.importorskip("osqp")
    sp = pytest.importorskip("scipy.sparse")
    gen = torch.Generator().manual_seed(1)
    bsz, n, nu = 16, 20, 2
    g = torch.randn(bsz, 40, n, generator=gen, dtype=F64)
    h = g.mT @ g + 0.1 * torch.eye(n, dtype=F64)
    q = 5.0 * torch.randn(bsz, n, generator=gen, dtype=F64)
    lo, hi = -torch.ones(bsz, n, dtype=F64), torch.ones(bsz, n, dtype=F64)
    lo[:, 1::2], hi[:, 1::2] = -0.5, 0.5  # a second channel with its own range
    rhi = torch.full((bsz, n - nu), 0.3, dtype=F64)
    tight = ADMMSettings(eps_abs=1e-8, eps_rel=1e-8, max_iters=5000)
    y0 = torch.zeros(bsz, 2 * n - nu, dtype=F64)
    z, _, ok, _ = solve_qp(h, q, lo, hi, -rhi, rhi, nu, y0, tight)
    assert bool(ok.all())
    a = np.vstack([np.eye(n), np.eye(n)[nu:] - np.eye(n)[:-nu]])
    for b in range(bsz):
        solver = osqp.OSQP()
        solver.setup(
            P=sp.csc_matrix(np.triu(h[b].numpy())),
            q=q[b].numpy(),
            A=sp.csc_matrix(a),
            l=np.concatenate([lo[b].numpy(), -rhi[b].numpy()]),
            u=np.concatenate([hi[b].numpy(), rhi[b].numpy()]),
            verbose=False,
            eps_abs=1e-10,
            eps_rel=1e-10,
            max_iter=200000,
            polishing=True,
        )
        ref = solver.solve(raise_error=False).x
        np.testing.assert_allclose(z[b].numpy(), ref, atol=1e-5)
    # the bounds hold up to the tolerance, and a default-tolerance solve is close
    assert bool((z >= lo - 1e-6).all() and (z <= hi + 1e-6).all())
    assert bool((torch.diff(z.view(bsz, -1, nu), dim=1).abs() <= 0.3 + 1e-6).all())
    z_default, _, ok_default, _ = solve_qp(h, q, lo, hi, -rhi, rhi, nu, y0, ADMMSettings())
    assert bool(ok_default.all())
    torch.testing.assert_close(z_default, z, atol=5e-3, rtol=0)
