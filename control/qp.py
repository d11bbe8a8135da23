"""A batched ADMM solver for the MPC's input QP: box bounds and bounds on consecutive changes.

Each problem of the batch is::

    minimise   ½ zᵀ H z + qᵀ z            z = (u_0, ..., u_{M-1}) flattened, (n,) = (M·nu,)
    subject to lo ≤ z ≤ hi                 input bounds (the first input's rate folded in)
               rlo ≤ z_j - z_{j-1} ≤ rhi    rate bounds, j = 1..M-1, per channel

Each channel is scaled so that its diagonal of H averages one (the inputs have different
units); then the constraint matrix ``A = [I; D/√2]`` is the same for every problem.

1. *Unconstrained first*: each problem's unconstrained minimiser ``-H⁻¹q`` (Gaussian
   elimination vectorised over the batch) is tried: where it is inside the bounds it is the
   solution (the QP is convex), exactly, with zero duals. In a tracking MPC that is most
   vehicles most of the time.
2. *ADMM* for the others: OSQP's algorithm (Stellato et al. 2020, with σ = 0 since H is
   positive definite) without its sparse linear algebra: the problems are small (n ≈ 20-40) and
   many, so the x-update matrix ``H + ρAᵀA`` is inverted once per problem and an iteration is
   one batched row-vector product with it, two mat-muls with the constant ``A`` and four
   elementwise ops, on any device. The residuals are checked every few iterations without
   another product with H: the x-update's own equation gives ``H x + q``. Problems that have
   converged leave the batch once a quarter of it has, so the stragglers of a large batch cost
   little; ρ adapts per problem as in OSQP (re-inverting those problems, by LAPACK when they
   are few).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

_R2 = 1.0 / math.sqrt(2.0)
RHO_MIN, RHO_MAX = 1e-4, 1e4  # adaptive ρ stays in this range (scaled problem)
RHO_ADAPT_FACTOR = 4.0  # ρ is changed when the residuals ask for this factor or more
LAPACK_BATCH_MAX = 512  # up to this many matrices are inverted one by one by LAPACK


@dataclass(frozen=True)
class ADMMSettings:
    """OSQP's parameters; tolerances apply to the scaled problem (unit-curvature inputs)."""

    rho: float = 0.3  # initial constraint penalty (scaled problem)
    alpha: float = 1.6  # over-relaxation
    eps_abs: float = 1e-4
    eps_rel: float = 1e-4
    max_iters: int = 400
    check_every: int = 5  # residuals are checked (and the batch synchronised) this often
    # adapt ρ per problem as OSQP does (re-inverting those problems); False keeps ρ fixed, so
    # the x-update matrix is inverted once per QP
    adaptive_rho: bool = True
    # first try each problem's unconstrained minimiser (one batched solve with H): where it
    # is feasible it is the exact solution and ADMM runs only for the others
    unconstrained_first: bool = True


class QPResult(NamedTuple):
    """A batch's solutions and what warm-starts the next solve."""

    z: Tensor  # (B, n) primal solutions
    y: Tensor  # (B, 2n - nu) duals (of the unscaled constraints)
    converged: Tensor  # (B,) bool
    iters: int  # ADMM iterations run (the most any problem needed; 0 if none needed any)


def spd_inverse(m: Tensor) -> Tensor:
    """Inverses of symmetric positive definite matrices stored batch-last, ``(n, n, B)``.

    Gauss-Jordan sweeps without pivoting (stable for SPD matrices), each a rank-one update of
    the whole batch at once; far faster than a per-matrix LAPACK call for many small matrices.
    """
    return spd_inverse_(m.clone())


def spd_inverse_(m: Tensor) -> Tensor:
    """:func:`spd_inverse` in place (``m`` becomes its inverse)."""
    # views made once: rows (1, n, B), columns (n, 1, B), pivots (B,)
    rows, cols = m.unsqueeze(0).unbind(1), m.unsqueeze(1).unbind(2)
    pivots = m.diagonal(dim1=0, dim2=1).unbind(1)
    for p in range(m.shape[0]):
        piv = pivots[p].reciprocal()
        row = rows[p] * piv
        neg_col = cols[p].neg()
        neg_col[p] = 1.0  # so that the last line leaves piv on the diagonal
        m.addcmul_(neg_col, row)
        rows[p].copy_(row)
        torch.mul(neg_col, piv, out=cols[p])
    return m


def spd_solve_(m: Tensor) -> Tensor:
    """Solutions ``x (n, B)`` of ``H x = b`` for SPD ``H``, batch-last, from the augmented
    ``m = [H | b]`` ``(n, n + 1, B)``, which it overwrites.

    Gaussian elimination without pivoting, vectorised over the batch like :func:`spd_inverse`,
    then back substitution: a third of the inverse's memory traffic when only ``H⁻¹b`` is
    needed.
    """
    n = m.shape[0]
    for p in range(n):
        row = m[p, p + 1 :] * m[p, p].reciprocal()  # (n - p, B), the rhs column last
        if p + 1 < n:
            m[p + 1 :, p + 1 :].addcmul_(m[p + 1 :, p].unsqueeze(1), row.unsqueeze(0), value=-1.0)
        m[p, p + 1 :] = row
    x = m[:, n]
    for p in range(n - 1, 0, -1):
        x[:p].addcmul_(m[:p, p], x[p], value=-1.0)
    return x


def batch_last(m: Tensor) -> Tensor:
    """``(B, n, k) -> (n, k, B)``, contiguous (a 2-D transpose: torch copies those far faster
    than a 3-D permute)."""
    bsz, n, k = m.shape
    return m.reshape(bsz, n * k).T.contiguous().view(n, k, bsz)


def batch_first(m: Tensor) -> Tensor:
    """``(n, k, B) -> (B, n, k)``, contiguous."""
    n, k, bsz = m.shape
    return m.reshape(n * k, bsz).T.contiguous().view(bsz, n, k)


@functools.lru_cache(maxsize=16)
def constraint_matrix(n: int, nu: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``A = [I; D/√2]`` ``(2n - nu, n)``: the inputs, then their changes over √2."""
    eye = torch.eye(n, dtype=dtype, device=device)
    return torch.cat([eye, (eye[nu:] - eye[:-nu]) * _R2])


def solve_qp(
    h: Tensor,
    q: Tensor,
    lo: Tensor,
    hi: Tensor,
    rlo: Tensor,
    rhi: Tensor,
    nu: int,
    cfg: ADMMSettings,
    y0: Tensor | None = None,
    z0: Tensor | None = None,
) -> QPResult:
    """Solve a batch of box- and rate-bounded QPs.

    :param h: Hessians ``(B, n, n)``, positive definite
    :param q: linear terms ``(B, n)``
    :param lo: bounds on ``z`` ``(B, n)``, with ``hi``; ``lo <= hi``
    :param rlo: bounds on ``z[nu:] - z[:-nu]`` ``(B, n - nu)``, with ``rhi``; ``rlo <= 0 <= rhi``
    :param nu: number of input channels
    :param y0: dual warm start ``(B, 2n - nu)`` (the previous solve's duals), or zeros
    :param z0: primal warm start ``(B, n)`` (the previous solution), or the unconstrained
        minimiser
    """
    bsz, n = q.shape
    dt, dev = q.dtype, q.device
    alpha = cfg.alpha
    ata_idx, ata_val = _ata_entries(n, nu, dt, dev)
    # channel scaling: z = zs / s, with s (B, n) one value per channel
    diag = torch.diagonal(h, dim1=-2, dim2=-1).reshape(bsz, -1, nu)
    s = diag.mean(1).clamp_min(1e-12).sqrt().repeat(1, n // nu)  # (B, n)
    inv_s = 1.0 / s
    inv_s_t = inv_s.T.contiguous()  # (n, B)
    h_l = batch_last(h)  # (n, n, B), scaled in place: kept for re-factoring
    h_l.mul_(inv_s_t.unsqueeze(1)).mul_(inv_s_t.unsqueeze(0))
    q_s = q * inv_s
    q_norm = q_s.abs().amax(1)
    row_scale = torch.cat([s, s[:, nu:] * _R2], 1)  # (B, m), m = 2n - nu
    lo_s = torch.cat([lo, rlo], 1) * row_scale
    hi_s = torch.cat([hi, rhi], 1) * row_scale
    rho = torch.full((bsz,), cfg.rho, dtype=dt, device=dev)  # per problem, adapted below

    u = torch.zeros_like(lo_s) if y0 is None else y0 / (rho[:, None] * row_scale)  # y / ρ
    x_start = None if z0 is None else z0 * s
    # results are written here as problems converge and leave the working set
    out_x, out_u = torch.zeros_like(q_s), torch.zeros_like(u)
    out_rho = rho.clone()
    out_ok = torch.zeros(bsz, dtype=torch.bool, device=dev)
    cols = torch.arange(bsz, device=dev)
    if cfg.unconstrained_first:
        # where the unconstrained minimiser is feasible it is the solution (the QP is convex),
        # with zero duals: exact, and no ADMM iteration for those problems
        free, x_free = _unconstrained(h, h_l, q_s, inv_s, lo_s, hi_s, nu, cfg)
        out_x = torch.where(free.unsqueeze(1), x_free, out_x)
        out_ok = free.clone()
        if bool(free.all()):
            return QPResult(out_x / s, out_u, out_ok, 0)
        if bool(free.any()):
            cols = (~free).nonzero().squeeze(1)
            q_s, q_norm, lo_s, hi_s, rho, u = (
                v.index_select(0, cols) for v in (q_s, q_norm, lo_s, hi_s, rho, u)
            )
            x_start = None if x_start is None else x_start.index_select(0, cols)
    sub = h_l if len(cols) == bsz else h_l.index_select(2, cols)
    m_inv = _factor(sub, rho, ata_idx, ata_val)  # (b, n, n)
    a_mat = constraint_matrix(n, nu, dt, dev)  # (m, n)
    a_t = a_mat.T.contiguous()
    # inside the loop every vector is (b, 1, k): products with A are one mat-mul, with M⁻¹ one
    # batched row-vector product, and no op reshapes
    q_s, lo_s, hi_s, u = (v.unsqueeze(1) for v in (q_s, lo_s, hi_s, u))
    neg_c = -torch.bmm(q_s, m_inv)  # (b, 1, n): -M⁻¹q (M symmetric)
    x = neg_c if x_start is None else x_start.unsqueeze(1)
    z = torch.clamp(x @ a_t, lo_s, hi_s)
    finished = torch.zeros(len(cols), dtype=torch.bool, device=dev)  # over the working set
    rho_c = rho.view(-1, 1, 1)
    it = 0
    while it < cfg.max_iters:
        it += 1
        w = z - u
        x = torch.baddbmm(neg_c, (w @ a_mat).mul_(rho_c), m_inv)
        ax = x @ a_t
        t = torch.lerp(z, ax, alpha).add_(u)
        z = torch.clamp(t, lo_s, hi_s)
        u = t.sub_(z)
        if it % cfg.check_every and it < cfg.max_iters:
            continue
        # the x-update solved (H + ρAᵀA) x = -q + ρAᵀw, so H x + q = ρAᵀ(w - Ax); the norms
        # of each family in one reduction: [residual, the two scale terms] (3, b)
        hxq_aty = (torch.cat([w - ax, u], 1) @ a_mat).mul_(rho_c)  # (b, 2, n)
        hxq, aty = hxq_aty[:, :1], hxq_aty[:, 1:]
        prim = torch.cat([ax - z, ax, z], 1).abs_().amax(2)  # (b, 3)
        dual = torch.cat([hxq + aty, hxq - q_s, aty], 1).abs_().amax(2)
        r_prim, r_dual = prim[:, 0], dual[:, 0]
        scale_prim = prim[:, 1:].amax(1)
        scale_dual = torch.maximum(dual[:, 1:].amax(1), q_norm)
        done = (r_prim <= cfg.eps_abs + cfg.eps_rel * scale_prim) & (
            r_dual <= cfg.eps_abs + cfg.eps_rel * scale_dual
        )
        new = done & ~finished  # converged at this check: their answer is kept now
        if it == cfg.max_iters:
            last = ~finished
            out_x[cols[last]], out_u[cols[last]] = x[last, 0], u[last, 0]
            out_rho[cols[last]], out_ok[cols[last]] = rho[last], done[last]
            break
        if bool(new.any()):
            out_x[cols[new]], out_u[cols[new]] = x[new, 0], u[new, 0]
            out_rho[cols[new]], out_ok[cols[new]] = rho[new], True
            finished = finished | new
            if bool(finished.all()):
                break
            # the working set shrinks once a quarter of it is done (a gather of every
            # per-problem matrix costs a few iterations); until then the done ones idle along
            if int(finished.sum()) * 4 >= len(cols):
                keep = ~finished
                cols, finished = cols[keep], finished[keep]
                z, u, neg_c, q_s, q_norm, lo_s, hi_s, rho, m_inv = (
                    v[keep] for v in (z, u, neg_c, q_s, q_norm, lo_s, hi_s, rho, m_inv)
                )
                rho_c = rho.view(-1, 1, 1)
                r_prim, r_dual, scale_prim, scale_dual = (
                    v[keep] for v in (r_prim, r_dual, scale_prim, scale_dual)
                )
        if not cfg.adaptive_rho:
            continue
        # OSQP's adaptive ρ: balance the relative residuals, re-factoring only the problems
        # whose ρ is off by more than RHO_ADAPT_FACTOR
        ratio = (r_prim / scale_prim.clamp_min(1e-12)) / (
            r_dual / scale_dual.clamp_min(1e-12)
        ).clamp_min(1e-12)
        rho_new = (rho * ratio.sqrt()).clamp(RHO_MIN, RHO_MAX)
        adapt = (rho_new > RHO_ADAPT_FACTOR * rho) | (rho_new < rho / RHO_ADAPT_FACTOR)
        adapt &= ~finished
        if bool(adapt.any()):
            r_new = rho_new[adapt]  # (a,)
            m_new = _factor(h_l.index_select(2, cols[adapt]), r_new, ata_idx, ata_val)
            m_inv[adapt] = m_new
            neg_c[adapt] = -torch.bmm(q_s[adapt], m_new)
            u[adapt] = u[adapt] * (rho[adapt] / r_new).view(-1, 1, 1)
            rho[adapt] = r_new
            rho_c = rho.view(-1, 1, 1)
    return QPResult(out_x / s, out_u * (out_rho.unsqueeze(1) * row_scale), out_ok, it)


@functools.lru_cache(maxsize=16)
def _ata_entries(
    n: int, nu: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The nonzero entries of ``AᵀA = I + DᵀD/2`` (three diagonals): flat indices, values."""
    a = constraint_matrix(n, nu, dtype, device)
    ata = (a.T @ a).flatten()
    idx = ata.nonzero().squeeze(1)
    return idx, ata[idx]


def _factor(h_l: Tensor, rho: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    """``(H + ρAᵀA)⁻¹`` batch-first ``(b, n, n)`` of batch-last ``h_l (n, n, b)``, ``ρ (b,)``.

    Gauss-Jordan over the batch costs the same ~200 small ops for any batch; a few matrices
    (re-factoring after a ρ change) go to LAPACK's Cholesky one by one instead (falling back
    to Gauss-Jordan if one is not positive definite in float rounding).
    """
    mat = _plus_rho_ata(h_l, rho, idx, val)
    if mat.shape[-1] <= LAPACK_BATCH_MAX:
        mat = batch_first(mat)
        chol, info = torch.linalg.cholesky_ex(mat)
        if not bool(info.any()):
            return torch.cholesky_inverse(chol)
        return batch_first(spd_inverse_(batch_last(mat)))
    return batch_first(spd_inverse_(mat))


def _unconstrained(
    h: Tensor,
    h_l: Tensor,
    q_s: Tensor,
    inv_s: Tensor,
    lo_s: Tensor,
    hi_s: Tensor,
    nu: int,
    cfg: ADMMSettings,
) -> tuple[Tensor, Tensor]:
    """The scaled problems' unconstrained minimisers ``(B, n)``, and whether each is the
    solution ``(B,)``: inside the bounds, and meeting the dual tolerance (``Hx + q = 0`` up to
    rounding; a near-singular ``H`` fails it and goes to ADMM)."""
    x = spd_solve_(torch.cat([h_l, q_s.T.unsqueeze(1)], 1)).T.neg().contiguous()  # -H⁻¹q
    ax = x @ constraint_matrix(x.shape[1], nu, x.dtype, x.device).T
    feasible = ((ax >= lo_s) & (ax <= hi_s)).all(1)
    hx = torch.bmm((x * inv_s).unsqueeze(1), h).squeeze(1) * inv_s  # scaled H x
    r_dual = (hx + q_s).abs().amax(1)
    scale = torch.maximum(hx.abs().amax(1), q_s.abs().amax(1))
    return feasible & (r_dual <= cfg.eps_abs + cfg.eps_rel * scale), x


def _plus_rho_ata(h_l: Tensor, rho: Tensor, idx: Tensor, val: Tensor) -> Tensor:
    """``H + ρ AᵀA`` batch-last ``(n, n, b)``, a new tensor, for ``ρ (b,)``."""
    n, bsz = h_l.shape[0], h_l.shape[-1]
    mat = h_l.clone()
    mat.view(n * n, bsz).index_add_(0, idx, val.unsqueeze(1) * rho)
    return mat
