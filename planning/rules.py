"""The rule-based planner: the baseline every learned planner is compared with.

Path: the route's centreline ahead, shifted into the lane on the left to pass a vehicle that
stands in the ego's lane when that lane is free. Speed: IDM towards the smallest of the speed
limit, the speed the path's curvature allows and the limits ahead, with the gap to whichever
comes first of the leader on the path, a red (or stoppable yellow) light's stop line, or a stop
sign's stop line the ego has not yet stood at; whether a yellow is stoppable is decided once,
when it is first seen. At stop and yield signs the ego enters the junction only when no vehicle
is moving in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.dynamics import idm_accel
from sim.messages import (
    ActorKind,
    DetectedObject,
    FloatArray,
    LightState,
    PerceptionOutput,
    Plan,
    RouteAhead,
    SignType,
    VehicleParams,
    VehicleState,
)


@dataclass(frozen=True)
class RulePlannerSettings:
    horizon_m: float = 60.0
    step_m: float = 1.0
    horizon_s: float = 4.0
    a_max: float = 2.0  # IDM maximum acceleration (m/s²), the MPC's comfort bound
    b_comf: float = 3.0  # IDM comfortable deceleration (m/s²)
    s0: float = 3.0  # IDM standstill gap behind a leader (m)
    time_headway_s: float = 1.2
    stop_before_line_m: float = 1.5  # where the front bumper stops before a stop line
    yellow_decel: float = 3.0  # stop for yellow when this deceleration stops before the line
    # ... or this one, for a yellow whose onset was not seen: it may end before the ego reaches
    # the line. A head first read yellow 21 m ahead at 12 m/s (3.5 m/s² to stop) was driven
    # on, and turned red 1.1 s later, 9 m before the line (red_lights seed 0, Transformer).
    yellow_decel_late: float = 4.5
    max_lateral_accel: float = 2.0  # m/s², caps speed in curves
    corridor_margin_m: float = 0.6  # clearance beside the ego that counts as "on the path"
    pedestrian_predict_s: tuple[float, ...] = (0.0, 1.0, 2.0)
    pass_ramp_m: float = 15.0  # length of the lateral shift when passing
    pass_after_stationary_s: float = 5.0  # a vehicle standing this long may be passed
    pass_max_gap_m: float = 40.0
    pass_junction_clearance_m: float = 30.0  # never pass one this close before a junction
    pass_min_ramp_m: float = 10.0  # shortest lateral shift: about the turning circle's limit
    # Behind a (nearly) stopped vehicle in the ego's lane where it may be passed, stop this
    # much further back than s0: room to steer out around it from a standstill. Learned
    # perception may confirm that a vehicle stands only once the ego is close, too late to
    # start the pass while moving.
    pass_room_m: float = 8.0
    pass_room_below_mps: float = 3.0  # the room shrinks to none at this leader speed
    pass_room_lateral_m: float = 1.0  # ... and is kept only behind one this near the lane's middle
    junction_zone_m: float = 8.0  # beyond the junction's route points, vehicles count as in it
    # ... now or where they will be at these times (constant velocity): at a yield line a car
    # just short of the zone, coming at it, is let by (town_small_tour seed 3)
    junction_predict_s: tuple[float, ...] = (0.0, 1.0, 2.0)
    # A vehicle crossing the path (heading more than 45° off it where the path passes it), at
    # this speed or more, also counts as a car standing where it will be at these times
    # (constant velocity): a car turning across the path is braked for before it is on it
    # (town_small_tour seed 4). Slower tracks are left out: a parked car's range jitter reads
    # as 1-2 m/s, and predicting it stalled the Transformer behind one (docs/perception.md).
    vehicle_predict_s: tuple[float, ...] = (0.5, 1.0)
    vehicle_predict_min_mps: float = 3.0
    sign_to_line_max_m: float = 25.0  # a stop sign governs the junction within this distance
    sign_lateral_max_m: float = 5.0  # and stands at most this far beside the lane's edge
    stopped_speed_mps: float = 0.05
    ego: VehicleParams = field(default_factory=VehicleParams)


class StandingTimer:
    """How long each perceived object has stood still (under ``still_mps``); an object unseen
    for longer than ``forget_after_s`` is forgotten (0: at once, as a planner that trusts its
    perception does; a tracker that bridges a detector's single-frame misses keeps it)."""

    def __init__(self, still_mps: float = 0.2, forget_after_s: float = 0.0) -> None:
        self.still_mps = still_mps
        self.forget_after_s = forget_after_s
        self._since: dict[int, float] = {}
        self._seen_at: dict[int, float] = {}

    def update(self, perception: PerceptionOutput) -> None:
        t = perception.t
        for o in perception.objects:
            self._seen_at[o.id] = t
            if o.speed < self.still_mps:
                self._since.setdefault(o.id, t)
            else:
                self._since.pop(o.id, None)
        for k in [k for k, seen in self._seen_at.items() if t - seen > self.forget_after_s]:
            del self._seen_at[k]
            self._since.pop(k, None)

    def seconds(self, obj_id: int, t: float) -> float:
        """Seconds the object has stood at time ``t``; 0 when it moves or was forgotten."""
        since = self._since.get(obj_id)
        return 0.0 if since is None else t - since


class RulePlanner:
    """``update(perception, route, ego) -> Plan``."""

    def __init__(self, settings: RulePlannerSettings = RulePlannerSettings()) -> None:
        self.cfg = settings
        self.reset()

    def reset(self) -> None:
        self._standing = StandingTimer()
        self._stood_at: set[float] = set()  # route distances of stop lines already stood at
        # route distance of a signed stop line -> (sign type, junction id, sign id)
        self._sign_lines: dict[float, tuple[SignType, int, int]] = {}
        self._passing: int | None = None
        self._pass_ramp = (0.0, 0.0)  # route distance where the shift began, and its length
        self._yellow = YellowDecisions(self.cfg.yellow_decel, self.cfg.yellow_decel_late)
        self.reason = ""  # what limited the speed last update, for people reading logs
        # for imitation (planning/env.py): whether it stops for a line (a red or stoppable
        # yellow light, a stop sign not yet stood at, a busy junction after a sign), and the
        # speed profile it would plan without any line
        self.stops_at_line = False
        self.speed_without_lines: FloatArray = np.zeros(0)
        self._stop_why = ""

    # --------------------------------------------------------------------------------- update
    def update(self, perception: PerceptionOutput, route: RouteAhead, ego: VehicleState) -> Plan:
        cfg = self.cfg
        p = cfg.ego
        n = max(2, min(len(route.xy), int(cfg.horizon_m / route.step_m) + 1))
        base = route.xy[:n]  # (n, 2) ego frame
        s = np.arange(n, dtype=np.float64) * route.step_m  # (n,) distance from its first point
        if n < 2 or not perception.valid:
            plan = self._stop_plan(ego, base)
            self.stops_at_line, self.speed_without_lines = False, plan.speed
            return plan
        front = p.length_m - p.rear_overhang_m  # ego frame x of the front bumper
        s_front = front - float(base[0, 0])  # route distance of the front bumper, roughly
        self._standing.update(perception)
        offset = self._pass_offset(perception, route, base, s, ego)
        path = shift_left(base, offset)
        # speed wanted: limit, curvature, limits ahead
        limit_now = perception.speed_limit_mps or float(route.speed_limit_mps[0])
        limits = np.minimum(route.speed_limit_mps[:n], max(limit_now, 0.1))
        limits[0] = limit_now
        curv = np.abs(_curvature(path))
        v_curve = np.sqrt(cfg.max_lateral_accel / np.maximum(curv, 1e-4))
        cap = np.minimum(limits, v_curve)
        reach = np.sqrt(cap**2 + 2 * cfg.b_comf * np.maximum(s - s_front, 0.0))  # brake to cap
        v_desired = float(max(np.min(reach), 0.1))
        # gaps: leader, lights, stop signs
        gap, v_lead = self._leader_gap(perception, route, path, s, s_front)
        gap_stop = self._stop_gap(perception, route, base, s, ego, s_front)
        self.reason = f"leader gap {gap:.1f} m" if math.isfinite(gap) else "free"
        self.stops_at_line = math.isfinite(gap_stop)
        speed_free = self._speed(ego, v_desired, gap, v_lead, s, cap)
        self.speed_without_lines = speed_free
        speed = speed_free
        if gap_stop < gap:
            gap, v_lead = gap_stop, 0.0
            self.reason = f"stop line gap {gap:.1f} m ({self._stop_why})"
            speed = self._speed(ego, v_desired, gap, v_lead, s, cap)
        return Plan(
            perception.t,
            perception.frame,
            path,
            speed,
            route.step_m,
            cfg.horizon_s,
            (ego.x, ego.y, ego.yaw),
        )

    def _speed(
        self,
        ego: VehicleState,
        v_desired: float,
        gap: float,
        v_lead: float,
        s: FloatArray,
        cap: FloatArray,
    ) -> FloatArray:
        """The speed profile ``(n,)``: IDM's acceleration now, held along ``s``, under ``cap``."""
        cfg = self.cfg
        acc = float(
            idm_accel(
                np.array(ego.speed),
                np.array(v_desired),
                np.array(gap),
                np.array(ego.speed - v_lead),
                cfg.a_max,
                cfg.b_comf,
                cfg.s0,
                cfg.time_headway_s,
            )
        )
        acc = max(acc, -cfg.ego.max_decel_mps2)
        v2 = ego.speed**2 + 2.0 * acc * s
        speed = np.minimum(np.sqrt(np.maximum(v2, 0.0)), cap)
        if acc < 0.0:
            speed[0] = max(ego.speed + acc * 0.5, 0.0)
        return speed

    def _stop_plan(self, ego: VehicleState, base: FloatArray) -> Plan:
        path = base if len(base) >= 2 else np.array([[0.0, 0.0], [1.0, 0.0]])
        return Plan(
            ego.t,
            ego.frame,
            path,
            np.zeros(len(path)),
            self.cfg.step_m,
            self.cfg.horizon_s,
            (ego.x, ego.y, ego.yaw),
        )

    # ------------------------------------------------------------------------------ helpers
    def _on_path(
        self, path: FloatArray, s: FloatArray, x: float, y: float, half_width: float
    ) -> float | None:
        """Distance along ``path`` of a point inside the ego's corridor, else None."""
        d2 = (path[:, 0] - x) ** 2 + (path[:, 1] - y) ** 2
        i = int(np.argmin(d2))
        corridor = self.cfg.ego.width_m / 2 + half_width + self.cfg.corridor_margin_m
        if d2[i] > corridor**2 or (i == len(path) - 1 and d2[i] > 1.0):
            return None
        return float(s[i])

    def _leader_gap(
        self,
        perception: PerceptionOutput,
        route: RouteAhead,
        path: FloatArray,
        s: FloatArray,
        s_front: float,
    ) -> tuple[float, float]:
        cfg = self.cfg
        best, v_best = math.inf, 0.0
        heading = np.arctan2(*gradient_rows(path)[:, ::-1].T)  # (n,) the path's heading
        for o in perception.objects:
            if o.kind == ActorKind.PEDESTRIAN:
                for t in cfg.pedestrian_predict_s:
                    px = o.x + o.speed * math.cos(o.yaw) * t
                    py = o.y + o.speed * math.sin(o.yaw) * t
                    at = self._on_path(path, s, px, py, 0.4)
                    if at is not None and at > s_front - 1.0:
                        gap = at - s_front - 0.3
                        if gap < best:
                            best, v_best = gap, 0.0
                continue
            if o.speed >= cfg.vehicle_predict_min_mps:
                gap = self._crossing_gap(path, heading, s, s_front, o)
                if gap < best:
                    best, v_best = gap, 0.0
            rel = abs(math.remainder(o.yaw, math.pi))  # 0 along, π/2 across the path
            half = o.width / 2 if rel < math.pi / 4 else o.length / 2
            at = self._on_path(path, s, o.x, o.y, half)
            if at is None or at < s_front - 1.0:
                continue
            along = o.length / 2 if rel < math.pi / 4 else o.width / 2
            gap = at - s_front - along
            v = max(o.speed * math.cos(o.yaw), 0.0)
            if (
                v < cfg.pass_room_below_mps
                and self._in_lane(path, s, at, o)
                and self._may_pass_at(route, at)
            ):
                gap = max(gap - cfg.pass_room_m * (1.0 - v / cfg.pass_room_below_mps), 0.05)
            if gap < best:
                best, v_best = gap, v
        return best, v_best

    def _crossing_gap(
        self,
        path: FloatArray,
        heading: FloatArray,
        s: FloatArray,
        s_front: float,
        o: DetectedObject,
    ) -> float:
        """Gap to where a vehicle crossing the path (``heading`` at each point) will be
        (``vehicle_predict_s``), or inf."""
        cfg = self.cfg
        best = math.inf
        for t in cfg.vehicle_predict_s:
            px = o.x + o.speed * math.cos(o.yaw) * t
            py = o.y + o.speed * math.sin(o.yaw) * t
            i = int(np.argmin((path[:, 0] - px) ** 2 + (path[:, 1] - py) ** 2))
            if abs(math.remainder(o.yaw - float(heading[i]), math.pi)) < math.pi / 4:
                continue  # along the path (either way): the leader rule's
            at = self._on_path(path, s, px, py, o.length / 2)
            if at is not None and at > s_front - 1.0:
                best = min(best, at - s_front - o.width / 2)
        return best

    def _stop_gap(
        self,
        perception: PerceptionOutput,
        route: RouteAhead,
        base: FloatArray,
        s: FloatArray,
        ego: VehicleState,
        s_front: float,
    ) -> float:
        cfg = self.cfg
        best = math.inf
        for lt in perception.lights:
            self._yellow.saw(lt.id, lt.state, perception.t)
            at = self._on_path(base, s, lt.stop_x, lt.stop_y, 1.0)
            if at is None or at < s_front - 0.5:
                continue
            dist = at - s_front
            stop = lt.state in (LightState.RED, LightState.UNKNOWN)
            if lt.state == LightState.YELLOW:  # the stop then aims stop_before_line_m before
                # the line, or as near as it can
                stop = self._yellow.stop(lt.id, ego.speed, dist, perception.t)
            if stop and self._line_gap(dist) < best:
                best = self._line_gap(dist)
                self._stop_why = f"light {lt.id} {lt.state.name.lower()}"
        self._yellow.end_update()
        # Signs are remembered by the route distance of their stop line: a camera loses a
        # roadside sign in the last metres before it, the obligation stays. Where the signs
        # read for one line disagree, stop wins over yield while the line is still ahead: a
        # learned perceiver boxed a stop sign once more as a yield sign, read it "yield" first,
        # and the ego drove through the junction as at a yield (junction_turns seed 5).
        for sg in perception.signs:
            if sg.type in (SignType.STOP, SignType.YIELD):
                line_s, junction = self._junction_after(route, base, s, sg.x, sg.y)
                if line_s is not None:
                    key = round(route.s0_m + line_s, 1)
                    known = [k for k in self._sign_lines if abs(key - k) < 3.0]
                    if not known:
                        self._sign_lines[key] = (sg.type, junction, sg.id)
                    elif sg.type == SignType.STOP and line_s > s_front:
                        for k in known:
                            if self._sign_lines[k][0] == SignType.YIELD:
                                self._sign_lines[k] = (SignType.STOP, junction, sg.id)
        for key, (kind, junction, sign_id) in list(self._sign_lines.items()):
            dist = key - route.s0_m - s_front
            if dist < -10.0:
                del self._sign_lines[key]
                self._stood_at.discard(key)
                continue
            if kind == SignType.STOP and key not in self._stood_at:
                if ego.speed < cfg.stopped_speed_mps and dist < 4.0:
                    self._stood_at.add(key)
                else:
                    if self._line_gap(dist) < best:
                        best = self._line_gap(dist)
                        self._stop_why = f"stop sign {sign_id}"
                    continue
            pts = base[route.junction[: len(base)] == junction]
            busy = dist > -1.0 and not self._junction_clear(perception, pts)
            if busy and self._line_gap(dist) < best:
                best = self._line_gap(dist)
                self._stop_why = f"junction busy after sign {sign_id}"
        return best

    def _line_gap(self, dist_to_line: float) -> float:
        """IDM gap that brings the front bumper to rest ``stop_before_line_m`` before a line."""
        return max(dist_to_line - self.cfg.stop_before_line_m + self.cfg.s0, 0.05)

    def _junction_after(
        self, route: RouteAhead, base: FloatArray, s: FloatArray, x: float, y: float
    ) -> tuple[float | None, int]:
        """Distance along ``base`` where the junction after a sign begins, and its id."""
        d2 = (base[:, 0] - x) ** 2 + (base[:, 1] - y) ** 2
        i_sign = int(np.argmin(d2))
        if not sign_for_lane(route, base, i_sign, x, y, self.cfg.sign_lateral_max_m):
            return None, -1  # a sign for another street, or the opposite lane's
        junction = route.junction[: len(base)]
        inside = np.flatnonzero(junction[i_sign:] >= 0)
        if len(inside) == 0:
            return None, -1
        i_line = i_sign + int(inside[0])
        if s[i_line] - s[i_sign] > self.cfg.sign_to_line_max_m:
            return None, -1
        return float(s[i_line]), int(junction[i_line])

    def _junction_clear(self, perception: PerceptionOutput, pts: FloatArray) -> bool:
        if len(pts) == 0:
            return True
        centre = pts.mean(axis=0)
        radius = float(np.max(np.hypot(*(pts - centre).T))) + self.cfg.junction_zone_m
        for o in perception.objects:
            if o.kind != ActorKind.VEHICLE or o.speed < 0.5:
                continue
            vx, vy = o.speed * math.cos(o.yaw), o.speed * math.sin(o.yaw)
            for t in self.cfg.junction_predict_s:
                if math.hypot(o.x + vx * t - centre[0], o.y + vy * t - centre[1]) < radius:
                    return False
        return True

    def _pass_offset(
        self,
        perception: PerceptionOutput,
        route: RouteAhead,
        base: FloatArray,
        s: FloatArray,
        ego: VehicleState,
    ) -> FloatArray:
        """Lateral offset (m, left) along the path that passes a standing vehicle, else zeros."""
        cfg = self.cfg
        offset = np.zeros(len(base))
        target = None
        for o in perception.objects:
            if o.kind != ActorKind.VEHICLE:
                continue
            at = self._on_path(base, s, o.x, o.y, o.width / 2)
            if at is None:
                continue
            standing = self._standing.seconds(o.id, perception.t)
            candidate = o.id == self._passing or (
                standing >= cfg.pass_after_stationary_s and self._may_pass_at(route, at)
            )
            if candidate and (target is None or at < target[0]):
                target = (at, o)
        if target is None:
            if self._passing is not None and not any(
                o.id == self._passing for o in perception.objects
            ):
                self._passing = None
            return offset
        at, o = target
        width = float(route.lane_width_m[min(int(at), len(route.lane_width_m) - 1)])
        shifted = shift_left(base, np.full(len(base), width))
        if self._passing != o.id:
            if not self._lane_free(perception, shifted, s, o.id):
                return offset
            self._passing = o.id
            # The shift ends 8 m before the vehicle's rear. An ego already nearer (one that
            # stopped behind it) shifts from where it stands, over at least pass_min_ramp_m.
            end = at - o.length / 2 - 8.0
            start = end - cfg.pass_ramp_m
            if start < 0.0:
                end, start = max(end, cfg.pass_min_ramp_m), 0.0
            self._pass_ramp = (route.s0_m + start, end - start)
        start, ramp = self._pass_ramp[0] - route.s0_m, self._pass_ramp[1]
        back = at + o.length / 2 + 8.0
        up = np.clip((s - start) / ramp, 0.0, 1.0)
        down = np.clip((back + cfg.pass_ramp_m - s) / cfg.pass_ramp_m, 0.0, 1.0)
        ramp_share = np.minimum(up, down)
        return width * (3 * ramp_share**2 - 2 * ramp_share**3)  # smoothstep: no kink in the path

    def _in_lane(self, path: FloatArray, s: FloatArray, at: float, o: DetectedObject) -> bool:
        """Whether a vehicle ``at`` metres along ``path`` stands in the ego's lane, facing its
        way: within ``pass_room_lateral_m`` of the path and heading within 45° of the ego. (A
        still object's heading is unknown to learned perception, which reports 0: the lateral
        test is the one that tells a car parked in the lane from one queued beside the path.)"""
        i = min(int(np.searchsorted(s, at)), len(path) - 1)
        lateral = math.hypot(path[i, 0] - o.x, path[i, 1] - o.y)
        return (
            lateral < self.cfg.pass_room_lateral_m
            and abs(math.remainder(o.yaw, 2 * math.pi)) < math.pi / 4
        )

    def _may_pass_at(self, route: RouteAhead, at: float) -> bool:
        """Whether a vehicle ``at`` metres along the route may be passed there: a lane on the
        left, and no junction there or within ``pass_junction_clearance_m`` after it."""
        cfg = self.cfg
        i = min(int(at / route.step_m), len(route.left_lane) - 1)
        ahead = route.junction[i : i + int(cfg.pass_junction_clearance_m / route.step_m)]
        return (
            at < cfg.pass_max_gap_m
            and route.left_lane[i] != 0
            and not np.any(ahead >= 0)
            and route.junction[i] < 0
        )

    def _lane_free(
        self, perception: PerceptionOutput, lane: FloatArray, s: FloatArray, skip: int
    ) -> bool:
        for o in perception.objects:
            if o.id == skip:
                continue
            if self._on_path(lane, s, o.x, o.y, o.width / 2 + 1.0) is not None:
                return False
        return True


class YellowDecisions:
    """Whether to stop at each yellow light, decided once, when the yellow is first seen: stop
    if the ego can stop before the line itself at ``decel_mps2``. The decision is kept while
    the light is yellow and asked about every update; one not asked about in an update is
    forgotten, so the light's next yellow is decided anew. Re-taken every update instead, the
    decision flipped to "go" while the ego braked, and it drove onto the junction late (the
    dilemma zone is decided at the onset).

    A yellow whose onset was not seen (the light not seen in another state just before, as
    ``saw`` tells) may end before a go reaches the line: with ``late_decel_mps2`` it is decided
    at that firmer deceleration instead."""

    ONSET_GAP_S = 0.5  # a light seen in another state this recently: the yellow's onset seen

    def __init__(self, decel_mps2: float, late_decel_mps2: float | None = None) -> None:
        self.decel_mps2 = decel_mps2
        self.late_decel_mps2 = decel_mps2 if late_decel_mps2 is None else late_decel_mps2
        self._kept: dict[int, bool] = {}  # light id -> stop, from earlier updates
        self._now: dict[int, bool] = {}  # ... and those asked about in this one
        self._not_yellow_t: dict[int, float] = {}  # light id -> last seen in another state (s)

    def saw(self, light_id: int, state: LightState, t: float) -> None:
        """Note a light's state at time ``t`` (s): its next yellow's onset is seen if it was
        last seen in another state at most ``ONSET_GAP_S`` before."""
        if state != LightState.YELLOW:
            self._not_yellow_t[light_id] = t

    def stop(self, light_id: int, speed_mps: float, line_m: float, t: float | None = None) -> bool:
        """Whether to stop at this yellow light, ``line_m`` ahead of the front bumper, seen at
        time ``t`` (s; None: its onset taken as seen)."""
        decision = self._kept.get(light_id)
        if decision is None:
            last = self._not_yellow_t.get(light_id, -math.inf)
            onset = t is None or t - last <= self.ONSET_GAP_S
            decel = self.decel_mps2 if onset else self.late_decel_mps2
            decision = speed_mps**2 <= 2.0 * decel * max(line_m, 0.01)
        self._now[light_id] = decision
        return decision

    def end_update(self) -> None:
        """Forget the lights not asked about since the last call."""
        self._kept, self._now = self._now, {}


def sign_for_lane(
    route: RouteAhead, xy: FloatArray, k: int, x: float, y: float, lateral_max_m: float
) -> bool:
    """Whether a sign at ego-frame ``(x, y)``, nearest to point ``k`` of the route's points
    ``xy``, can govern the ego's lane: at most ``lateral_max_m`` beyond the lane's edge, and
    not beyond its left edge where the lane on the left is the opposite direction's. Traffic
    keeps right: a sign across the opposite lane stands at that lane's kerb, for its traffic.
    (Learned perception reads the back of the opposite direction's limit sign, 6 m to the
    left, as a stop: the ego stood for it at a green, lost the head beside the line from view
    and drove into its red; `red_lights` seed 1, `town_loop` seed 1, `dense_traffic` seed 4 with
    the Transformer, traced 2026-12-06. Ground truth reports only signs facing the ego.)"""
    width = float(route.lane_width_m[k]) if len(route.lane_width_m) > k else 3.5
    px, py = x - float(xy[k, 0]), y - float(xy[k, 1])
    if px * px + py * py > (width / 2 + lateral_max_m) ** 2:
        return False
    j = min(k, len(xy) - 2)
    dx, dy = float(xy[j + 1, 0] - xy[j, 0]), float(xy[j + 1, 1] - xy[j, 1])
    left = (dx * py - dy * px) / max(math.hypot(dx, dy), 1e-9)  # signed offset, + to the left
    opposite = len(route.left_lane) > k and int(route.left_lane[k]) == -1
    return not (opposite and left > width / 2)


def shift_left(path: FloatArray, offset: FloatArray) -> FloatArray:
    """Shift each point of ``path`` ``(N, 2)`` by ``offset`` ``(N,)`` along its left normal."""
    if not np.any(offset):
        return path
    d = gradient_rows(path)
    norm = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    out = np.empty_like(path, dtype=np.float64)
    out[:, 0] = path[:, 0] - d[:, 1] / norm * offset
    out[:, 1] = path[:, 1] + d[:, 0] / norm * offset
    return out


def gradient_rows(a: FloatArray) -> FloatArray:
    """``np.gradient(a, axis=0)`` for unit spacing, bit for bit (central differences inside,
    one-sided at the ends), without its general-purpose overhead (it ran at every env step)."""
    out = np.empty(a.shape, dtype=np.float64)
    out[1:-1] = (a[2:] - a[:-2]) / 2.0
    out[0] = a[1] - a[0]
    out[-1] = a[-1] - a[-2]
    return out


def _curvature(path: FloatArray) -> FloatArray:
    """Signed curvature ``(N,)`` (1/m) of a polyline sampled evenly."""
    if len(path) < 3:
        return np.zeros(len(path))
    d1 = gradient_rows(path)
    d2 = gradient_rows(d1)
    num = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    den = np.maximum(np.hypot(d1[:, 0], d1[:, 1]) ** 3, 1e-9)
    k = num / den
    if len(k) < 5:
        return k
    # smooth over 5 m: sampled centrelines have small kinks at segment joins
    return np.convolve(k, np.ones(5) / 5, mode="same")
