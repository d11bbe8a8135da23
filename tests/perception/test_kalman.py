"""The tracker's Kalman filter by hand: prediction, correction, and a camera's noise ellipse."""

from __future__ import annotations

import numpy as np

from perception.kalman import monocular_noise, predict, update


def test_prediction_moves_at_constant_velocity_and_grows_the_covariance_by_hand() -> None:
    x, P = predict(np.array([1.0, 2.0, 3.0, -4.0]), np.eye(4), 0.5, 2.0)
    assert np.allclose(x, [2.5, 0.0, 3.0, -4.0])
    # F P Fᵀ with P = I: position 1 + dt², position-velocity dt; Q = σ² g gᵀ, g = (dt²/2, dt)
    q = 4.0 * np.array([[0.125**2, 0.125 * 0.5], [0.125 * 0.5, 0.25]])
    for i, j in ((0, 2), (1, 3)):
        block = P[np.ix_([i, j], [i, j])]
        assert np.allclose(block, np.array([[1.25, 0.5], [0.5, 1.0]]) + q)
    assert P[0, 1] == 0.0 and P[0, 3] == 0.0  # the axes stay apart


def test_a_measurement_as_sure_as_the_estimate_moves_it_halfway() -> None:
    x, P = update(np.zeros(4), np.eye(4), np.array([2.0, -2.0]), np.eye(2))
    assert np.allclose(x, [1.0, -1.0, 0.0, 0.0])  # no position-velocity covariance: v stays
    assert np.allclose(P, np.diag([0.5, 0.5, 1.0, 1.0]))


def test_the_noise_ellipse_is_long_along_the_line_of_sight() -> None:
    R = monocular_noise(np.zeros(2), np.array([0.0, 20.0]), 0.1, 0.01, 0.5)
    assert np.allclose(R, np.diag([0.5**2, 2.0**2]))  # across: 0.2 m under the 0.5 m floor
    R = monocular_noise(np.array([1.0, 1.0]), np.array([31.0, 41.0]), 0.1, 0.01, 0.1)
    u = np.array([0.6, 0.8])  # 50 m away along (3, 4)/5
    assert np.isclose(u @ R @ u, 5.0**2) and np.isclose(np.array([-0.8, 0.6]) @ R @ u, 0.0)
    assert np.isclose(np.array([-0.8, 0.6]) @ R @ np.array([-0.8, 0.6]), 0.5**2)
