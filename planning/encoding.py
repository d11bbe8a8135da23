"""What the RL planner sees and what its actions mean, shared by the environment and the stage.

:class:`ObservationEncoder` turns ``(PerceptionOutput, RouteAhead, VehicleState)`` into one
fixed-size ``float32`` vector (the layout is :data:`OBS_LAYOUT`; units below). It is stateful
the way a driver is: it remembers stop lines of stop/yield signs it has seen (a camera loses a
roadside sign in the last metres) and whether the ego has stood at them, and for how long each
tracked object has been standing, and it takes a light's change of colour only once it has
been reported for ``light_confirm_s`` (one wrong frame of a classifier is not a change); it
also says where the next stop line is
(:attr:`ObservationEncoder.stop_line_m`). :class:`PlanMaker` turns an action (target speed,
lateral offset, stop at the next line) into a smooth, kinematically feasible
:class:`~sim.messages.Plan`.

Both the gymnasium environment (``planning/env.py``) and :class:`planning.rl.RLPlanner` use
these two classes, so a policy sees and acts the same in training and in the stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from planning.rules import StandingTimer, YellowDecisions, shift_left, sign_for_lane
from sim.messages import (
    ActorKind,
    DetectedLight,
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

# ---------------------------------------------------------------------------------- layout
ROUTE_POINTS_M: tuple[float, ...] = (2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 65.0, 80.0)
N_OBJECTS = 6
EGO_FEATURES = (
    "speed_mps",
    "accel_mps2",
    "steer_rad",
    "speed_limit_mps",
    "lateral_offset_m",  # ego rear axle left of the route centreline
    "heading_error_rad",  # ego heading minus the route's
    "remaining_m",  # route left, capped at 100 m
)
ROUTE_FEATURES = ("x_m", "y_m", "speed_limit_mps", "in_junction", "left_lane")
OBJECT_FEATURES = (
    "present",
    "is_vehicle",
    "is_pedestrian",
    "s_m",  # along the route from the ego's front bumper
    "d_m",  # left of the route centreline
    "x_m",  # ego frame
    "y_m",
    "cos_rel_yaw",
    "sin_rel_yaw",
    "speed_mps",
    "standing_s",  # how long it has stood still (capped at 10 s)
)
LEADER_FEATURES = (
    "present",
    "gap_m",  # bumper to bumper along the path (capped at 100 m)
    "speed_mps",  # its speed along the path
    "stop_speed_mps",  # the speed from which the ego stops in the gap at the comfort decel
    "standing_s",
    "left_lane_kind",  # +1 same direction, -1 opposite, 0 none, at the leader
    "left_lane_free",  # no object within the passing corridor
    "junction_near",  # a junction within 30 m of the leader
)
LIGHT_FEATURES = (
    "present",
    "red",
    "yellow",
    "green",
    "unknown",
    "distance_m",  # front bumper to its stop line along the route (capped at 100 m)
    "stop_speed_mps",  # the speed from which the ego stops before the line at the comfort decel
    "yellow_stoppable",  # 1 if the ego could stop before the line when the yellow was first seen
)
SIGN_FEATURES = (
    "stop",
    "yield",
    "distance_m",  # front bumper to the junction line after the sign (capped at 100 m)
    "stood",  # the ego has stood within 4 m of this stop line
    "junction_busy",  # a vehicle moves in the junction behind it
    "stop_speed_mps",
)
LIMIT_FEATURES = ("sign_value_mps", "sign_distance_m")
JUNCTION_FEATURES = ("distance_m", "inside")

OBS_LAYOUT: tuple[tuple[str, int], ...] = (
    ("ego", len(EGO_FEATURES)),
    ("route", len(ROUTE_POINTS_M) * len(ROUTE_FEATURES)),
    ("objects", N_OBJECTS * len(OBJECT_FEATURES)),
    ("leader", len(LEADER_FEATURES)),
    ("light", len(LIGHT_FEATURES)),
    ("sign", len(SIGN_FEATURES)),
    ("limit", len(LIMIT_FEATURES)),
    ("junction", len(JUNCTION_FEATURES)),
)
OBS_SIZE = sum(n for _, n in OBS_LAYOUT)


def obs_offset(block: str) -> int:
    """Index of the first feature of ``block`` (a name in :data:`OBS_LAYOUT`) in an observation."""
    names = [name for name, _ in OBS_LAYOUT]
    if block not in names:
        raise KeyError(f"no observation block {block!r}; the blocks are {', '.join(names)}")
    return sum(n for _, n in OBS_LAYOUT[: names.index(block)])


ACTION_SIZE = 3  # target speed share, lateral offset, stop at the next stop line
OBS_LIMIT = 1000.0  # every feature is clipped to ±this, so the space is a bounded Box
FAR_M = 100.0  # "nothing there" distance


@dataclass(frozen=True)
class EncoderSettings:
    """:param object_range_m: objects farther than this are not encoded
    :param corridor_margin_m: clearance beside the ego that counts as "on the path"
    :param comfort_decel_mps2: deceleration the ``stop_speed`` features assume
    :param stop_before_line_m: where the front bumper should rest before a stop line
    :param standstill_gap_m: bumper gap kept behind a standing leader
    :param pedestrian_predict_s: a pedestrian counts as on the path if it will be within 2 s
    :param sign_to_line_max_m: a stop/yield sign governs a junction that starts this close after it
    :param sign_lateral_max_m: and stands at most this far beside the lane's edge
    :param junction_zone_m: vehicles this far beyond a junction's route points count as in it
    """

    object_range_m: float = 60.0
    corridor_margin_m: float = 0.6
    comfort_decel_mps2: float = 3.0
    stop_before_line_m: float = 1.5
    standstill_gap_m: float = 3.0
    pedestrian_predict_s: tuple[float, ...] = (0.0, 1.0, 2.0)
    sign_to_line_max_m: float = 25.0
    sign_lateral_max_m: float = 5.0
    junction_zone_m: float = 8.0
    stopped_speed_mps: float = 0.05
    stood_within_m: float = 4.0
    still_mps: float = 1.0  # an object slower than this stands (3σ of a detector's speed noise)
    hold_s: float = 0.5  # objects and lights missed for this long are still encoded
    light_confirm_s: float = 0.1  # a light's new state counts once reported this long
    confirm_frames: int = 2  # an object counts for the safety envelope once seen this often
    pedestrian_half_width_m: float = 0.4  # a pedestrian's half width across the path, margin in
    ego: VehicleParams = field(default_factory=VehicleParams)


_Leader = tuple[float, float, DetectedObject | None]  # gap m, speed along the path m/s, object


def _stop_speed(gap: float, decel: float) -> float:
    return math.sqrt(2.0 * decel * max(gap, 0.0))


@dataclass(frozen=True)
class Obstacle:
    """An object on or near the route that the safety envelope keeps the ego behind.

    :param gap_m: from the ego's front bumper to the object's near end, along the route (m)
    :param route_s_m: the object's route distance from the route's first point (m), where the
        envelope looks up the planned path's lateral offset
    :param d_m: the object's centre, left of the route centreline (m)
    :param half_width_m: its half extent across the route (m)
    :param speed_mps: its speed along the route (m/s, ≥ 0: oncoming and crossing objects count
        as standing)
    """

    gap_m: float
    route_s_m: float
    d_m: float
    half_width_m: float
    speed_mps: float


class ObservationEncoder:
    """``encode(perception, route, ego) -> (OBS_SIZE,) float32``.

    After each call, :attr:`obstacles` holds the confirmed objects (seen in at least
    ``confirm_frames`` frames: a one-frame false positive is not one) projected on the route,
    for :class:`PlanMaker`'s safety envelope. The previous action is not part of the
    observation: with it, imitation learns "keep doing what you did" (causal confusion, de Haan
    et al. 2019).
    """

    def __init__(self, settings: EncoderSettings = EncoderSettings()) -> None:
        self.cfg = settings
        self.reset()

    def reset(self) -> None:
        # route distance of a signed junction line -> sign type; lines the ego stood at
        self._sign_lines: dict[float, SignType] = {}
        self._stood_at: set[float] = set()
        self._standing = StandingTimer(self.cfg.still_mps, self.cfg.hold_s)
        # id -> (time last seen, the object then, its map-frame x, y, yaw)
        self._objects: dict[int, tuple[float, DetectedObject, float, float, float]] = {}
        self._lights: dict[int, tuple[float, DetectedLight, float, float]] = {}
        # id -> (the state encoded, a different state reported since, since when)
        self._light_states: dict[int, tuple[LightState, LightState, float]] = {}
        self._seen_frames: dict[int, int] = {}  # id -> frames it was detected in (while held)
        self._yellow = YellowDecisions(self.cfg.comfort_decel_mps2)
        self.obstacles: tuple[Obstacle, ...] = ()
        self.stop_line_m = math.inf  # front bumper to the next stop line (light or sign), m

    def encode(
        self, perception: PerceptionOutput, route: RouteAhead, ego: VehicleState
    ) -> NDArray[np.float32]:
        cfg = self.cfg
        p = cfg.ego
        out = np.zeros(OBS_SIZE, dtype=np.float32)
        xy = route.xy if len(route.xy) >= 2 else np.array([[0.0, 0.0], [1.0, 0.0]])
        n = len(xy)
        step = route.step_m
        front = p.length_m - p.rear_overhang_m
        s_front = front - float(xy[0, 0])  # route distance of the front bumper, roughly
        limit_now = perception.speed_limit_mps or (
            float(route.speed_limit_mps[0]) if len(route.speed_limit_mps) else 13.9
        )
        i = 0
        # ego
        ego_feats = (
            ego.speed,
            ego.accel,
            ego.steer,
            limit_now,
            -float(xy[0, 1]),
            -float(route.yaw[0]) if len(route.yaw) else 0.0,
            min(route.remaining_m, FAR_M),
        )
        out[i : i + len(ego_feats)] = ego_feats
        i += len(EGO_FEATURES)
        # route samples (past the goal: the last point, outside any junction)
        at = np.array(ROUTE_POINTS_M) / step  # (R,)
        idx = np.minimum(np.rint(at).astype(np.int64), n - 1)
        block = np.zeros((len(ROUTE_POINTS_M), len(ROUTE_FEATURES)))
        block[:, 0:2] = xy[idx]
        if len(route.speed_limit_mps) >= n:
            block[:, 2] = route.speed_limit_mps[idx]
        if len(route.junction) >= n:
            block[:, 3] = (route.junction[idx] >= 0) & (at <= n - 1)
        if len(route.left_lane) >= n:
            block[:, 4] = route.left_lane[idx]
        out[i : i + block.size] = block.reshape(-1)
        i += block.size
        # objects, projected on the route
        self._standing.update(perception)
        seen = self._hold(perception, ego)
        objs = [o for o in seen if math.hypot(o.x, o.y) < cfg.object_range_m]
        leader: _Leader = (math.inf, 0.0, None)  # gap, speed along, object
        self.obstacles = ()
        if objs:
            pos = np.array([(o.x, o.y) for o in objs])  # (M, 2)
            s_obj, d_obj = _project(xy, step, pos)
            order = np.argsort(np.hypot(pos[:, 0], pos[:, 1]))
            for slot, j in enumerate(order[:N_OBJECTS]):
                o = objs[j]
                base = i + slot * len(OBJECT_FEATURES)
                out[base : base + len(OBJECT_FEATURES)] = (
                    1.0,
                    float(o.kind == ActorKind.VEHICLE),
                    float(o.kind == ActorKind.PEDESTRIAN),
                    s_obj[j] - s_front,
                    d_obj[j],
                    o.x,
                    o.y,
                    math.cos(o.yaw),
                    math.sin(o.yaw),
                    o.speed,
                    self._standing_s(o.id, perception.t),
                )
            leader = self._leader(objs, s_obj, d_obj, xy, step, s_front)
            self.obstacles = self._obstacles(objs, s_obj, d_obj, xy, step, s_front)
        i += N_OBJECTS * len(OBJECT_FEATURES)
        # leader on the path
        gap, v_lead, lead = leader
        if lead is not None:
            k = min(int(max(gap + s_front, 0.0) / step), n - 1)
            left_kind = int(route.left_lane[k]) if len(route.left_lane) > k else 0
            junction_near = bool(np.any(route.junction[k : k + int(30.0 / step)] >= 0))
            out[i : i + len(LEADER_FEATURES)] = (
                1.0,
                min(gap, FAR_M),
                v_lead,
                _stop_speed(gap - cfg.standstill_gap_m + 1.0, cfg.comfort_decel_mps2),
                self._standing_s(lead.id, perception.t),
                left_kind,
                float(self._left_free(objs, xy, step, route, lead.id)),
                float(junction_near),
            )
        else:
            out[i + 1] = FAR_M
            out[i + 3] = _stop_speed(FAR_M, cfg.comfort_decel_mps2)
        i += len(LEADER_FEATURES)
        # the light governing the ego's lane
        light_best: tuple[float, LightState, int] | None = None
        lights = self._hold_lights(perception, ego)
        if lights:
            s_l, d_l = _project(xy, step, np.array([(lt.stop_x, lt.stop_y) for lt in lights]))
            for j, lt in enumerate(lights):
                dist = float(s_l[j]) - s_front
                if abs(float(d_l[j])) > 2.5 or dist < -0.5:
                    continue
                if light_best is None or dist < light_best[0]:
                    light_best = (dist, lt.state, lt.id)
        self.stop_line_m = math.inf
        if light_best is not None:
            dist, state, light_id = light_best
            self.stop_line_m = dist
            # a yellow's stop decision, made at its onset as the rule planner makes it
            stop = state == LightState.YELLOW and self._yellow.stop(light_id, ego.speed, dist)
            out[i : i + len(LIGHT_FEATURES)] = (
                1.0,
                float(state == LightState.RED),
                float(state == LightState.YELLOW),
                float(state == LightState.GREEN),
                float(state in (LightState.OFF, LightState.UNKNOWN)),
                min(dist, FAR_M),
                _stop_speed(dist, cfg.comfort_decel_mps2),  # a yellow is stoppable below it
                float(stop),
            )
        else:
            out[i + 5] = FAR_M
            out[i + 6] = _stop_speed(FAR_M, cfg.comfort_decel_mps2)
        self._yellow.end_update()
        i += len(LIGHT_FEATURES)
        # stop and yield signs, remembered by the route distance of their junction line
        self._remember_signs(perception, route, xy, step, s_front, ego)
        sign = self._next_sign(route, s_front)
        if sign is not None:
            key, kind, dist = sign
            if dist > -0.5:
                self.stop_line_m = min(self.stop_line_m, dist)
            j_id = self._junction_id_at(route, key)
            pts = xy[route.junction[:n] == j_id] if j_id >= 0 else xy[:0]
            out[i : i + len(SIGN_FEATURES)] = (
                float(kind == SignType.STOP),
                float(kind == SignType.YIELD),
                min(dist, FAR_M),
                float(key in self._stood_at),
                float(not self._junction_clear(objs, pts)),
                _stop_speed(dist - cfg.stop_before_line_m, cfg.comfort_decel_mps2),
            )
        else:
            out[i + 2] = FAR_M
            out[i + 5] = _stop_speed(FAR_M, cfg.comfort_decel_mps2)
        i += len(SIGN_FEATURES)
        # the next speed-limit sign
        best_limit = (0.0, FAR_M)
        for sg in perception.signs:
            if sg.type == SignType.SPEED_LIMIT and 0.0 < sg.x < best_limit[1]:
                best_limit = (sg.value / 3.6, sg.x)
        out[i : i + 2] = best_limit
        i += len(LIMIT_FEATURES)
        # the next junction along the route
        inside = n > 0 and route.junction[0] >= 0
        ahead = np.flatnonzero(route.junction[:n] >= 0)
        ahead = ahead[ahead * step >= s_front]
        out[i] = min(float(ahead[0]) * step - s_front, FAR_M) if len(ahead) else FAR_M
        out[i + 1] = float(inside)
        i += len(JUNCTION_FEATURES)
        assert i == OBS_SIZE
        return np.clip(out, -OBS_LIMIT, OBS_LIMIT)

    # ------------------------------------------------------------------------------ helpers
    def _hold(self, perception: PerceptionOutput, ego: VehicleState) -> list[DetectedObject]:
        """This frame's objects, and those missed for at most ``hold_s`` predicted at constant
        velocity (a detector drops objects for single frames; a planner should not forget)."""
        t = perception.t
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        current = {o.id for o in perception.objects}
        for o in perception.objects:
            self._seen_frames[o.id] = self._seen_frames.get(o.id, 0) + 1
            mx, my = ego.x + c * o.x - s * o.y, ego.y + s * o.x + c * o.y
            self._objects[o.id] = (t, o, mx, my, ego.yaw + o.yaw)
        out = list(perception.objects)
        for k, (t_seen, o, mx, my, myaw) in list(self._objects.items()):
            if k in current:
                continue
            age = t - t_seen
            if age > self.cfg.hold_s:
                del self._objects[k]
                self._seen_frames.pop(k, None)
                continue
            px, py = mx + o.speed * age * math.cos(myaw), my + o.speed * age * math.sin(myaw)
            dx, dy = px - ego.x, py - ego.y
            out.append(
                replace(
                    o,
                    x=c * dx + s * dy,
                    y=-s * dx + c * dy,
                    yaw=math.remainder(myaw - ego.yaw, 2 * math.pi),
                )
            )
        return out

    def _hold_lights(self, perception: PerceptionOutput, ego: VehicleState) -> list[DetectedLight]:
        """This frame's lights, and those missed for at most ``hold_s`` (their last state), each
        in its confirmed state (:meth:`_confirmed_state`)."""
        t = perception.t
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        current = {lt.id for lt in perception.lights}
        out = []
        for lt in perception.lights:
            lt = replace(lt, state=self._confirmed_state(lt.id, lt.state, t))
            mx, my = ego.x + c * lt.stop_x - s * lt.stop_y, ego.y + s * lt.stop_x + c * lt.stop_y
            self._lights[lt.id] = (t, lt, mx, my)
            out.append(lt)
        for k, (t_seen, lt, mx, my) in list(self._lights.items()):
            if k in current:
                continue
            if t - t_seen > self.cfg.hold_s:
                del self._lights[k]
                self._light_states.pop(k, None)
                continue
            dx, dy = mx - ego.x, my - ego.y
            out.append(replace(lt, stop_x=c * dx + s * dy, stop_y=-s * dx + c * dy))
        return out

    def _confirmed_state(self, light_id: int, state: LightState, t: float) -> LightState:
        """The state to encode for a light reported in ``state`` at ``t``: a new light's state at
        once; a change once the new state has been reported for ``light_confirm_s``.

        A light classifier's errors are mostly single frames (the noise model's
        ``light_confusion_prob``). Read raw, each wrong frame is a state the teacher contradicts:
        standing at a red light, a frame read green is labelled "stop", so the student cannot
        trust a green it sees while standing and takes its cue from context, such as crossing
        traffic, instead (docs/planner.md, "What each change did"). Deployed light recognisers
        filter the colour over time the same way (Apollo's traffic-light tracker accepts a new
        colour after ``hysteretic_threshold_count`` frames); it costs ``light_confirm_s`` at a
        real change.
        """
        prev = self._light_states.get(light_id)
        if prev is None or state == prev[0]:
            self._light_states[light_id] = (state, state, t)
            return state
        encoded, candidate, since = prev
        if state != candidate:
            candidate, since = state, t
        if t - since >= self.cfg.light_confirm_s - 1e-6:
            encoded = state
        self._light_states[light_id] = (encoded, candidate, since)
        return encoded

    def _standing_s(self, obj_id: int, t: float) -> float:
        return min(self._standing.seconds(obj_id, t), 10.0)

    def _leader(
        self,
        objs: list[DetectedObject],
        s_obj: FloatArray,
        d_obj: FloatArray,
        xy: FloatArray,
        step: float,
        s_front: float,
    ) -> _Leader:
        """Gap (m), speed along the path (m/s) and the object of the nearest one on the path."""
        cfg = self.cfg
        half_ego = cfg.ego.width_m / 2 + cfg.corridor_margin_m
        best: _Leader = (math.inf, 0.0, None)
        for j, o in enumerate(objs):
            if o.kind == ActorKind.PEDESTRIAN:
                s_p, d_p = _pedestrian_ahead(o, xy, step, cfg.pedestrian_predict_s)
                on = np.flatnonzero(np.abs(d_p) < half_ego + 0.4)
                if len(on):
                    at = float(np.min(s_p[on]))
                    gap = at - s_front - 0.3
                    if at > s_front - 1.0 and gap < best[0]:
                        best = (gap, 0.0, o)
                continue
            rel, half, along = _extent_on_path(o, xy, step, float(s_obj[j]))
            if abs(d_obj[j]) > half_ego + half or s_obj[j] < s_front - 1.0:
                continue
            gap = float(s_obj[j]) - s_front - along
            if gap < best[0]:
                best = (gap, max(o.speed * math.cos(rel), 0.0), o)
        return best

    def _obstacles(
        self,
        objs: list[DetectedObject],
        s_obj: FloatArray,
        d_obj: FloatArray,
        xy: FloatArray,
        step: float,
        s_front: float,
    ) -> tuple[Obstacle, ...]:
        """The confirmed objects ahead, projected on the route (pedestrians also where they
        will be in ``pedestrian_predict_s``), for the safety envelope."""
        cfg = self.cfg
        out: list[Obstacle] = []
        for j, o in enumerate(objs):
            if self._seen_frames.get(o.id, 0) < cfg.confirm_frames:
                continue
            if o.kind == ActorKind.PEDESTRIAN:
                s_p, d_p = _pedestrian_ahead(o, xy, step, cfg.pedestrian_predict_s)
                for sp, dp in zip(s_p, d_p, strict=True):
                    if sp > s_front - 1.0:
                        gap = float(sp) - s_front - 0.3
                        half = cfg.pedestrian_half_width_m
                        out.append(Obstacle(gap, float(sp), float(dp), half, 0.0))
                continue
            if s_obj[j] < s_front - 1.0:
                continue
            rel, half, along = _extent_on_path(o, xy, step, float(s_obj[j]))
            out.append(
                Obstacle(
                    float(s_obj[j]) - s_front - along,
                    float(s_obj[j]),
                    float(d_obj[j]),
                    half,
                    max(o.speed * math.cos(rel), 0.0),
                )
            )
        return tuple(out)

    def _left_free(
        self, objs: list, xy: FloatArray, step: float, route: RouteAhead, skip: int
    ) -> bool:
        """No object (but ``skip``) in the lane on the left within the encoded range."""
        width = float(route.lane_width_m[0]) if len(route.lane_width_m) else 3.5
        others = [o for o in objs if o.id != skip]
        if not others:
            return True
        _, d = _project(xy, step, np.array([(o.x, o.y) for o in others]))
        return not bool(np.any(np.abs(d - width) < width / 2 + 1.0))

    def _remember_signs(
        self,
        perception: PerceptionOutput,
        route: RouteAhead,
        xy: FloatArray,
        step: float,
        s_front: float,
        ego: VehicleState,
    ) -> None:
        cfg = self.cfg
        n = len(xy)
        for sg in perception.signs:
            if sg.type not in (SignType.STOP, SignType.YIELD):
                continue
            d2 = (xy[:, 0] - sg.x) ** 2 + (xy[:, 1] - sg.y) ** 2
            k = int(np.argmin(d2))
            if not sign_for_lane(route, xy, k, sg.x, sg.y, cfg.sign_lateral_max_m):
                continue  # a sign for another street, or the opposite lane's
            inside = np.flatnonzero(route.junction[k:n] >= 0)
            if len(inside) == 0 or inside[0] * step > cfg.sign_to_line_max_m:
                continue
            key = round(route.s0_m + (k + int(inside[0])) * step, 1)
            known = [other for other in self._sign_lines if abs(key - other) < 3.0]
            if not known:
                self._sign_lines[key] = sg.type
            elif sg.type == SignType.STOP and key - route.s0_m > s_front:
                # where the signs read for one line disagree, stop wins over yield while the
                # line is ahead, as in the rule planner (a stop sign boxed twice, once "yield")
                for other in known:
                    self._sign_lines[other] = SignType.STOP
        for key in list(self._sign_lines):
            dist = key - route.s0_m - s_front
            if dist < -10.0:
                del self._sign_lines[key]
                self._stood_at.discard(key)
            elif ego.speed < cfg.stopped_speed_mps and dist < cfg.stood_within_m:
                self._stood_at.add(key)

    def _next_sign(self, route: RouteAhead, s_front: float) -> tuple[float, SignType, float] | None:
        best = None
        for key, kind in self._sign_lines.items():
            dist = key - route.s0_m - s_front
            if dist > -5.0 and (best is None or dist < best[2]):
                best = (key, kind, dist)
        return best

    @staticmethod
    def _junction_id_at(route: RouteAhead, key: float) -> int:
        k = round((key - route.s0_m) / route.step_m)
        if 0 <= k < len(route.junction):
            return int(route.junction[k])
        return -1

    def _junction_clear(self, objs: list, pts: FloatArray) -> bool:
        if len(pts) == 0:
            return True
        centre = pts.mean(axis=0)
        radius = float(np.max(np.hypot(*(pts - centre).T))) + self.cfg.junction_zone_m
        return not any(
            o.kind == ActorKind.VEHICLE
            and o.speed >= 0.5
            and math.hypot(o.x - centre[0], o.y - centre[1]) < radius
            for o in objs
        )


def _yaw_rate(yaw: FloatArray, step: float) -> FloatArray:
    """Curvature ``(n,)`` (1/m) of a centreline from its headings ``(n,)`` sampled every ``step``:
    ``np.gradient`` of the unwrapped heading, smoothed over 5 samples (sampled centrelines have
    small kinks at segment joins)."""
    n = len(yaw)
    if n <= 2:
        return np.zeros(n)
    d = np.remainder(np.diff(yaw) + np.pi, 2 * np.pi) - np.pi  # (n-1,) wrapped steps
    g = np.empty(n)
    g[1:-1] = (d[1:] + d[:-1]) / (2.0 * step)
    g[0], g[-1] = d[0] / step, d[-1] / step
    if n >= 5:
        g = np.convolve(g, np.full(5, 0.2), mode="same")
    return g


def _project(xy: FloatArray, step: float, pts: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Route distance ``(M,)`` (m, from ``xy[0]``) and signed offset ``(M,)`` (m, left) of
    ego-frame points ``(M, 2)`` on the polyline ``xy`` ``(N, 2)`` sampled every ``step``."""
    d2 = ((pts[:, None, :] - xy[None, :, :]) ** 2).sum(-1)  # (M, N)
    k = np.minimum(np.argmin(d2, axis=1), len(xy) - 2)  # (M,) segment start
    a, b = xy[k], xy[k + 1]
    t = b - a
    seg = np.maximum(np.hypot(t[:, 0], t[:, 1]), 1e-9)
    rel = pts - a
    along = (rel[:, 0] * t[:, 0] + rel[:, 1] * t[:, 1]) / seg
    lateral = (t[:, 0] * rel[:, 1] - t[:, 1] * rel[:, 0]) / seg
    return k * step + along, lateral


def _pedestrian_ahead(
    o: DetectedObject, xy: FloatArray, step: float, predict_s: tuple[float, ...]
) -> tuple[FloatArray, FloatArray]:
    """Route distance and offset of where pedestrian ``o`` will be at each of ``predict_s``,
    walking straight on."""
    preds = np.array(
        [
            (o.x + o.speed * math.cos(o.yaw) * t, o.y + o.speed * math.sin(o.yaw) * t)
            for t in predict_s
        ]
    )
    return _project(xy, step, preds)


def _extent_on_path(
    o: DetectedObject, xy: FloatArray, step: float, s: float
) -> tuple[float, float, float]:
    """``o``'s heading relative to the path at route distance ``s`` (rad), and its half
    extents across and along the path (m): a car standing across the lane is long across it."""
    k = min(int(max(s, 0.0) / step), len(xy) - 2)
    t = xy[k + 1] - xy[k]
    rel = math.remainder(o.yaw - math.atan2(t[1], t[0]), 2 * math.pi)
    across = abs(math.remainder(rel, math.pi)) > math.pi / 4
    half = o.length / 2 if across else o.width / 2
    along = o.width / 2 if across else o.length / 2
    return rel, half, along


# ------------------------------------------------------------------------ safety envelope
@dataclass(frozen=True)
class EnvelopeSettings:
    """The longitudinal safety envelope (RSS's safe distance, Shalev-Shwartz et al. 2017),
    applied as a shield on the plan (Alshiekh et al. 2018): the planned speed never exceeds
    the speed from which the ego can still stop behind the object ahead on its planned path,
    assuming that object brakes at ``lead_decel_mps2`` from now on.

    The ego's side is what the slowest controller delivers: the MPC brakes at most at its
    comfort bound, 3 m/s², reached at its jerk bound, 4 m/s³, in 0.75 s; so ``ego_decel_mps2``
    is 3 and ``reaction_s`` 0.8 s (a 0.1 s decision period, 0.1 s perception delay, about
    0.4 s of the jerk ramp, and the actuators' lag). PID brakes harder; the bound holds for both.

    :param enabled: off: the action alone sets the speed (as before the envelope)
    :param reaction_s: the ego keeps its speed this long before it brakes
    :param ego_decel_mps2: the deceleration the ego is counted on to brake at
    :param lead_decel_mps2: the hardest the object ahead is assumed to brake
    :param min_gap_m: bumper gap left when both stand
    :param corridor_margin_m: clearance beside the ego that counts as "on the path"
    """

    enabled: bool = True
    reaction_s: float = 0.8
    ego_decel_mps2: float = 3.0
    lead_decel_mps2: float = 8.0
    min_gap_m: float = 4.0
    corridor_margin_m: float = 0.6


def safe_speed(gap_m: float, lead_speed_mps: float, cfg: EnvelopeSettings) -> float:
    """The largest ego speed ``v`` (m/s) from which the ego stops behind an object ``gap_m``
    ahead moving at ``lead_speed_mps`` that brakes at ``lead_decel_mps2`` right now: the ego
    drives ``v ρ`` in its reaction time, then brakes at ``b``, and must stop ``min_gap_m`` short
    of where the object stops::

        v ρ + v² / (2 b) ≤ gap − min_gap + v_lead² / (2 b_lead)
        v = −b ρ + sqrt((b ρ)² + 2 b · room)   (0 when room ≤ 0)
    """
    return float(_safe_speeds(np.array([gap_m]), lead_speed_mps, cfg)[0])


def _safe_speeds(gap_m: FloatArray, lead_speed_mps: float, cfg: EnvelopeSettings) -> FloatArray:
    b, rho = cfg.ego_decel_mps2, cfg.reaction_s
    lead_stop = max(lead_speed_mps, 0.0) ** 2 / (2.0 * cfg.lead_decel_mps2)
    room = gap_m - cfg.min_gap_m + lead_stop
    v = -b * rho + np.sqrt((b * rho) ** 2 + 2.0 * b * np.maximum(room, 0.0))
    return np.where(room > 0.0, v, 0.0)


def envelope_profile(
    obstacles: tuple[Obstacle, ...] | list[Obstacle],
    s: FloatArray,
    lateral: FloatArray,
    half_ego_m: float,
    ego_speed_mps: float,
    cfg: EnvelopeSettings,
) -> FloatArray:
    """The envelope's speed bound ``(n,)`` (m/s; ``inf`` where no object binds) at the route
    distances ``s`` ``(n,)`` the plan will reach: the least :func:`safe_speed` over the
    obstacles that the planned path (lateral offset ``lateral`` ``(n,)``) passes within
    ``half_ego_m + margin + their half width`` of, each predicted at its current speed while
    the ego covers ``s`` at ``ego_speed_mps`` (gap ``g − s (1 − v_obj / v_ego)``). So a standing
    object gives the braking curve to the point ``min_gap_m`` behind it, which a controller sees
    coming; an object as fast as the ego, a constant bound. Element 0 is the bound now. Lights,
    signs and yielding are not its business: they stay the policy's.

    Known gap (docs/planner.md): the lateral is looked up at the obstacle's centre on the plan,
    which is made again every decision from where the ego is; a policy that swerves late
    releases the bound before the ego has moved out, and can hit what it swerves around."""
    bound = np.full(len(s), np.inf)
    if not cfg.enabled:
        return bound
    v = max(ego_speed_mps, 0.1)
    for ob in obstacles:
        at = float(np.interp(ob.route_s_m, s, lateral))
        if abs(ob.d_m - at) < half_ego_m + cfg.corridor_margin_m + ob.half_width_m:
            gap = ob.gap_m - s * (1.0 - ob.speed_mps / v)
            bound = np.minimum(bound, _safe_speeds(gap, ob.speed_mps, cfg))
    return bound


# --------------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class ActionSettings:
    """How an action ``(3,)`` in [-1, 1] becomes a :class:`Plan`.

    ``action[0]`` is the target speed as a share of the active speed limit: -1 → 0 (a stop),
    +1 → the limit (``speed_margin`` beyond both ends, then clipped, so both are reachable
    without saturating the policy's output). ``action[1]`` is the lateral offset left of the
    route centreline, ``max_offset_m`` at ±1. ``action[2] > 0`` means "stop at the next stop
    line" (a light's or a stop/yield sign's, :attr:`ObservationEncoder.stop_line_m`): the plan
    then brings the front bumper to rest ``stop_before_line_m`` before it, braking at
    ``stop_decel_mps2`` or, when that is no longer enough, at what is needed (at most
    ``max_decel_mps2``); without a line ahead it does nothing (the speed channel can still stop:
    a stop with nothing to stop at, once the ego stands, would never end).
    Whether to stop is the policy's decision; where and how is geometry, as in a behaviour
    layer above a speed planner.

    The plan reaches the target speed with acceleration ``(target - v) / speed_time_s``, within
    ``[-max_decel_mps2, max_accel_mps2]``; it never asks for more lateral acceleration than
    ``max_lateral_accel_mps2`` on the path's curvature (a feasibility bound, not a decision).
    The offset moves from the ego's current one to the target along a smoothstep of
    ``max(offset_ramp_min_m, offset_ramp_s × speed)`` metres.
    """

    speed_margin: float = 0.05
    max_offset_m: float = 3.5
    speed_time_s: float = 0.5
    max_accel_mps2: float = 2.0
    max_decel_mps2: float = 6.0
    max_lateral_accel_mps2: float = 2.0
    curve_decel_mps2: float = 3.0
    stop_decel_mps2: float = 2.5  # under the 3 m/s² a yellow counts as stoppable at
    stop_before_line_m: float = 1.5
    offset_ramp_min_m: float = 12.0
    offset_ramp_s: float = 2.0
    free_accel_mps2: float = 1.0  # imitation: a plan accelerating this hard heads to its top speed
    horizon_m: float = 60.0
    horizon_s: float = 4.0
    envelope: EnvelopeSettings = field(default_factory=EnvelopeSettings)
    ego: VehicleParams = field(default_factory=VehicleParams)


class PlanMaker:
    """``make(action, route, ego, speed_limit_mps, t, frame, obstacles, stop_line_m) -> Plan``
    (pure: no state). The speed is bounded by the safety envelope (:func:`envelope_profile`)
    over ``obstacles`` (the encoder's :attr:`ObservationEncoder.obstacles`)."""

    def __init__(self, settings: ActionSettings = ActionSettings()) -> None:
        self.cfg = settings

    def target(self, action: NDArray[np.float32], limit_mps: float) -> tuple[float, float]:
        """Target speed (m/s) and lateral offset (m, left) an action asks for."""
        cfg = self.cfg
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        share = (float(a[0]) + 1.0) / 2.0 * (1.0 + 2.0 * cfg.speed_margin) - cfg.speed_margin
        return min(max(share, 0.0), 1.0) * limit_mps, float(a[1]) * cfg.max_offset_m

    @staticmethod
    def stops(action: NDArray[np.float32]) -> bool:
        """Whether an action asks to stop at the next stop line."""
        return float(np.asarray(action).reshape(-1)[2]) > 0.0

    def stop_profile(self, s: FloatArray, speed_mps: float, stop_line_m: float) -> FloatArray:
        """Speeds ``(n,)`` at route distances ``s`` (from the ego) that bring the ego to rest
        with its front bumper ``stop_before_line_m`` before a line ``stop_line_m`` ahead of it,
        at a constant deceleration: ``stop_decel_mps2`` or what the distance left needs, at most
        ``max_decel_mps2``."""
        cfg = self.cfg
        v = max(speed_mps, 0.0)
        room = stop_line_m - cfg.stop_before_line_m
        if room <= 0.0:
            return np.zeros(len(s))
        decel = min(max(cfg.stop_decel_mps2, v * v / (2.0 * room)), cfg.max_decel_mps2)
        out = np.sqrt(2.0 * decel * np.maximum(room - s, 0.0))
        if out[0] <= v + 1e-6:  # braking now: the first point leads by 0.5 s, as in braking
            out[0] = max(v - decel * 0.5, 0.0)
        return out

    def action_for(
        self,
        plan: Plan,
        route: RouteAhead,
        ego: VehicleState,
        limit_mps: float,
        stop: bool = False,
    ) -> NDArray[np.float32]:
        """The action whose plan is closest to ``plan`` (another planner's) right now: the
        target speed its acceleration over the next metres reaches in ``speed_time_s``, the
        offset its path has at the end of the offset ramp, and ``stop`` (stop at the next line)
        as ±1. Used to imitate the rule planner (its plan without the lines, and whether it
        stops for one).

        A plan that accelerates at ``free_accel_mps2`` or more is heading for the highest speed
        it reaches (from a standstill, the limit): that speed is the target, and this plan
        maker accelerates towards it at its comfort bound. Labelled ``v + a · speed_time_s``
        instead, every launch was a target a little above the current speed, which the
        student learned as "a little faster than now" and undershot: it pulled away from
        lights slower than the teacher and caught more red phases."""
        cfg = self.cfg
        v = ego.speed
        speed = plan.speed
        a2 = 1.0 if stop else -1.0
        if len(speed) < 2 or limit_mps <= 0.0:
            return np.array([-1.0, 0.0, a2], dtype=np.float32)
        if speed[0] < v - 1e-6:  # braking: the rule planner's first point is v + a·0.5 s
            target = float(speed[0])
        else:
            k = min(max(1, round(max(0.5 * v, 2.0) / plan.step_m)), len(speed) - 1)
            accel = (float(speed[k]) ** 2 - v**2) / (2.0 * k * plan.step_m)
            target = v + accel * cfg.speed_time_s
            if accel >= cfg.free_accel_mps2:
                target = max(target, float(np.max(speed)))
        share = min(max(target / limit_mps, 0.0), 1.0)
        a0 = (
            -1.0
            if target < 0.05
            else (share + cfg.speed_margin) / (1 + 2 * cfg.speed_margin) * 2 - 1
        )
        # offset of the plan's path from the route at the end of the ramp
        n = min(len(plan.path), len(route.xy))
        ramp = max(cfg.offset_ramp_min_m, cfg.offset_ramp_s * v)
        k = min(round(ramp / route.step_m), n - 2)
        if k < 0:
            return np.array([a0, 0.0, a2], dtype=np.float32)
        t = route.xy[k + 1] - route.xy[k]
        norm = max(float(np.hypot(t[0], t[1])), 1e-9)
        d = plan.path[k] - route.xy[k]
        offset = float(t[0] * d[1] - t[1] * d[0]) / norm
        a1 = min(max(offset / cfg.max_offset_m, -1.0), 1.0)
        return np.array([min(max(a0, -1.0), 1.0), a1, a2], dtype=np.float32)

    def make(
        self,
        action: NDArray[np.float32],
        route: RouteAhead,
        ego: VehicleState,
        limit_mps: float,
        t: float,
        frame: int,
        obstacles: tuple[Obstacle, ...] | list[Obstacle] = (),
        stop_line_m: float = math.inf,
    ) -> Plan:
        """:param stop_line_m: front bumper to the next stop line (the encoder's
        :attr:`ObservationEncoder.stop_line_m`); used when the action stops"""
        cfg = self.cfg
        origin = (ego.x, ego.y, ego.yaw)
        if len(route.xy) < 2:
            path = np.array([[0.0, 0.0], [1.0, 0.0]])
            return Plan(t, frame, path, np.zeros(2), 1.0, cfg.horizon_s, origin)
        v_target, offset = self.target(action, limit_mps)
        n = max(2, min(len(route.xy), int(cfg.horizon_m / route.step_m) + 1))
        base = route.xy[:n]
        s = np.arange(n, dtype=np.float64) * route.step_m  # (n,)
        # lateral: smoothstep from the current offset to the target
        current = -float(base[0, 1])
        ramp_len = max(cfg.offset_ramp_min_m, cfg.offset_ramp_s * ego.speed)
        r = np.clip(s / ramp_len, 0.0, 1.0)
        lateral = current + (offset - current) * (3 * r**2 - 2 * r**3)
        path = shift_left(base, lateral)
        # the safety envelope bounds the plan, the policy picks any speed below it
        envelope = envelope_profile(
            obstacles, s, lateral, cfg.ego.width_m / 2, ego.speed, cfg.envelope
        )
        v_target = min(v_target, float(envelope[0]))
        # longitudinal: a first-order approach to the target within the comfort bounds
        accel = (v_target - ego.speed) / cfg.speed_time_s
        accel = min(max(accel, -cfg.max_decel_mps2), cfg.max_accel_mps2)
        v2 = ego.speed**2 + 2.0 * accel * s
        speed = np.sqrt(np.maximum(v2, 0.0))
        speed = np.minimum(speed, v_target) if accel >= 0 else np.maximum(speed, v_target)
        if accel < 0:
            speed[0] = max(ego.speed + accel * 0.5, v_target, 0.0)
        # the curvature bound, and braking to it at the comfort deceleration beforehand; the
        # path's curvature is the route's plus the offset ramp's second derivative
        curv = _yaw_rate(route.yaw[:n], route.step_m)
        inside = (r > 0.0) & (r < 1.0)
        curv = np.abs(curv) + np.abs(offset - current) * np.abs(6 - 12 * r) * inside / ramp_len**2
        v_curve2 = cfg.max_lateral_accel_mps2 / np.maximum(curv, 1e-4)  # (n,) (m/s)²
        # min over j >= i of sqrt(v_j² + 2 b (s_j - s_i)) = sqrt(suffix-min(v² + 2 b s) - 2 b s_i)
        b2 = 2.0 * cfg.curve_decel_mps2
        q = np.minimum.accumulate((v_curve2 + b2 * s)[::-1])[::-1]
        speed = np.minimum(speed, np.sqrt(np.maximum(q - b2 * s, 0.0)))
        speed = np.minimum(speed, envelope)
        if self.stops(action) and math.isfinite(stop_line_m):
            speed = np.minimum(speed, self.stop_profile(s, ego.speed, stop_line_m))
        return Plan(t, frame, path, speed, route.step_m, cfg.horizon_s, origin)
