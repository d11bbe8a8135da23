"""Box to ego-frame position: hand-computed ground-plane and known-size cases."""

from __future__ import annotations

import numpy as np
import pytest

from perception.geometry import box_depth, depth_from_size, ground_point, point_at_depth
from sim.render.pinhole import camera_pose, intrinsics, project

K = intrinsics(320, 240, 90.0)  # f = 160 px, principal point (160, 120)
LEVEL = np.array([[0, 0, 1, 1.5], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1.0]])  # 1.5 m up


def test_ground_point_hand_computed() -> None:
    # A level camera 1.5 m up sees the ground 10 m ahead of it f · 1.5 / 10 = 24 px below the
    # principal point; the camera stands 1.5 m ahead of the rear axle, so x = 11.5 m.
    p = ground_point(K, LEVEL, 160.0, 144.0)
    assert p is not None
    np.testing.assert_allclose(p, [11.5, 0.0], atol=1e-9)
    # 32 px to the right of centre at the same row: y = -(32 / 160) · 10 m = -2 m
    p = ground_point(K, LEVEL, 192.0, 144.0)
    assert p is not None
    np.testing.assert_allclose(p, [11.5, -2.0], atol=1e-9)


def test_above_the_horizon_has_no_ground_point() -> None:
    assert ground_point(K, LEVEL, 160.0, 119.0) is None


def test_ground_point_inverts_the_cameras_projection() -> None:
    pose = camera_pose(1.5, 0.2, 1.6, 0.0, 6.0, 3.0)  # pitched down 6°, turned left 3°
    pts = np.array([[20.0, 3.0, 0.0], [8.0, -2.5, 0.0], [45.0, 0.5, 0.0]])
    uv, z = project(K, pose, pts)
    assert (z > 0).all()
    for (u, v), want in zip(uv, pts, strict=True):
        got = ground_point(K, pose, float(u), float(v))
        assert got is not None
        np.testing.assert_allclose(got, want[:2], atol=1e-6)


def test_known_size_and_depth() -> None:
    # a 0.6 m sign face 9.6 px wide under f = 160 px is 10 m away along the axis
    assert depth_from_size(160.0, 0.6, 9.6) == pytest.approx(10.0)
    q = point_at_depth(K, LEVEL, 160.0 + 16.0, 120.0, 10.0)
    np.testing.assert_allclose(q, [11.5, -1.0, 1.5], atol=1e-9)
    depth = np.full((240, 320), 1000.0, np.float32)
    depth[100:140, 150:170] = 12.0
    assert box_depth(depth, (150.0, 100.0, 170.0, 140.0), 0.5) == pytest.approx(12.0)
