"""Leaderboard 2.0 scoring against answers computed by hand (shared/METRICS.md)."""

import json
import math

import pytest

from sim.messages import Event
from sim.metrics import (
    INFRACTION_TYPES,
    PENALTY_COEFFICIENTS,
    TERMINAL_TYPES,
    RouteScore,
    driving_score,
    infraction_penalty,
    min_speed_pct,
    route_completed,
    score_route,
    student_t_quantile,
    summarize,
)


def _events(*types: str) -> list[Event]:
    return [Event(kind, t=float(i), frame=i) for i, kind in enumerate(types)]


# ------------------------------------------------------------------------------- constants
def test_coefficients_are_the_leaderboard_2_0_table() -> None:
    assert PENALTY_COEFFICIENTS == {
        "collisions_pedestrian": 0.50,
        "collisions_vehicle": 0.60,
        "collisions_layout": 0.65,
        "red_light": 0.70,
        "stop_infraction": 0.80,
        "scenario_timeouts": 0.70,
    }
    assert set(INFRACTION_TYPES) == set(PENALTY_COEFFICIENTS) | {
        "outside_route_lanes",
        "min_speed_infractions",
        "route_dev",
        "vehicle_blocked",
        "route_timeout",
    }
    assert len(INFRACTION_TYPES) == 11
    assert frozenset({"route_dev", "vehicle_blocked", "route_timeout"}) == TERMINAL_TYPES


@pytest.mark.parametrize(
    ("key", "once", "twice"),
    [
        ("collisions_pedestrian", 0.50, 0.25),
        ("collisions_vehicle", 0.60, 0.36),
        ("collisions_layout", 0.65, 0.4225),
        ("red_light", 0.70, 0.49),
        ("stop_infraction", 0.80, 0.64),
        ("scenario_timeouts", 0.70, 0.49),
        ("route_dev", 1.0, 1.0),
        ("vehicle_blocked", 1.0, 1.0),
        ("route_timeout", 1.0, 1.0),
        ("outside_route_lanes", 1.0, 1.0),  # scored from the percentage, not the count
        ("min_speed_infractions", 1.0, 1.0),
    ],
)
def test_each_infraction_multiplies_per_event(key: str, once: float, twice: float) -> None:
    assert infraction_penalty({key: 0}) == 1.0
    assert infraction_penalty({key: 1}) == pytest.approx(once, rel=1e-12)
    assert infraction_penalty({key: 2}) == pytest.approx(twice, rel=1e-12)


# --------------------------------------------------------------------- percentage penalties
@pytest.mark.parametrize(
    ("pcts", "expected"),
    [
        ([], 1.0),
        ([100.0], 1.0),
        ([50.0], 0.85),  # 1 - 0.3 * 0.5
        ([80.0], 0.94),  # 1 - 0.3 * 0.2
        ([0.0], 0.70),  # standing still the whole checkpoint
        ([50.0, 100.0], 0.85),
        ([75.0, 25.0], 0.925 * 0.775),
        ([120.0], 1.0),  # faster than traffic: no event in the Leaderboard
    ],
)
def test_min_speed_penalty(pcts: list[float], expected: float) -> None:
    assert infraction_penalty({}, min_speed_pcts=pcts) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("pct", "expected"), [(0.0, 1.0), (5.0, 0.95), (40.0, 0.6), (100, 0)])
def test_outside_lanes_penalty_is_proportional(pct: float, expected: float) -> None:
    assert infraction_penalty({}, outside_route_lanes_pct=pct) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ego", "traffic", "expected"),
    [
        (5.0, 10.0, 50.0),
        (0.0, 10.0, 0.0),
        (15.0, 10.0, 100.0),  # clipped
        (1.0, 3.0, 33.33),  # rounded to 2 decimals, as MinimumSpeedRouteTest
        (3.0, 0.0, 100.0),  # no reference speed
        (0.0, 1e-9, 100.0),
    ],
)
def test_min_speed_pct(ego: float, traffic: float, expected: float) -> None:
    assert min_speed_pct(ego, traffic) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------------ worked examples
def test_metrics_md_worked_example() -> None:
    # 1,000 m, completed, one vehicle collision, one red light, 5 % outside the route lanes
    events = _events("collisions_vehicle", "speeding", "red_light", "scenario_cleared")
    s = score_route(1000.0, 100.0, 2.0, events, outside_route_lanes_pct=5.0)
    assert s.infraction_penalty == pytest.approx(0.399, rel=1e-12)  # 0.60 * 0.70 * 0.95
    assert s.route_completion == 100.0
    assert s.driving_score == pytest.approx(39.9, rel=1e-12)
    assert s.status == "Completed"
    assert s.infraction_counts == {
        "collisions_pedestrian": 0,
        "collisions_vehicle": 1,
        "collisions_layout": 0,
        "red_light": 1,
        "stop_infraction": 0,
        "scenario_timeouts": 0,
        "outside_route_lanes": 1,
        "min_speed_infractions": 0,
        "route_dev": 0,
        "vehicle_blocked": 0,
        "route_timeout": 0,
    }


def test_second_worked_example_many_kinds() -> None:
    # 2,000 m route, 80 % driven before deviating: two pedestrians, one stop sign, one wall,
    # one scenario timeout, 10 % outside the route lanes, checkpoints at 50 % and 100 % speed.
    events = _events(
        "collisions_pedestrian",
        "stop_infraction",
        "speeding",
        "collisions_pedestrian",
        "collisions_layout",
        "scenario_timeouts",
        "route_dev",
    )
    s = score_route(2000.0, 80.0, 450.0, events, 10.0, [50.0, 100.0])
    # 0.5 * 0.5 * 0.8 * 0.65 * 0.7 * (1 - 0.10) * (1 - 0.3 * 0.5) * 1.0
    assert s.infraction_penalty == pytest.approx(0.069615, rel=1e-12)
    assert s.route_completion == 80.0
    assert s.driving_score == pytest.approx(5.5692, rel=1e-12)
    assert s.status == "Failed - Agent deviated from the route"
    counts = s.infraction_counts
    assert counts["collisions_pedestrian"] == 2
    assert counts["stop_infraction"] == 1
    assert counts["collisions_layout"] == 1
    assert counts["scenario_timeouts"] == 1
    assert counts["outside_route_lanes"] == 1
    assert counts["min_speed_infractions"] == 1
    assert counts["route_dev"] == 1
    assert counts["collisions_vehicle"] == counts["red_light"] == 0
    assert s.min_speed_pcts == (50.0, 100.0)
    assert s.outside_route_lanes_pct == 10.0


def test_driving_score_is_product_and_never_negative() -> None:
    assert driving_score(80.0, 0.5) == 40.0
    assert driving_score(0.0, 0.3) == 0.0
    assert driving_score(-10.0, 0.5) == 0.0
    s = score_route(500.0, 60.0, 200.0, _events(*["collisions_pedestrian"] * 60))
    assert s.infraction_penalty == pytest.approx(0.5**60)
    assert s.driving_score >= 0.0


# ------------------------------------------------------------------------ completion rule
@pytest.mark.parametrize(
    ("rc", "dist", "done"),
    [
        (99.0, 5.0, False),  # 99 % is not "more than 99 %"
        (99.5, 5.0, True),
        (99.5, 9.0, True),
        (99.5, 10.0, False),  # strictly within 10 m
        (99.5, 11.0, False),
        (100.0, 11.0, False),
        (100.0, 0.0, True),
    ],
)
def test_completion_boundaries(rc: float, dist: float, done: bool) -> None:
    assert route_completed(rc, dist) is done


def test_completed_route_reports_rc_100() -> None:
    s = score_route(1000.0, 99.5, 9.0, _events("red_light"))
    assert (s.route_completion, s.status) == (100.0, "Completed")
    assert s.driving_score == pytest.approx(70.0)
    far = score_route(1000.0, 99.5, 11.0, _events("red_light"))
    assert (far.route_completion, far.status) == (99.5, "Failed")
    assert far.driving_score == pytest.approx(99.5 * 0.7)


# ------------------------------------------------------------------------------- statuses
@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("route_dev", "Failed - Agent deviated from the route"),
        ("vehicle_blocked", "Failed - Agent got blocked"),
        ("route_timeout", "Failed - Agent timed out"),
    ],
)
def test_terminal_events_set_status_without_penalty(kind: str, status: str) -> None:
    s = score_route(1000.0, 40.0, 600.0, _events("speeding", kind))
    assert s.status == status
    assert s.infraction_counts[kind] == 1
    assert s.infraction_penalty == 1.0
    assert s.driving_score == pytest.approx(40.0)


def test_status_without_terminal_event_and_precedence() -> None:
    assert score_route(1000.0, 40.0, 600.0, []).status == "Failed"
    first = score_route(1000.0, 40.0, 600.0, _events("vehicle_blocked", "route_timeout"))
    assert first.status == "Failed - Agent got blocked"
    # reaching the goal wins over a failure, as in the Leaderboard
    assert score_route(1000.0, 100.0, 1.0, _events("route_timeout")).status == "Completed"


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="unknown infraction type 'collision_vehicle'"):
        infraction_penalty({"collision_vehicle": 1})
    with pytest.raises(ValueError, match="counts must be >= 0"):
        infraction_penalty({"red_light": -1})
    with pytest.raises(ValueError, match=r"percentage in \[0, 100\]"):
        infraction_penalty({}, outside_route_lanes_pct=150.0)
    with pytest.raises(ValueError, match="percentages must be >= 0"):
        infraction_penalty({}, min_speed_pcts=[-1.0])
    with pytest.raises(ValueError, match=r"route_completion_pct is 120.0"):
        score_route(1000.0, 120.0, 0.0, [])
    with pytest.raises(ValueError, match="at least one RouteScore"):
        summarize([])


# ----------------------------------------------------------------------------- many routes
def test_student_t_critical_values() -> None:
    # two-sided 95 % values from the standard table
    table = {1: 12.7062, 2: 4.3027, 4: 2.7764, 10: 2.2281, 30: 2.0423, 100: 1.9840}
    for df, t in table.items():
        assert student_t_quantile(0.95, df) == pytest.approx(t, abs=1e-4)


def test_summary_means_ci_and_per_km() -> None:
    a = score_route(1000.0, 100.0, 2.0, _events("collisions_vehicle", "red_light"), 5.0)
    b = score_route(2000.0, 50.0, 900.0, _events("route_dev"))
    s = summarize([a, b])
    assert s.n_routes == 2
    assert s.driving_score == pytest.approx((39.9 + 50.0) / 2)
    assert s.route_completion == pytest.approx(75.0)
    assert s.infraction_penalty == pytest.approx((0.399 + 1.0) / 2)
    # n = 2: s / sqrt(n) = |x1 - x2| / 2, times t(0.975, 1) = 12.7062047
    assert s.driving_score_ci95 == pytest.approx(12.7062047 * 5.05, rel=1e-7)
    assert s.route_completion_ci95 == pytest.approx(12.7062047 * 25.0, rel=1e-7)
    assert s.infraction_penalty_ci95 == pytest.approx(12.7062047 * 0.3005, rel=1e-7)
    # 1 km + 2 km * 50 % = 2 km driven
    assert s.total_km_driven == pytest.approx(2.0)
    assert set(s.infractions_per_km) == set(INFRACTION_TYPES)
    assert s.infractions_per_km["collisions_vehicle"] == pytest.approx(0.5)
    assert s.infractions_per_km["red_light"] == pytest.approx(0.5)
    assert s.infractions_per_km["outside_route_lanes"] == pytest.approx(0.5)
    assert s.infractions_per_km["route_dev"] == pytest.approx(0.5)
    assert s.infractions_per_km["collisions_pedestrian"] == 0.0


def _score(ds: float) -> RouteScore:
    return RouteScore(ds, 1.0, ds, 1000.0, dict.fromkeys(INFRACTION_TYPES, 0), 0.0, (), "Failed")


def test_summary_ci_three_routes() -> None:
    s = summarize([_score(30.0), _score(60.0), _score(90.0)])
    # mean 60, sample std 30, t(0.975, 2) = 4.3026527: 4.3026527 * 30 / sqrt(3) = 74.52413
    assert s.driving_score == pytest.approx(60.0)
    assert s.driving_score_ci95 == pytest.approx(74.52413, rel=1e-6)
    assert s.infraction_penalty_ci95 == 0.0


def test_summary_single_route_and_km_floor() -> None:
    still = score_route(500.0, 0.0, 500.0, _events("collisions_vehicle", "vehicle_blocked"))
    s = summarize([still])
    assert s.driving_score_ci95 == s.route_completion_ci95 == s.infraction_penalty_ci95 == 0.0
    assert s.total_km_driven == 0.0
    assert s.infractions_per_km["collisions_vehicle"] == pytest.approx(1000.0)  # 1 / 0.001 km
    assert s.infractions_per_km["vehicle_blocked"] == pytest.approx(1000.0)
    short = score_route(0.5, 100.0, 0.1, _events("red_light"))  # 0.0005 km < the floor
    assert summarize([short]).infractions_per_km["red_light"] == pytest.approx(1000.0)


def test_to_dict_is_json_ready() -> None:
    s = score_route(1000.0, 80.0, 300.0, _events("red_light"), 2.0, [40.0])
    d = s.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["min_speed_pcts"] == [40.0]
    assert d["infraction_counts"]["red_light"] == 1
    assert d["status"] == "Failed"
    summary = summarize([s, s]).to_dict()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["n_routes"] == 2
    assert math.isclose(summary["driving_score"], s.driving_score)
