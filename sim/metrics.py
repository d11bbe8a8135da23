"""CARLA Leaderboard 2.0 scoring: route completion, infraction penalty, driving score.

Pure functions over numbers and :class:`~sim.messages.Event` lists; no I/O, no simulator. The
definitions are shared/METRICS.md, which follows the Leaderboard 2.0 code:

- ``leaderboard/utils/statistics_manager.py`` (carla-simulator/leaderboard, 2.0 line):
  ``PENALTY_VALUE_DICT`` (the coefficients below), ``PENALTY_PERC_DICT`` with
  ``set_score_penalty`` (outside route lanes ``[0, 'increases']``, minimum speed
  ``[0.7, 'decreases']``), ``compute_route_statistics`` (``DS = max(RC * IP, 0)``, the result
  strings) and ``compute_global_statistics`` (means over routes, infractions per km with the
  0.001 km floor, sample standard deviations);
- ``srunner/scenariomanager/scenarioatomics/atomic_criteria.py`` (scenario_runner):
  ``RouteCompletionTest`` (``PERCENTAGE_THRESHOLD = 99``, ``DISTANCE_THRESHOLD = 10.0`` m, then
  RC = 100) and ``MinimumSpeedRouteTest._set_traffic_event`` (the per-checkpoint percentage).

Units: RC and DS in percent (0-100), IP as a factor (0-1), lengths in metres unless a name says
km, speeds in m/s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sim.messages import Event

# Leaderboard 2.0 PENALTY_VALUE_DICT: IP is multiplied by the coefficient once per event.
PENALTY_COEFFICIENTS: dict[str, float] = {
    "collisions_pedestrian": 0.50,
    "collisions_vehicle": 0.60,
    "collisions_layout": 0.65,
    "red_light": 0.70,
    "stop_infraction": 0.80,
    "scenario_timeouts": 0.70,
}

# Leaderboard 2.0 PENALTY_PERC_DICT: [penalty_value, direction] of the percentage-based criteria.
OUTSIDE_LANES_PENALTY_VALUE = 0.0  # 'increases': IP *= 1 - (1 - 0.0) * pct / 100
MIN_SPEED_PENALTY_VALUE = 0.7  # 'decreases': IP *= 1 - (1 - 0.7) * (1 - pct / 100)

INFRACTION_TYPES: tuple[str, ...] = (
    "collisions_pedestrian",
    "collisions_vehicle",
    "collisions_layout",
    "red_light",
    "stop_infraction",
    "scenario_timeouts",
    "outside_route_lanes",
    "min_speed_infractions",
    "route_dev",
    "vehicle_blocked",
    "route_timeout",
)

# These end the episode and carry no coefficient (only RC suffers).
TERMINAL_TYPES: frozenset[str] = frozenset({"route_dev", "vehicle_blocked", "route_timeout"})

# RouteCompletionTest: complete when RC > 99 % and the ego is < 10 m from the goal.
COMPLETION_THRESHOLD_PCT = 99.0
GOAL_DISTANCE_THRESHOLD_M = 10.0

# Below this mean traffic speed there is no reference speed to compare the ego against.
MIN_REFERENCE_SPEED_MPS = 1e-6

# Global statistics: km driven is floored so that a route that never moved still divides.
MIN_KM_DRIVEN = 0.001

CONFIDENCE = 0.95

STATUS_COMPLETED = "Completed"
STATUS_FAILED = "Failed"
# compute_route_statistics: "Failed - " + failure_message, per terminal criterion.
TERMINAL_STATUS: dict[str, str] = {
    "route_dev": "Failed - Agent deviated from the route",
    "vehicle_blocked": "Failed - Agent got blocked",
    "route_timeout": "Failed - Agent timed out",
}


@dataclass(frozen=True)
class RouteScore:
    """The score of one route.

    :param route_completion: RC, percent of the route's length driven (0-100); 100 once
        :func:`route_completed`
    :param infraction_penalty: IP, a factor in (0, 1]
    :param driving_score: DS = max(RC * IP, 0), percent (0-100)
    :param route_length_m: length of the route (m)
    :param infraction_counts: events per key of :data:`INFRACTION_TYPES` (every key present);
        ``outside_route_lanes`` is 1 when any of the route was driven outside its lanes (the
        Leaderboard records one event per route) and ``min_speed_infractions`` counts the
        checkpoints below 100 %
    :param outside_route_lanes_pct: percent of the route driven outside the route's lanes
    :param min_speed_pcts: ego speed as a percent of the traffic's, one per checkpoint reached
    :param status: ``"Completed"``, or ``"Failed"`` / ``"Failed - <reason>"``
        (:data:`TERMINAL_STATUS`)
    """

    route_completion: float
    infraction_penalty: float
    driving_score: float
    route_length_m: float
    infraction_counts: dict[str, int]
    outside_route_lanes_pct: float
    min_speed_pcts: tuple[float, ...]
    status: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats, ints, strings, lists)."""
        return {
            "route_completion": float(self.route_completion),
            "infraction_penalty": float(self.infraction_penalty),
            "driving_score": float(self.driving_score),
            "route_length_m": float(self.route_length_m),
            "infraction_counts": {k: int(v) for k, v in self.infraction_counts.items()},
            "outside_route_lanes_pct": float(self.outside_route_lanes_pct),
            "min_speed_pcts": [float(p) for p in self.min_speed_pcts],
            "status": str(self.status),
        }


@dataclass(frozen=True)
class Summary:
    """Scores over many routes.

    Means are arithmetic over routes. Each ``*_ci95`` is the half-width of a two-sided 95 %
    Student-t interval of the mean, ``t(0.975, n-1) * s / sqrt(n)`` with ``s`` the sample
    standard deviation (n - 1 denominator) that the Leaderboard reports as ``scores_std_dev``;
    0 for a single route (where the Leaderboard reports ``'NaN'``).

    :param infractions_per_km: events of each :data:`INFRACTION_TYPES` key per km driven
    :param total_km_driven: sum over routes of route length (km) * RC / 100, not floored
    """

    n_routes: int
    driving_score: float
    driving_score_ci95: float
    route_completion: float
    route_completion_ci95: float
    infraction_penalty: float
    infraction_penalty_ci95: float
    infractions_per_km: dict[str, float]
    total_km_driven: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats, ints)."""
        return {
            "n_routes": int(self.n_routes),
            "driving_score": float(self.driving_score),
            "driving_score_ci95": float(self.driving_score_ci95),
            "route_completion": float(self.route_completion),
            "route_completion_ci95": float(self.route_completion_ci95),
            "infraction_penalty": float(self.infraction_penalty),
            "infraction_penalty_ci95": float(self.infraction_penalty_ci95),
            "infractions_per_km": {k: float(v) for k, v in self.infractions_per_km.items()},
            "total_km_driven": float(self.total_km_driven),
        }


# --------------------------------------------------------------------------------- per route
def infraction_penalty(
    counts: Mapping[str, int],
    outside_route_lanes_pct: float = 0.0,
    min_speed_pcts: Sequence[float] = (),
) -> float:
    """IP: 1.0 multiplied by each infraction's coefficient (statistics_manager.py).

    ``IP = prod(coef[k] ** counts[k]) * (1 - pct_out / 100) * prod(1 - 0.3 * (1 - pct / 100))``.

    :param counts: events per key of :data:`INFRACTION_TYPES`; keys without a coefficient
        (terminal types, and ``outside_route_lanes`` / ``min_speed_infractions``, whose penalty
        comes from the percentages) are accepted and ignored
    :param outside_route_lanes_pct: percent of the route driven outside its lanes (0-100)
    :param min_speed_pcts: per-checkpoint ego speed as a percent of the traffic's; values of
        100 or more cost nothing (the Leaderboard raises no event for them)
    :raises ValueError: on an unknown key, a negative count, or a percentage out of range
    """
    penalty = 1.0
    for key, n in counts.items():
        if key not in INFRACTION_TYPES:
            raise ValueError(
                f"unknown infraction type {key!r}; expected one of {', '.join(INFRACTION_TYPES)}"
            )
        if n < 0:
            raise ValueError(f"infraction count for {key!r} is {n}; counts must be >= 0")
        if key in PENALTY_COEFFICIENTS:
            penalty *= PENALTY_COEFFICIENTS[key] ** n
    if not 0.0 <= outside_route_lanes_pct <= 100.0:
        raise ValueError(
            f"outside_route_lanes_pct is {outside_route_lanes_pct}; it is a percentage in [0, 100]"
        )
    penalty *= 1.0 - (1.0 - OUTSIDE_LANES_PENALTY_VALUE) * outside_route_lanes_pct / 100.0
    for pct in min_speed_pcts:
        if not pct >= 0.0:  # also rejects NaN
            raise ValueError(f"min_speed_pcts holds {pct}; percentages must be >= 0")
        pct = min(pct, 100.0)
        penalty *= 1.0 - (1.0 - MIN_SPEED_PENALTY_VALUE) * (1.0 - pct / 100.0)
    return penalty


def driving_score(route_completion_pct: float, penalty: float) -> float:
    """DS = max(RC * IP, 0), in percent (compute_route_statistics)."""
    return max(route_completion_pct * penalty, 0.0)


def route_completed(route_completion_pct: float, distance_to_goal_m: float) -> bool:
    """RouteCompletionTest: more than 99 % driven and strictly within 10 m of the goal."""
    return (
        route_completion_pct > COMPLETION_THRESHOLD_PCT
        and distance_to_goal_m < GOAL_DISTANCE_THRESHOLD_M
    )


def min_speed_pct(ego_mean_speed_mps: float, traffic_mean_speed_mps: float) -> float:
    """One minimum-speed checkpoint: ego mean speed as a percent of the traffic's mean.

    As ``MinimumSpeedRouteTest._set_traffic_event``: ``round(ego / traffic * 100, 2)``, and 100
    when there is no reference (no traffic, or traffic standing still). The result is clipped to
    [0, 100]; the Leaderboard leaves values above 100 unclipped but raises no event for them, so
    the penalty is the same.

    :param ego_mean_speed_mps: mean ego speed over the checkpoint (m/s)
    :param traffic_mean_speed_mps: mean over the same ticks of the traffic's mean speed (m/s)
    """
    if not traffic_mean_speed_mps > MIN_REFERENCE_SPEED_MPS:
        return 100.0
    pct = round(ego_mean_speed_mps / traffic_mean_speed_mps * 100.0, 2)
    return min(max(pct, 0.0), 100.0)


def score_route(
    route_length_m: float,
    route_completion_pct: float,
    distance_to_goal_m: float,
    events: Sequence[Event],
    outside_route_lanes_pct: float = 0.0,
    min_speed_pcts: Sequence[float] = (),
) -> RouteScore:
    """Score one route from its progress and its events.

    Events are counted by :attr:`Event.type`; types outside :data:`INFRACTION_TYPES` (e.g.
    ``speeding``) are informational and ignored. ``outside_route_lanes`` and
    ``min_speed_infractions`` are taken from the percentage arguments, not from events. Once
    :func:`route_completed`, RC is 100 and the status ``"Completed"``, whatever else happened
    (as the Leaderboard, where ``target_reached`` wins over the failure message); otherwise the
    first terminal event names the failure.

    :param route_length_m: length of the route (m)
    :param route_completion_pct: percent of the route driven along it (0-100)
    :param distance_to_goal_m: distance from the ego to the route's last point (m)
    :param events: every event of the episode, in time order
    :param outside_route_lanes_pct: percent of the route driven outside its lanes (0-100)
    :param min_speed_pcts: per-checkpoint results of :func:`min_speed_pct`
    :raises ValueError: when a length or a percentage is out of range
    """
    if not route_length_m >= 0.0:
        raise ValueError(f"route_length_m is {route_length_m}; it must be >= 0")
    if not 0.0 <= route_completion_pct <= 100.0:
        raise ValueError(
            f"route_completion_pct is {route_completion_pct}; it is a percentage in [0, 100]"
        )
    counts = dict.fromkeys(INFRACTION_TYPES, 0)
    terminal: Event | None = None
    for e in events:
        if e.type in ("outside_route_lanes", "min_speed_infractions"):
            continue  # scored from the percentages
        if e.type in counts:
            counts[e.type] += 1
        if terminal is None and e.type in TERMINAL_TYPES:
            terminal = e
    counts["outside_route_lanes"] = int(outside_route_lanes_pct > 0.0)
    counts["min_speed_infractions"] = sum(1 for p in min_speed_pcts if p < 100.0)

    penalty = infraction_penalty(counts, outside_route_lanes_pct, min_speed_pcts)
    if route_completed(route_completion_pct, distance_to_goal_m):
        rc, status = 100.0, STATUS_COMPLETED
    else:
        rc = route_completion_pct
        status = TERMINAL_STATUS[terminal.type] if terminal is not None else STATUS_FAILED
    return RouteScore(
        route_completion=rc,
        infraction_penalty=penalty,
        driving_score=driving_score(rc, penalty),
        route_length_m=float(route_length_m),
        infraction_counts=counts,
        outside_route_lanes_pct=float(outside_route_lanes_pct),
        min_speed_pcts=tuple(float(p) for p in min_speed_pcts),
        status=status,
    )


# ------------------------------------------------------------------------------- many routes
def _student_t_two_sided_prob(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with an integer ``df >= 1`` (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    term, total = 1.0, 1.0
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        for k in range(1, (df - 3) // 2 + 1):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2.0 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    for k in range(1, (df - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def student_t_quantile(confidence: float, df: int) -> float:
    """Two-sided critical value: the ``t`` with ``P(|T| <= t) = confidence``, by bisection.

    ``student_t_quantile(0.95, df)`` is the usual ``t(0.975, df)``: 12.706 for df = 1, 2.228 for
    df = 10, tending to 1.960.
    """
    if df < 1:
        raise ValueError(f"df is {df}; Student's t needs df >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence is {confidence}; it must be in (0, 1)")
    lo, hi = 0.0, 2.0
    while _student_t_two_sided_prob(hi, df) < confidence:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _student_t_two_sided_prob(mid, df) < confidence:
            lo = mid
        else:
            hi = mid
    return hi


def _mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % Student-t interval (0 for one value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, 0.0
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, student_t_quantile(CONFIDENCE, n - 1) * std / math.sqrt(n)


def summarize(scores: Sequence[RouteScore]) -> Summary:
    """Global statistics over routes (compute_global_statistics).

    DS, RC and IP are arithmetic means over routes with the half-width of a 95 % Student-t
    interval (see :class:`Summary`). Infractions per km: for every key of
    :data:`INFRACTION_TYPES`, total events / max(sum(route length km * RC / 100), 0.001 km).

    :raises ValueError: when ``scores`` is empty
    """
    if not scores:
        raise ValueError("summarize needs at least one RouteScore")
    ds, ds_ci = _mean_ci([s.driving_score for s in scores])
    rc, rc_ci = _mean_ci([s.route_completion for s in scores])
    ip, ip_ci = _mean_ci([s.infraction_penalty for s in scores])
    km = math.fsum(s.route_length_m / 1000.0 * s.route_completion / 100.0 for s in scores)
    per_km = {
        k: sum(s.infraction_counts.get(k, 0) for s in scores) / max(km, MIN_KM_DRIVEN)
        for k in INFRACTION_TYPES
    }
    return Summary(
        n_routes=len(scores),
        driving_score=ds,
        driving_score_ci95=ds_ci,
        route_completion=rc,
        route_completion_ci95=rc_ci,
        infraction_penalty=ip,
        infraction_penalty_ci95=ip_ci,
        infractions_per_km=per_km,
        total_km_driven=km,
    )
