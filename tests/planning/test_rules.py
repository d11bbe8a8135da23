"""The rule planner's geometry helpers against numpy's reference implementations."""

from __future__ import annotations

import numpy as np

from planning.rules import gradient_rows, shift_left


def test_gradient_rows_is_numpys_gradient_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    for n in (2, 3, 61):
        a = np.cumsum(rng.normal(size=(n, 2)), axis=0)
        assert gradient_rows(a).tobytes() == np.gradient(a, axis=0).tobytes()


def test_shift_left_moves_a_straight_line_sideways() -> None:
    path = np.column_stack([np.arange(5.0), np.zeros(5)])  # along +x: left is +y
    shifted = shift_left(path, np.full(5, 1.5))
    assert np.array_equal(shifted, np.column_stack([np.arange(5.0), np.full(5, 1.5)]))
    assert shift_left(path, np.zeros(5)) is path
