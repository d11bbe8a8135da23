"""Pinhole camera geometry: intrinsics, the camera's pose on the ego, projection, ground rays.

Frames (docs/camera.md):

- ego frame: origin at the rear axle on the ground, x forward, y left, z up;
- camera body frame: the same axes, moved to ``(x, y, z)`` and turned by yaw (about z, positive
  looks left), then pitch (about the new y, positive looks *down*: the right-hand rule of
  ISO 8855 / REP-103, the opposite of CARLA's sign), then roll (about the new x);
- optical frame (OpenCV): x right, y down, z forward along the optical axis; ``K`` maps it to
  pixels, with pixel centres at integer coordinates.

Pure functions of numbers and arrays; nothing here knows the world.
"""

from __future__ import annotations

import math

import numpy as np

from sim.messages import FloatArray

# columns: the optical frame's axes expressed in the body frame (x right = -y, y down = -z, z = x)
BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def intrinsics(width: int, height: int, fov_deg: float) -> FloatArray:
    """``K`` (3, 3) of a camera with square pixels and horizontal field of view ``fov_deg``.

    ``fx = fy = (width / 2) / tan(fov / 2)``; the principal point is ``(width / 2, height / 2)``
    (CARLA's convention).
    """
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def body_rotation(roll_deg: float, pitch_deg: float, yaw_deg: float) -> FloatArray:
    """Rotation (3, 3) from the camera body frame to the ego frame: ``Rz(yaw) Ry(pitch) Rx(roll)``.

    Positive pitch turns the forward axis down (right-hand rule about y).
    """
    r, p, y = (math.radians(a) for a in (roll_deg, pitch_deg, yaw_deg))
    cr, sr, cp, sp, cy, sy = (
        math.cos(r),
        math.sin(r),
        math.cos(p),
        math.sin(p),
        math.cos(y),
        math.sin(y),
    )
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return rz @ ry @ rx


def camera_pose(
    x: float, y: float, z: float, roll_deg: float, pitch_deg: float, yaw_deg: float
) -> FloatArray:
    """Transform (4, 4) from the optical frame to the ego frame."""
    T = np.eye(4)
    T[:3, :3] = body_rotation(roll_deg, pitch_deg, yaw_deg) @ BODY_FROM_OPTICAL
    T[:3, 3] = (x, y, z)
    return T


def project(
    K: FloatArray, pose: FloatArray, points_ego: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Pixels ``(N, 2)`` and optical-axis depths ``(N,)`` (m) of ego-frame points ``(N, 3)``.

    Points behind the camera (depth <= 0) get meaningless pixels; check the depth.
    """
    R, t = pose[:3, :3], pose[:3, 3]
    pc = (np.asarray(points_ego, dtype=np.float64) - t) @ R  # (N, 3) optical frame
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (pc[:, :2] / z[:, None]) * (K[0, 0], K[1, 1]) + (K[0, 2], K[1, 2])
    return uv, z


def pixel_rays(K: FloatArray, width: int, height: int) -> FloatArray:
    """Rays ``(H, W, 3)`` through every pixel centre in the optical frame, with z = 1."""
    u = (np.arange(width) - K[0, 2]) / K[0, 0]
    v = (np.arange(height) - K[1, 2]) / K[1, 1]
    rays = np.ones((height, width, 3))
    rays[..., 0] = u[None, :]
    rays[..., 1] = v[:, None]
    return rays


def ground_hits(
    K: FloatArray, pose: FloatArray, width: int, height: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Where each pixel's ray meets the ground plane z = 0 of the ego frame.

    :return: ``gx, gy`` (H, W) ego-frame ground point (m) and ``depth`` (H, W) its optical-axis
        depth (m); ``inf`` where the ray does not go down
    """
    rays = pixel_rays(K, width, height)  # depth 1 along the axis
    R, t = pose[:3, :3], pose[:3, 3]
    d = rays @ R.T  # (H, W, 3) ego-frame direction per unit of depth
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(d[..., 2] < 0.0, -t[2] / d[..., 2], np.inf)
        gx = t[0] + depth * d[..., 0]
        gy = t[1] + depth * d[..., 1]
    return gx, gy, depth


def lowest_ray_elevation_deg(
    width: int, height: int, fov_deg: float, roll_deg: float, pitch_deg: float
) -> float:
    """Elevation (deg, negative below the horizon) of the camera's most downward-looking ray.

    The extreme rays of a rectangle of pixels pass through its corners.
    """
    K = intrinsics(width, height, fov_deg)
    R = body_rotation(roll_deg, pitch_deg, 0.0) @ BODY_FROM_OPTICAL
    corners = np.array(
        [
            [(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0]
            for u in (0, width)
            for v in (0, height)
        ]
    )
    d = corners @ R.T
    elev = np.degrees(np.arctan2(d[:, 2], np.hypot(d[:, 0], d[:, 1])))
    return float(elev.min())
