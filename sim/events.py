"""Infraction and progress checks, run once per tick on the world's state (CARLA's criteria).

Each check mirrors the scenario_runner criterion the CARLA Leaderboard uses, so that a number
from the embedded world means what it means on CARLA (shared/METRICS.md):

- collisions with pedestrians, vehicles and the static layout, de-duplicated per actor within
  5 s or 5 m (CollisionTest);
- running a red light: the ego's front crosses the stop line of a head that is red for its lane
  (RunningRedLightTest);
- stop signs: the ego's front crosses a stop line without having stood (< 0.1 m/s) within 4 m
  before it (RunningStopTest);
- outside route lanes: route distance covered off the driving lanes or against their direction
  (OutsideRouteLanesTest);
- minimum speed: mean ego speed against the mean speed of all background traffic over each
  quarter of the route (MinimumSpeedRouteTest: every vehicle with role "background", no radius);
- route deviation (> 30 m), agent blocked (180 s under 0.1 m/s), route timeout: end the episode;
- speeding: reported with its duration and excess, not scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from sim.map import RoadMap
from sim.messages import ActorKind, Event, LightState
from sim.metrics import COMPLETION_THRESHOLD_PCT, min_speed_pct
from sim.route import Route


class LightStates(Protocol):
    """What the red-light check reads of the lights: :class:`~sim.lights.TrafficLights` in the
    embedded world, the server's light actors on CARLA (``sim.carla_backend.lights``)."""

    segment_to_entry: dict[int, int]  # approach segment -> entry of ``state``
    state: NDArray[np.int64]  # LightState per entry


@dataclass(frozen=True)
class EventSettings:
    collision_dedup_s: float = 5.0
    collision_dedup_m: float = 5.0
    route_deviation_m: float = 30.0
    blocked_speed_mps: float = 0.1
    blocked_time_s: float = 180.0
    stop_speed_mps: float = 0.1
    stop_distance_m: float = 4.0
    light_check_m: float = 15.0
    speeding_margin_mps: float = 0.5  # tolerance before speeding is reported
    goal_radius_m: float = 10.0
    checkpoints: int = 4


@dataclass
class _StopLine:
    x: float
    y: float
    yaw: float
    half_width: float
    control: str  # "light" or "stop"
    landmark: int
    light_entry: int  # index into TrafficLights, -1 for stop signs
    stopped: bool = False  # the ego has stood within stop_distance_m before it


class EventMonitor:
    """Accumulates events and progress over one episode."""

    def __init__(
        self,
        road_map: RoadMap,
        route: Route,
        lights: LightStates,
        timeout_s: float,
        settings: EventSettings = EventSettings(),
    ) -> None:
        self.cfg = settings
        self.map = road_map
        self.route = route
        self.lights = lights
        self.timeout_s = timeout_s
        self.lines: list[_StopLine] = []
        for ap in road_map.approaches.values():
            if ap.control not in ("light", "stop"):
                continue
            entry = lights.segment_to_entry.get(ap.segment, -1) if ap.control == "light" else -1
            self.lines.append(
                _StopLine(
                    ap.stop_x,
                    ap.stop_y,
                    ap.stop_yaw,
                    road_map.segments[ap.segment].width_m / 2.0,
                    ap.control,
                    ap.landmark,
                    entry,
                )
            )
        self.line_xy = np.array([(ln.x, ln.y) for ln in self.lines]).reshape(-1, 2)
        self.route_index = 0
        self.progress_m = 0.0
        self.outside_m = 0.0
        self.terminal: Event | None = None
        self.completed = False
        self.events: list[Event] = []
        self._last_collision: dict[int, tuple[float, float, float]] = {}
        self._blocked_since: float | None = None
        self._speeding: tuple[float, int, float] | None = None  # start t, frame, max excess
        self._cp_ego: list[float] = [0.0] * settings.checkpoints
        self._cp_traffic: list[float] = [0.0] * settings.checkpoints
        self._cp_n: list[int] = [0] * settings.checkpoints
        self.min_speed_pcts: list[float] = []
        self._next_cp = 0

    # ---------------------------------------------------------------------------------- tick
    def update(
        self,
        t: float,
        frame: int,
        front_prev: tuple[float, float],
        front: tuple[float, float],
        centre: tuple[float, float],
        yaw: float,
        speed: float,
        collided: NDArray[np.int64],
        collided_kind: NDArray[np.int64],
        traffic_speed: NDArray[np.float64],
    ) -> list[Event]:
        """Run every check for this tick; returns the events that happened now.

        :param front_prev: ego front-bumper centre last tick (map frame)
        :param collided: ids of actors/props whose box overlaps the ego's now
        :param collided_kind: their :class:`ActorKind`, or 0 for the static layout
        :param traffic_speed: speeds of the background traffic (not scripted actors)
        """
        new: list[Event] = []
        x, y = centre
        self._collisions(t, frame, x, y, collided, collided_kind, new)
        self._stop_lines(t, frame, front_prev, front, yaw, speed, new)
        idx, dist = self.route.project(x, y, self.route_index)
        if dist < self.cfg.route_deviation_m:
            gained = max(0.0, float(self.route.s[idx]) - self.progress_m)
            if dist < 10.0 and gained < 20.0:  # no progress credited for shortcuts
                if gained > 0 and self._outside(x, y, yaw, idx):
                    self.outside_m += gained
                self.progress_m = max(self.progress_m, float(self.route.s[idx]))
                self.route_index = idx
        self._speed_checks(t, frame, x, y, speed, idx, traffic_speed, new)
        goal = self.route.xy[-1]
        if (
            self.route_completion > COMPLETION_THRESHOLD_PCT
            and math.hypot(goal[0] - x, goal[1] - y) < self.cfg.goal_radius_m
        ):
            self.completed = True
        elif (
            dist > self.cfg.route_deviation_m
            and self.route.distance_to(x, y) > self.cfg.route_deviation_m
        ):
            self._end(
                Event(
                    "route_dev",
                    t,
                    frame,
                    x,
                    y,
                    detail=f"more than {self.cfg.route_deviation_m:g} m from the route",
                ),
                new,
            )
        elif self._blocked_since is not None and t - self._blocked_since >= self.cfg.blocked_time_s:
            self._end(
                Event(
                    "vehicle_blocked",
                    t,
                    frame,
                    x,
                    y,
                    detail=f"below {self.cfg.blocked_speed_mps} m/s for "
                    f"{self.cfg.blocked_time_s:g} s",
                ),
                new,
            )
        elif t >= self.timeout_s - 1e-9:
            self._end(
                Event(
                    "route_timeout",
                    t,
                    frame,
                    x,
                    y,
                    detail=f"route not completed in {self.timeout_s:g} s",
                ),
                new,
            )
        if self.done:
            self.finish(t, frame, x, y, new)
        self.events.extend(new)
        return new

    @property
    def done(self) -> bool:
        return self.completed or self.terminal is not None

    @property
    def route_completion(self) -> float:
        """Percent of the route's length driven along it."""
        return 100.0 * min(self.progress_m / max(self.route.length_m, 1e-9), 1.0)

    @property
    def outside_route_lanes_pct(self) -> float:
        return 100.0 * min(self.outside_m / max(self.route.length_m, 1e-9), 1.0)

    def finish(self, t: float, frame: int, x: float, y: float, out: list[Event]) -> None:
        """Close open intervals (speeding) and the remaining min-speed checkpoints."""
        if self._speeding is not None:
            self._close_speeding(t, frame, x, y, out)
        while self._next_cp < self.cfg.checkpoints and self.progress_m > 0:
            # checkpoints the ego reached count; the rest never happened
            reached = (
                self.progress_m
                >= (self._next_cp + 1) / self.cfg.checkpoints * self.route.length_m - 1e-6
                or self.completed
            )
            if not reached:
                break
            self._close_checkpoint()

    # -------------------------------------------------------------------------------- checks
    def _end(self, event: Event, out: list[Event]) -> None:
        if self.terminal is None:
            self.terminal = event
            out.append(event)

    def _collisions(
        self,
        t: float,
        frame: int,
        x: float,
        y: float,
        ids: NDArray[np.int64],
        kinds: NDArray[np.int64],
        out: list[Event],
    ) -> None:
        for oid, kind in zip(ids.tolist(), kinds.tolist(), strict=True):
            last = self._last_collision.get(oid)
            self._last_collision[oid] = (t, x, y)
            if last is not None and (
                t - last[0] < self.cfg.collision_dedup_s
                or math.hypot(x - last[1], y - last[2]) < self.cfg.collision_dedup_m
            ):
                continue
            kind_name = {
                int(ActorKind.PEDESTRIAN): "collisions_pedestrian",
                int(ActorKind.VEHICLE): "collisions_vehicle",
            }.get(kind, "collisions_layout")
            out.append(
                Event(
                    kind_name,
                    t,
                    frame,
                    x,
                    y,
                    other_id=oid,
                    detail=f"collision with {kind_name.split('_')[1]} {oid}",
                )
            )

    def _stop_lines(
        self,
        t: float,
        frame: int,
        p0: tuple[float, float],
        p1: tuple[float, float],
        yaw: float,
        speed: float,
        out: list[Event],
    ) -> None:
        if not self.lines:
            return
        d = np.hypot(self.line_xy[:, 0] - p1[0], self.line_xy[:, 1] - p1[1])
        for i in (d < self.cfg.light_check_m).nonzero()[0].tolist():
            ln = self.lines[i]
            c, s = math.cos(ln.yaw), math.sin(ln.yaw)
            along0 = (p0[0] - ln.x) * c + (p0[1] - ln.y) * s
            along1 = (p1[0] - ln.x) * c + (p1[1] - ln.y) * s
            lateral = -(p1[0] - ln.x) * s + (p1[1] - ln.y) * c
            aligned = abs(math.remainder(yaw - ln.yaw, 2 * math.pi)) < math.pi / 3
            in_lane = abs(lateral) <= ln.half_width + 0.5
            if (
                ln.control == "stop"
                and aligned
                and in_lane
                and speed < self.cfg.stop_speed_mps
                and -self.cfg.stop_distance_m <= along1 <= 0.5
            ):
                ln.stopped = True
            if not (along0 < 0.0 <= along1 and aligned and in_lane):
                continue
            if ln.control == "light":
                state = LightState(int(self.lights.state[ln.light_entry]))
                if state == LightState.RED:
                    out.append(
                        Event(
                            "red_light",
                            t,
                            frame,
                            p1[0],
                            p1[1],
                            other_id=ln.landmark,
                            detail=f"ran the red light {ln.landmark}",
                        )
                    )
            else:
                if not ln.stopped:
                    out.append(
                        Event(
                            "stop_infraction",
                            t,
                            frame,
                            p1[0],
                            p1[1],
                            other_id=ln.landmark,
                            detail=f"did not stop at stop sign {ln.landmark}",
                        )
                    )
                ln.stopped = False

    def _outside(self, x: float, y: float, yaw: float, route_idx: int) -> bool:
        wp = self.map.driving_lane_at(x, y)
        if wp is None:
            return True  # off the driving lanes: sidewalk, shoulder or off-road
        if wp.is_junction:
            return False
        lane_yaw = -math.radians(wp.transform.rotation.yaw)
        return (
            abs(math.remainder(lane_yaw - float(self.route.yaw[route_idx]), 2 * math.pi))
            > math.pi / 2
        )

    def _speed_checks(
        self,
        t: float,
        frame: int,
        x: float,
        y: float,
        speed: float,
        idx: int,
        traffic_speed: NDArray[np.float64],
        out: list[Event],
    ) -> None:
        cfg = self.cfg
        # blocked
        if speed < cfg.blocked_speed_mps:
            if self._blocked_since is None:
                self._blocked_since = t
        else:
            self._blocked_since = None
        # speeding (reported only)
        excess = speed - float(self.route.speed_limit_mps[idx])
        if excess > cfg.speeding_margin_mps:
            if self._speeding is None:
                self._speeding = (t, frame, excess)
            else:
                self._speeding = (
                    self._speeding[0],
                    self._speeding[1],
                    max(self._speeding[2], excess),
                )
        elif self._speeding is not None:
            self._close_speeding(t, frame, x, y, out)
        # minimum speed against the background traffic, per quarter of the route
        if len(traffic_speed) and self._next_cp < cfg.checkpoints:
            k = self._next_cp
            self._cp_ego[k] += speed
            self._cp_traffic[k] += float(traffic_speed.sum()) / len(traffic_speed)
            self._cp_n[k] += 1
        while (
            self._next_cp < cfg.checkpoints
            and self.progress_m
            >= (self._next_cp + 1) / cfg.checkpoints * self.route.length_m - 1e-6
        ):
            self._close_checkpoint()

    def _close_checkpoint(self) -> None:
        k = self._next_cp
        if self._cp_n[k] > 0:
            self.min_speed_pcts.append(
                min_speed_pct(self._cp_ego[k] / self._cp_n[k], self._cp_traffic[k] / self._cp_n[k])
            )
        self._next_cp += 1

    def _close_speeding(self, t: float, frame: int, x: float, y: float, out: list[Event]) -> None:
        assert self._speeding is not None
        t0, _, excess = self._speeding
        out.append(
            Event(
                "speeding",
                t,
                frame,
                x,
                y,
                value=excess,
                detail=f"{t - t0:.1f} s over the limit, up to {excess:.1f} m/s over",
            )
        )
        self._speeding = None


def event_dict(e: Event) -> dict[str, Any]:
    """An event as result.json lists it (rounded for people reading the file)."""
    return {
        "type": e.type,
        "t": round(e.t, 6),
        "frame": e.frame,
        "x": round(e.x, 3),
        "y": round(e.y, 3),
        "other_id": e.other_id,
        "detail": e.detail,
        "value": round(e.value, 4),
    }
