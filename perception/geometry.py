"""From an image box to a position in the ego frame: the ground plane, depth, or known size.

A monocular camera gives a ray per pixel; three things can fix where along it an object is:

- the ground plane: a car or person stands on the road, so the bottom of its box is where the
  ray through it meets ``z = 0`` of the ego frame (exact on flat roads, worse with distance);
- a depth image, where the sensor gives one: the depth along the optical axis at a pixel;
- a known size: a sign face is 0.6 m wide, a light head 1 m tall, so ``depth = f · size / px``.

And the other way round, :func:`max_travel_in_view`: how far the camera can drive on before a
point (a light head) leaves the image.

Pixels follow the camera's convention (docs/camera.md): ``K`` has pixel centres at integer
``(u, v)`` and boxes use COCO's continuous edges, so a box edge ``x`` is the pixel coordinate
``x - 0.5``. ``pose`` maps the optical frame (x right, y down, z forward) to the ego frame.
"""

from __future__ import annotations

import numpy as np

from sim.messages import FloatArray
from sim.render.pinhole import project


def pixel_ray(K: FloatArray, pose: FloatArray, u: float, v: float) -> FloatArray:
    """Ego-frame direction ``(3,)`` of the ray through pixel ``(u, v)``, per metre of depth."""
    d_opt = np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
    return pose[:3, :3] @ d_opt


def ground_point(K: FloatArray, pose: FloatArray, u: float, v: float) -> FloatArray | None:
    """Ego-frame ``(x, y)`` where the ray through pixel ``(u, v)`` meets the ground, or None
    if the ray does not point down (the pixel is at or above the horizon)."""
    d = pixel_ray(K, pose, u, v)
    t = pose[:3, 3]
    if d[2] >= -1e-6:
        return None
    s = -t[2] / d[2]  # depth along the optical axis
    p = t + s * d
    return p[:2].copy()


def point_at_depth(
    K: FloatArray, pose: FloatArray, u: float, v: float, depth_m: float
) -> FloatArray:
    """Ego-frame point ``(3,)`` at optical-axis depth ``depth_m`` through pixel ``(u, v)``."""
    return pose[:3, 3] + depth_m * pixel_ray(K, pose, u, v)


def depth_from_size(focal_px: float, size_m: float, size_px: float) -> float:
    """Optical-axis depth (m) of an upright flat object of known size facing the camera."""
    return focal_px * size_m / max(size_px, 1e-3)


def box_depth(
    depth: np.ndarray, box: tuple[float, float, float, float], quantile: float
) -> float | None:
    """A quantile of a depth image over the inner half of a box (m), or None if empty.

    The inner half avoids the background that fills a box's corners; a low quantile picks the
    nearest surface (a car's back), the median a flat face (a sign).
    """
    h, w = depth.shape
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4, (y1 - y0) / 4
    c0, c1 = int(np.clip(np.floor(cx - hw), 0, w - 1)), int(np.clip(np.ceil(cx + hw), 1, w))
    r0, r1 = int(np.clip(np.floor(cy - hh), 0, h - 1)), int(np.clip(np.ceil(cy + hh), 1, h))
    patch = depth[r0:r1, c0:c1]
    patch = patch[np.isfinite(patch) & (patch < 500.0)]
    if patch.size == 0:
        return None
    return float(np.quantile(patch, quantile))


def max_travel_in_view(
    K: FloatArray,
    pose: FloatArray,
    size_px: tuple[int, int],
    points: FloatArray,
    margin_px: float,
    iterations: int = 40,
) -> float:
    """How far (m) the camera can move straight ahead (the ego's +x) while every ego-frame
    point of ``points`` ``(N, 3)`` stays at least ``margin_px`` inside the image.

    ``size_px`` is ``(width, height)``. 0 if a point is not that far inside now. A point off
    the optical axis drifts outwards as the camera nears it, so the points are in view up to
    one travel and out of it after; bisection finds that travel to 1 mm.
    """
    w, h = size_px
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)

    def inside(travel: float) -> bool:
        uv, depth = project(K, pose, pts - (travel, 0.0, 0.0))
        u, v = uv[:, 0], uv[:, 1]
        lo, hi_u, hi_v = margin_px - 0.5, w - 0.5 - margin_px, h - 0.5 - margin_px
        ok = (depth > 0.1) & (u >= lo) & (u <= hi_u) & (v >= lo) & (v <= hi_v)
        return bool(ok.all())

    if not inside(0.0):
        return 0.0
    lo, hi = 0.0, float(max(pts[:, 0].max() - pose[0, 3], 0.0))
    if inside(hi):
        return hi
    for _ in range(iterations):
        if hi - lo < 1e-3:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if inside(mid) else (lo, mid)
    return lo
