"""Oriented boxes: corners and overlap by the separating axis theorem, batched over boxes."""

from __future__ import annotations

import math

import numpy as np

from sim.messages import FloatArray

_UNIT = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])  # (4, 2) corner signs


def box_corners(
    cx: FloatArray, cy: FloatArray, yaw: FloatArray, length: FloatArray, width: FloatArray
) -> FloatArray:
    """Corners ``(M, 4, 2)`` of boxes centred at (cx, cy) with heading ``yaw`` (all ``(M,)``)."""
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    lx = _UNIT[None, :, 0] * (np.asarray(length) / 2.0)[:, None]  # (M, 4)
    ly = _UNIT[None, :, 1] * (np.asarray(width) / 2.0)[:, None]
    return np.stack(
        [np.asarray(cx)[:, None] + c * lx - s * ly, np.asarray(cy)[:, None] + s * lx + c * ly], -1
    )


def _corners(
    cx: float, cy: float, yaw: float, length: float, width: float
) -> list[tuple[float, float]]:
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = length / 2.0, width / 2.0
    return [
        (cx + c * u * hl - s * v * hw, cy + s * u * hl + c * v * hw)
        for u, v in ((1, 1), (1, -1), (-1, -1), (-1, 1))
    ]


def _overlap_pair(a: FloatArray, b: list[float]) -> bool:
    """Separating axis test for two boxes ``(cx, cy, yaw, length, width)``, in plain floats."""
    ca = _corners(float(a[0]), float(a[1]), float(a[2]), float(a[3]), float(a[4]))
    cb = _corners(b[0], b[1], b[2], b[3], b[4])
    for yaw in (float(a[2]), b[2]):
        for ax, ay in ((math.cos(yaw), math.sin(yaw)), (-math.sin(yaw), math.cos(yaw))):
            pa = [x * ax + y * ay for x, y in ca]
            pb = [x * ax + y * ay for x, y in cb]
            if max(pa) < min(pb) or max(pb) < min(pa):
                return False
    return True


def overlaps(box: FloatArray, others: FloatArray) -> np.ndarray:
    """Whether one box overlaps each of ``others`` (separating axis theorem).

    :param box: ``(5,)`` cx, cy, yaw, length, width
    :param others: ``(M, 5)`` the same for M boxes
    :return: ``(M,)`` bool
    """
    m = len(others)
    if m == 0:
        return np.zeros(0, dtype=bool)
    if m <= 4:  # the usual case: numpy's per-call overhead exceeds the arithmetic
        return np.array([_overlap_pair(box, o) for o in others.tolist()], dtype=bool)
    ca, sa = np.cos(box[2]), np.sin(box[2])
    rot = np.array([[ca, -sa], [sa, ca]])
    a = box[:2] + (_UNIT * (box[3] / 2.0, box[4] / 2.0)) @ rot.T  # (4, 2)
    b = box_corners(others[:, 0], others[:, 1], others[:, 2], others[:, 3], others[:, 4])
    # Candidate separating axes: the two edge normals of each box, (M, 4 axes, 2).
    cb, sb = np.cos(others[:, 2]), np.sin(others[:, 2])
    axes = np.empty((m, 4, 2))
    axes[:, 0] = (ca, sa)
    axes[:, 1] = (-sa, ca)
    axes[:, 2, 0], axes[:, 2, 1] = cb, sb
    axes[:, 3, 0], axes[:, 3, 1] = -sb, cb
    pa = axes @ a.T  # (M, 4 axes, 4 corners)
    pb = axes @ b.transpose(0, 2, 1)
    separated = (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))  # (M, 4)
    return ~separated.any(-1)
