"""A batched ADMM solver for the MPC's input QP: box bounds and bounds on consecutive changes.

Each problem of the batch is::

    minimise   ½ zᵀ H z + qᵀ z            z = (u_0, ..., u_{M-1}) flattened, (n,) = (M·nu,)
    subject to lo ≤ z ≤ hi                 input bounds (the first input's rate folded in)
               rlo ≤ z_j - z_{j-1} ≤ rhi    rate bounds, j = 1..M-1, per channel

The algorithm is OSQP's ADMM (Stellato et al. 2020, with σ = 0 since H is positive definite)
without its sparse linear algebra: the problems are small (n ≈ 20-40) and many, so the x-update
matrix is inverted once per problem (a Gauss-Jordan sweep vectorised over the batch) and an
iteration is a handful of elementwise ops and one batched mat-vec, on any device. Each channel
is scaled so that its diagonal of H averages one (the inputs have different units); then the
constraint matrix ``A = [I; D/√2]`` is the same for every problem, and products with it are
shifts and differences, not mat-muls. Inside, the batch is the *last* dimension, so every op
runs over contiguous batch vectors. Problems that have converged leave the batch once a quarter
of it has, so the stragglers of a large batch cost little; ρ adapts per problem as in OSQP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

_R2 = 1.0 / math.sqrt(2.0)
RHO_MIN, RHO_MAX = 1e-4, 1e4  # adaptive ρ stays in this range (scaled problem)
RHO_ADAPT_FACTOR = 5.0  # ρ is changed when the residuals ask for this factor or more


@dataclass(frozen=True)
class ADMMSettings:
    """OSQP's parameters; tolerances apply to the scaled problem (unit-curvature inputs)."""

    rho: float = 0.3  # constraint penalty (scaled problem)
    alpha: float = 1.6  # over-relaxation
    eps_abs: float = 1e-4
    eps_rel: float = 1e-4
    max_iters: int = 400
    check_every: int = 5  # residuals are checked (and the batch synchronised) this often
    # adapt ρ per problem as OSQP does (re-inverting those problems); False keeps ρ fixed, so
    # the x-update matrix is inverted once per QP
    adaptive_rho: bool = True


def matvec(m: Tensor, v: Tensor) -> Tensor:
    """``(B, n, k) @ (B, k) -> (B, n)``."""
    return (m @ v.unsqueeze(-1)).squeeze(-1)


def spd_inverse(m: Tensor) -> Tensor:
    """Inverses of symmetric positive definite matrices stored batch-last, ``(n, n, B)``.

    Gauss-Jordan sweeps without pivoting (stable for SPD matrices), each a rank-one update of
    the whole batch at once; far faster than a per-matrix LAPACK call for many small matrices.
    """
    m = m.clone()
    for p in range(m.shape[0]):
        piv = 1.0 / m[p, p]  # (B,)
        row = m[p] * piv  # (n, B)
        col = m[:, p].clone()  # (n, B)
        m.sub_(col.unsqueeze(1) * row.unsqueeze(0))
        m[p] = row
        m[:, p] = -col * piv
        m[p, p] = piv
    return m


def _a(x: Tensor, nu: int) -> Tensor:
    """``A x`` for batch-last ``x (n, B)``: the inputs, then their changes over √2."""
    return torch.cat([x, (x[nu:] - x[:-nu]) * _R2])


def _at(w: Tensor, n: int, nu: int) -> Tensor:
    """``Aᵀ w`` for batch-last ``w (2n - nu, B)``."""
    out = w[:n].clone()
    d = w[n:] * _R2  # (n - nu, B)
    out[nu:] += d
    out[:-nu] -= d
    return out


def _bmv(m: Tensor, v: Tensor) -> Tensor:
    """Batch-last mat-vec: ``(n, k, B) · (k, B) -> (n, B)``."""
    return (m * v.unsqueeze(0)).sum(1)


def solve_qp(
    h: Tensor,
    q: Tensor,
    lo: Tensor,
    hi: Tensor,
    rlo: Tensor,
    rhi: Tensor,
    nu: int,
    y0: Tensor,
    cfg: ADMMSettings,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Solve a batch of box- and rate-bounded QPs.

    :param h: Hessians ``(B, n, n)``, positive definite
    :param q: linear terms ``(B, n)``
    :param lo: bounds on ``z`` ``(B, n)``, with ``hi``; ``lo <= hi``
    :param rlo: bounds on ``z[nu:] - z[:-nu]`` ``(B, n - nu)``, with ``rhi``; ``rlo <= 0 <= rhi``
    :param nu: number of input channels
    :param y0: dual warm start ``(B, 2n - nu)`` (the previous solve's duals)
    :return: solution ``z (B, n)``, duals ``(B, 2n - nu)``, converged ``(B,)``, iterations run
    """
    bsz, n = q.shape
    alpha = cfg.alpha
    # channel scaling: z = zs / s, with s (n, B) one value per channel
    diag = torch.diagonal(h, dim1=-2, dim2=-1).reshape(bsz, -1, nu)
    s = diag.mean(1).clamp_min(1e-12).sqrt().repeat(1, n // nu).T  # (n, B)
    h_s = h.permute(1, 2, 0) / (s.unsqueeze(1) * s.unsqueeze(0))  # (n, n, B)
    q_s = q.T / s
    row_scale = torch.cat([s, s[nu:] * _R2])  # (m, B), m = 2n - nu
    lo_s = torch.cat([lo.T, rlo.T]) * row_scale
    hi_s = torch.cat([hi.T, rhi.T]) * row_scale
    eye = torch.eye(n, dtype=h.dtype, device=h.device)
    ata = _at(_a(eye, nu), n, nu).unsqueeze(-1)  # AᵀA = I + DᵀD/2, (n, n, 1)
    rho = torch.full((1, bsz), cfg.rho, dtype=h.dtype, device=h.device)  # per problem
    m_inv = spd_inverse(h_s + rho * ata)  # (n, n, B)
    k_mat = rho * m_inv
    c = _bmv(m_inv, q_s)  # (n, B)
    u = y0.T / (rho * row_scale)  # scaled dual y / ρ
    z = _a(-c, nu).clamp(lo_s, hi_s)
    x = torch.zeros_like(q_s)

    # results are written here as problems converge and leave the working set
    out_x, out_u = torch.zeros_like(q_s), torch.zeros_like(u)
    out_rho = rho.clone()
    out_ok = torch.zeros(bsz, dtype=torch.bool, device=q.device)
    cols = torch.arange(bsz, device=q.device)
    finished = torch.zeros(bsz, dtype=torch.bool, device=q.device)  # over the working set
    it = 0
    while it < cfg.max_iters:
        it += 1
        x = _bmv(k_mat, _at(z - u, n, nu)) - c
        ax = _a(x, nu)
        t = torch.lerp(z, ax, alpha) + u
        z = torch.clamp(t, lo_s, hi_s)
        u = t - z
        if it % cfg.check_every and it < cfg.max_iters:
            continue
        aty = rho * _at(u, n, nu)
        hx = _bmv(h_s, x)
        r_prim = (ax - z).abs().amax(0)
        r_dual = (hx + q_s + aty).abs().amax(0)
        scale_prim = torch.maximum(ax.abs().amax(0), z.abs().amax(0))
        scale_dual = torch.maximum(hx.abs().amax(0), aty.abs().amax(0))
        scale_dual = torch.maximum(scale_dual, q_s.abs().amax(0))
        done = (r_prim <= cfg.eps_abs + cfg.eps_rel * scale_prim) & (
            r_dual <= cfg.eps_abs + cfg.eps_rel * scale_dual
        )
        new = done & ~finished  # converged at this check: their answer is kept now
        if it == cfg.max_iters:
            last = ~finished
            out_x[:, cols[last]], out_u[:, cols[last]] = x[:, last], u[:, last]
            out_rho[:, cols[last]], out_ok[cols[last]] = rho[:, last], done[last]
            break
        if bool(new.any()):
            out_x[:, cols[new]], out_u[:, cols[new]] = x[:, new], u[:, new]
            out_rho[:, cols[new]], out_ok[cols[new]] = rho[:, new], True
            finished = finished | new
            if bool(finished.all()):
                break
            # the working set shrinks once a quarter of it is done (a gather of every
            # per-problem matrix costs a few iterations); until then the done ones idle along
            if int(finished.sum()) * 4 >= len(cols):
                keep = ~finished
                cols, finished = cols[keep], finished[keep]
                z, u, c, q_s, lo_s, hi_s, rho = (
                    v[:, keep] for v in (z, u, c, q_s, lo_s, hi_s, rho)
                )
                k_mat, h_s, m_inv = k_mat[:, :, keep], h_s[:, :, keep], m_inv[:, :, keep]
                r_prim, r_dual, scale_prim, scale_dual = (
                    v[keep] for v in (r_prim, r_dual, scale_prim, scale_dual)
                )
        # OSQP's adaptive ρ: balance the relative residuals, re-factoring only the problems
        # whose ρ is off by more than RHO_ADAPT_FACTOR
        ratio = (r_prim / scale_prim.clamp_min(1e-12)) / (
            r_dual / scale_dual.clamp_min(1e-12)
        ).clamp_min(1e-12)
        rho_new = (rho[0] * ratio.sqrt()).clamp(RHO_MIN, RHO_MAX)
        adapt = (rho_new > RHO_ADAPT_FACTOR * rho[0]) | (rho_new < rho[0] / RHO_ADAPT_FACTOR)
        adapt &= ~finished
        if cfg.adaptive_rho and bool(adapt.any()):
            r_new = rho_new[adapt].unsqueeze(0)  # (1, a)
            m_new = spd_inverse(h_s[:, :, adapt] + r_new * ata)
            m_inv[:, :, adapt], k_mat[:, :, adapt] = m_new, r_new * m_new
            c[:, adapt] = _bmv(m_new, q_s[:, adapt])
            u[:, adapt] = u[:, adapt] * (rho[:, adapt] / r_new)
            rho[:, adapt] = r_new
    return (out_x / s).T, (out_u * (out_rho * row_scale)).T, out_ok, it
