import math

import numpy as np

from sim.geometry import box_corners, overlaps


def test_corners_of_a_rotated_box() -> None:
    c = box_corners(
        np.array([1.0]), np.array([2.0]), np.array([math.pi / 2]), np.array([4.0]), np.array([2.0])
    )[0]
    # length along +y after a quarter turn
    assert np.allclose(sorted(c[:, 1]), [0, 0, 4, 4])
    assert np.allclose(sorted(c[:, 0]), [0, 0, 2, 2])


def test_overlap_cases() -> None:
    ego = np.array([0.0, 0.0, 0.0, 4.0, 2.0])
    others = np.array(
        [
            [3.9, 0.0, 0.0, 4.0, 2.0],  # bumpers overlap by 0.1 m
            [4.1, 0.0, 0.0, 4.0, 2.0],  # 0.1 m apart
            [0.0, 2.05, 0.0, 4.0, 2.0],  # side by side, 5 cm apart
            [3.0, 3.0, math.pi / 4, 4.0, 2.0],  # diagonal: bounding circles overlap, boxes do not
            [2.0, 1.0, math.pi / 4, 1.0, 1.0],  # a small box touching the front corner
        ]
    )
    assert overlaps(ego, others).tolist() == [True, False, False, False, True]


def test_batched_and_pairwise_paths_agree() -> None:
    rng = np.random.default_rng(0)
    ego = np.array([0.0, 0.0, 0.3, 4.8, 2.0])
    others = np.column_stack(
        [
            rng.uniform(-6, 6, (200, 2)),
            rng.uniform(-3, 3, 200),
            rng.uniform(0.4, 6, 200),
            rng.uniform(0.4, 2.5, 200),
        ]
    )
    batched = overlaps(ego, others)  # more than 4: the vectorised path
    pairwise = np.concatenate([overlaps(ego, others[i : i + 1]) for i in range(len(others))])
    assert np.array_equal(batched, pairwise)
    assert 20 < batched.sum() < 180  # both outcomes are exercised
