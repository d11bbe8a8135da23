"""The rule planner's geometry helpers against numpy's reference implementations, and its
decisions at a yellow light."""

from __future__ import annotations

import numpy as np
import pytest

from planning.rules import RulePlanner, gradient_rows, shift_left
from sim.messages import DetectedLight, LightState, PerceptionOutput, VehicleState
from sim.route import straight_route_ahead


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


@pytest.mark.parametrize(
    ("line_m", "speed", "stops"),
    [
        (1.0, 1.0, True),  # inside the 1.5 m margin, creeping: 1 m/s stops in 0.17 m
        (3.5, 3.8, True),  # 3.8² = 14.4 ≤ 2 · 3 · 3.5 = 21: stoppable before the line itself
        (3.5, 5.0, False),  # 25 > 21: not stoppable at 3 m/s², so go
        (30.0, 13.0, True),
    ],
)
def test_a_yellow_is_stoppable_while_the_ego_can_stop_before_the_line(
    line_m: float, speed: float, stops: bool
) -> None:
    planner = RulePlanner()
    front = planner.cfg.ego.length_m - planner.cfg.ego.rear_overhang_m
    light = DetectedLight(3, LightState.YELLOW, front + line_m, 0.0)
    perception = PerceptionOutput(0.0, 0, (), (), (light,), 13.9)
    planner.update(perception, straight_route_ahead(), VehicleState(0.0, 0, 0.0, 0.0, 0.0, speed))
    assert planner.stops_at_line == stops


def test_a_stop_for_nothing_seen_is_no_stop_at_a_line() -> None:
    # what imitation reads (stops_at_line, speed_without_lines) follows every update, also the
    # ones where perception is invalid and the planner simply stops
    planner = RulePlanner()
    front = planner.cfg.ego.length_m - planner.cfg.ego.rear_overhang_m
    red = PerceptionOutput(
        0.0, 0, (), (), (DetectedLight(3, LightState.RED, front + 20.0, 0.0),), 13.9
    )
    ego = VehicleState(0.0, 0, 0.0, 0.0, 0.0, 10.0)
    planner.update(red, straight_route_ahead(), ego)
    assert planner.stops_at_line
    blind = PerceptionOutput(0.1, 1, (), (), (), None, valid=False)
    plan = planner.update(blind, straight_route_ahead(), ego)
    assert not planner.stops_at_line
    assert np.array_equal(planner.speed_without_lines, plan.speed) and np.all(plan.speed == 0.0)


def test_a_yellow_is_decided_once_when_first_seen() -> None:
    # first seen 30 m out at 13 m/s: 169 <= 2 * 3 * 30 = 180, stoppable, so it stops; 0.5 s
    # later, braking late at 12.5 m/s with 24 m left (156 > 144), it still stops, where a
    # fresh decision would go. A new planner seeing that second moment first goes.
    planner = RulePlanner()
    front = planner.cfg.ego.length_m - planner.cfg.ego.rear_overhang_m

    def seen(p: RulePlanner, t: float, line_m: float, speed: float) -> bool:
        light = DetectedLight(3, LightState.YELLOW, front + line_m, 0.0)
        perception = PerceptionOutput(t, 0, (), (), (light,), 13.9)
        ego = VehicleState(t, 0, 0.0, 0.0, 0.0, speed)
        p.update(perception, straight_route_ahead(), ego)
        return p.stops_at_line

    assert seen(planner, 0.0, 30.0, 13.0)
    assert seen(planner, 0.5, 24.0, 12.5)
    assert not seen(RulePlanner(), 0.5, 24.0, 12.5)
    # once the light is no longer yellow the decision is forgotten: the next yellow is new
    green = PerceptionOutput(1.0, 0, (), (), (DetectedLight(3, LightState.GREEN, 50.0, 0.0),), 13.9)
    planner.update(green, straight_route_ahead(), VehicleState(1.0, 0, 0.0, 0.0, 0.0, 12.5))
    assert not seen(planner, 1.5, 24.0, 12.5)
