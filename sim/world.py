"""The embedded world: synchronous, deterministic, headless, fast.

One ``step(control)`` advances everything by ``dt`` in a fixed order (as highway-env does):

1. the ego integrates the control (kinematic bicycle with actuator lag);
2. traffic lights advance; scripted events fire;
3. traffic vehicles move (IDM along their paths, right of way at junctions);
4. pedestrians move; vehicles at dead ends respawn elsewhere;
5. collisions and infractions are checked; the observation is built.

All randomness comes from generators spawned from the episode's seed, one per concern, so adding
traffic does not change the route drawn for the same seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sim.dynamics import bicycle_step
from sim.errors import ScenarioError
from sim.events import EventMonitor, EventSettings, event_dict
from sim.geometry import overlaps
from sim.lights import TrafficLights
from sim.map import KMH, RoadMap, project_s
from sim.messages import (
    ActorKind,
    ActorsGT,
    Control,
    Event,
    GroundTruth,
    LightGT,
    LightState,
    Observation,
    SignGT,
    SignType,
    VehicleParams,
    VehicleState,
)
from sim.metrics import RouteScore, score_route
from sim.pedestrians import PED_HEIGHT_M, PED_LENGTH_M, PED_WIDTH_M, Pedestrians, crossing_at
from sim.route import route_ahead, route_for
from sim.scenario import (
    LeadVehicleBrakes,
    ParkedVehicle,
    PedestrianCrossing,
    Scenario,
)
from sim.traffic import JunctionClaim, Traffic

log = logging.getLogger(__name__)

# (length, width, height) m of the vehicle types traffic is drawn from
VEHICLE_TYPES = ((4.5, 1.9, 1.5), (3.9, 1.8, 1.5), (4.9, 2.0, 1.8), (5.3, 2.1, 2.2))
PROP_SIZE_M = 0.4  # footprint of a sign post or light pole
_EMPTY = np.zeros(0, dtype=np.int64)
_PED_RADIUS = 0.5 * math.hypot(PED_LENGTH_M, PED_WIDTH_M)


@dataclass(frozen=True)
class WorldSettings:
    ego: VehicleParams = field(default_factory=VehicleParams)
    events: EventSettings = field(default_factory=EventSettings)
    min_traffic_spacing_m: float = 12.0


@lru_cache(maxsize=8)
def load_map(path: str) -> RoadMap:
    """Parse an OpenDRIVE file once per process."""
    return RoadMap.from_file(Path(path))


@dataclass(frozen=True)
class EpisodeResult:
    """What a finished (or stopped) episode scored; ``to_dict`` is ``result.json``."""

    scenario: str
    seed: int
    score: RouteScore
    infractions: tuple[dict[str, Any], ...]
    events: tuple[dict[str, Any], ...]
    steps: int
    sim_time_s: float
    trajectory_sha256: str
    map: str

    def to_dict(self) -> dict[str, Any]:
        s = self.score.to_dict()
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "map": self.map,
            "driving_score": s["driving_score"],
            "route_completion": s["route_completion"],
            "infraction_penalty": s["infraction_penalty"],
            "status": s["status"],
            "route_length_m": s["route_length_m"],
            "infraction_counts": s["infraction_counts"],
            "outside_route_lanes_pct": s["outside_route_lanes_pct"],
            "min_speed_pcts": s["min_speed_pcts"],
            "infractions": list(self.infractions),
            "events": list(self.events),
            "steps": self.steps,
            "sim_time_s": self.sim_time_s,
            "trajectory_sha256": self.trajectory_sha256,
        }


class EmbeddedWorld:
    """The default backend. ``reset(scenario, seed)`` then ``step(control)`` until ``done``."""

    backend = "embedded"

    def __init__(self, settings: WorldSettings = WorldSettings()) -> None:
        self.cfg = settings
        self.scenario: Scenario | None = None

    # ------------------------------------------------------------------------------- episode
    def reset(self, scenario: Scenario, seed: int) -> Observation:
        self.scenario = scenario
        self.seed = seed
        self.dt = scenario.dt
        self.map = load_map(str(scenario.map_path()))
        rng_route, rng_traffic, rng_peds, rng_lights, self.rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
        )
        self.route = route_for(self.map, scenario.route, rng_route)
        self.t = 0.0
        self.frame = 0
        self.ego = np.array([*self.route.xy[0], self.route.yaw[0], scenario.ego.speed_mps, 0, 0])
        self.lights = TrafficLights(self.map, rng_lights)
        self.lights.update(0.0)
        self.traffic = Traffic(self.map, self.lights)
        self.peds = Pedestrians()
        self._next_id = 1000
        self._scripted: list[_Script] = []
        self._spawn_scripted(scenario)
        self._spawn_traffic(rng_traffic, scenario.traffic.vehicles)
        self._spawn_pedestrians(rng_peds, scenario.traffic.pedestrians)
        timeout = scenario.timeout_s or (
            300.0 + self.route.length_m / (0.1 * float(np.mean(self.route.speed_limit_mps)))
        )
        self.monitor = EventMonitor(self.map, self.route, self.lights, timeout, self.cfg.events)
        self._props = self._static_props()
        self._signs = tuple(
            SignGT(lm.id, SignType(int(lm.type)), lm.value, lm.x, lm.y, lm.z, lm.yaw)
            for lm in self.map.signs
        )
        # one immutable LightGT per (head, state), so observing costs no allocation
        self._light_gt = [
            {
                int(st): LightGT(
                    lm.id,
                    ap.junction,
                    st,
                    lm.x,
                    lm.y,
                    lm.z,
                    lm.yaw,
                    ap.stop_x,
                    ap.stop_y,
                    ap.stop_yaw,
                )
                for st in LightState
            }
            for lm, ap in zip(self.lights.landmarks, self.lights.approaches, strict=True)
        ]
        self._actor_static: tuple[np.ndarray, ...] | None = None
        self._light_states: list[int] | None = None
        self._lights_obs: tuple[Any, ...] = ()
        self._front = self._front_point()
        self._hash = hashlib.sha256()
        self._record_state()
        self._last_events: tuple = ()
        self._cameras: list[Any] = []
        if scenario.sensors:  # rendering costs only where a scenario asks for cameras
            from sim.camera import Camera

            self._cameras = Camera.for_scenario(scenario, self.map, seed)
        return self._observe()

    @property
    def done(self) -> bool:
        return self.monitor.done

    def step(self, control: Control) -> Observation:
        dt = self.dt
        # 1. ego
        self.ego = bicycle_step(self.ego, control.accel, control.steer, self.cfg.ego, dt)
        self.t = round(self.t + dt, 9)
        self.frame += 1
        # 2. lights and scripts
        self.lights.update(self.t)
        for script in self._scripted:
            script.update(self)
        # 3. traffic
        ego_c = self._ego_box()
        self.traffic.step(dt, self._road_obstacles, self._ego_claim)
        # 4. pedestrians and respawns
        self.peds.step(dt, self.rng, self._vehicles)
        for i in self.traffic.at_path_end():
            self._respawn(int(i))
        # 5. events
        front_prev, self._front = self._front, self._front_point()
        ids, kinds = self._collisions(ego_c)
        events = self.monitor.update(
            self.t,
            self.frame,
            front_prev,
            self._front,
            (ego_c[0], ego_c[1]),
            self.ego[2],
            self.ego[3],
            ids,
            kinds,
            self.traffic.v[self.traffic.mode == 0] if self.traffic.scripted else self.traffic.v,
        )
        self._last_events = tuple(events)
        self._record_state()
        return self._observe()

    def result(self) -> EpisodeResult:
        """Score of the episode so far (final once ``done``)."""
        assert self.scenario is not None
        mon = self.monitor
        goal = self.route.xy[-1]
        ego_c = self._ego_box()
        if not mon.done:
            mon.finish(self.t, self.frame, ego_c[0], ego_c[1], mon.events)
        score = score_route(
            self.route.length_m,
            mon.route_completion,
            math.hypot(goal[0] - ego_c[0], goal[1] - ego_c[1]),
            mon.events,
            mon.outside_route_lanes_pct,
            mon.min_speed_pcts,
        )
        scored = {"speeding"}
        infractions = tuple(event_dict(e) for e in mon.events if e.type not in scored)
        informational = tuple(event_dict(e) for e in mon.events if e.type in scored)
        return EpisodeResult(
            self.scenario.name,
            self.seed,
            score,
            infractions,
            informational,
            self.frame,
            round(self.t, 6),
            self._hash.hexdigest(),
            self.map.name,
        )

    def close(self) -> None:
        """Nothing to release: the embedded world holds no external resources."""

    # ----------------------------------------------------------------------------- spawning
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _spawn_traffic(self, rng: np.random.Generator, n: int) -> None:
        lo, hi = self.scenario.traffic.speed_factor if self.scenario else (0.7, 1.0)
        for _ in range(n):
            place = self._free_place(rng)
            if place is None:
                log.warning("could place only %d of %d traffic vehicles", self.traffic.n, n)
                break
            seg_i, s_on = place
            length, width, height = VEHICLE_TYPES[int(rng.integers(len(VEHICLE_TYPES)))]
            factor = float(rng.uniform(lo, hi))
            limit = float(self.map.speed_limits_kmh(seg_i)[0]) * KMH
            self.traffic.add(
                rng,
                self._new_id(),
                [seg_i],
                s_on,
                0.5 * factor * limit,
                length,
                width,
                height,
                factor,
            )

    def _free_place(self, rng: np.random.Generator) -> tuple[int, float] | None:
        segs = [s for s in self.map.segments if s.junction < 0 and s.length > 15.0]
        weights = np.array([s.length for s in segs])
        ego_c = self._ego_box()
        for _ in range(200):
            seg = segs[int(rng.choice(len(segs), p=weights / weights.sum()))]
            s_on = float(rng.uniform(5.0, seg.length - 8.0))
            x, y, _ = self.map.lane_point(seg.index, s_on)
            if math.hypot(x - ego_c[0], y - ego_c[1]) < self.scenario_min_gap():
                continue
            if (
                self.traffic.n
                and np.min(np.hypot(self.traffic.x - x, self.traffic.y - y))
                < self.cfg.min_traffic_spacing_m
            ):
                continue
            return seg.index, s_on
        return None

    def scenario_min_gap(self) -> float:
        return self.scenario.traffic.min_distance_from_ego_m if self.scenario else 30.0

    def _respawn(self, i: int) -> None:
        place = self._free_place(self.rng)
        if place is None:
            return
        t = self.traffic
        t.chains[i] = [place[0]]
        t.chain_s0[i] = place[1]
        t.dead_end[i] = False
        t.s[i] = 0.0
        t.holding[i] = -1
        t.hold_from[i] = -1
        t.stop_timer[i] = 0.0
        t._fill_path(i, self.rng)
        t._update_pose()

    def _spawn_pedestrians(self, rng: np.random.Generator, n: int) -> None:
        segs = [s for s in self.map.segments if s.junction < 0 and s.length > 30.0]
        if not segs or n == 0:
            return
        weights = np.array([s.length for s in segs])
        ego_c = self._ego_box()
        cfg = self.peds.cfg
        placed = 0
        for _ in range(20 * n):
            if placed == n:
                break
            seg = segs[int(rng.choice(len(segs), p=weights / weights.sum()))]
            s_on = float(rng.uniform(10.0, seg.length - 10.0))
            crossing = crossing_at(self.map, seg.index, s_on)
            cx, cy = (crossing.x0 + crossing.x1) / 2, (crossing.y0 + crossing.y1) / 2
            if math.hypot(cx - ego_c[0], cy - ego_c[1]) < 40.0:
                continue
            self.peds.add(
                self._new_id(),
                crossing,
                bool(rng.integers(2)),
                float(rng.uniform(*cfg.speed_range_mps)),
                float(rng.uniform(0.0, cfg.wait_range_s[1])),
            )
            placed += 1

    def _spawn_scripted(self, scenario: Scenario) -> None:
        for ev in scenario.events:
            if isinstance(ev, LeadVehicleBrakes):
                self._scripted.append(_LeadBrakes(self, ev))
            elif isinstance(ev, PedestrianCrossing):
                self._scripted.append(_Crossing(self, ev))
            elif isinstance(ev, ParkedVehicle):
                self._scripted.append(_Parked(self, ev))

    def _route_place(self, route_s: float) -> tuple[list[int], float]:
        """The route's segment chain from route distance ``route_s``, and the s on its first."""
        if route_s >= self.route.length_m:
            raise ScenarioError(
                f"{self.scenario.path if self.scenario else ''}: events: route distance "
                f"{route_s:g} m is beyond the route's length {self.route.length_m:.0f} m"
            )
        i = int(np.searchsorted(self.route.s, route_s))
        seg_i = int(self.route.segment[i])
        s_on = project_s(self.map.segments[seg_i], self.route.xy[i])
        chain = [seg_i]
        for k in self.route.segment[i:].tolist():
            if k != chain[-1]:
                chain.append(int(k))
        return chain, s_on

    def _static_props(self) -> np.ndarray:
        """Sign posts and light poles: ``(P, 6)`` id, x, y, yaw, length, width."""
        rows = [(lm.id, lm.x, lm.y, 0.0, PROP_SIZE_M, PROP_SIZE_M) for lm in self.map.signs]
        rows += [(lm.id, lm.x, lm.y, 0.0, PROP_SIZE_M, PROP_SIZE_M) for lm, _ in self.map.lights]
        uniq = {int(r[0]): r for r in rows}
        return np.array(list(uniq.values()), dtype=np.float64).reshape(-1, 6)

    # ---------------------------------------------------------------------------------- ego
    def _ego_box(self) -> np.ndarray:
        """``(5,)`` centre x, y, yaw, length, width of the ego."""
        p = self.cfg.ego
        x, y, yaw = self.ego[0], self.ego[1], self.ego[2]
        off = p.center_offset_m
        return np.array(
            [x + off * math.cos(yaw), y + off * math.sin(yaw), yaw, p.length_m, p.width_m]
        )

    def _front_point(self) -> tuple[float, float]:
        p = self.cfg.ego
        d = p.length_m - p.rear_overhang_m
        return (self.ego[0] + d * math.cos(self.ego[2]), self.ego[1] + d * math.sin(self.ego[2]))

    def _road_obstacles(self) -> np.ndarray:
        """``(M, 5)`` x, y, heading, speed, half-length of the ego and pedestrians on the road."""
        c = self._ego_box()
        pd = self.peds
        on_road = pd.on_road().nonzero()[0]
        rows = np.empty((1 + len(on_road), 5))
        rows[0] = (c[0], c[1], self.ego[2], self.ego[3], self.cfg.ego.length_m / 2)
        rows[1:, 0] = pd.x[on_road]
        rows[1:, 1] = pd.y[on_road]
        rows[1:, 2] = pd.yaw[on_road]
        rows[1:, 3] = pd.velocity[on_road]
        rows[1:, 4] = PED_LENGTH_M / 2
        return rows

    def _vehicles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions and speeds of every vehicle, the ego included (for pedestrians' gaps)."""
        c = self._ego_box()
        return (
            np.append(self.traffic.x, c[0]),
            np.append(self.traffic.y, c[1]),
            np.append(self.traffic.v, self.ego[3]),
        )

    def _ego_claim(self) -> JunctionClaim | None:
        c = self._ego_box()
        wp = self.map.driving_lane_at(c[0], c[1])
        if wp is not None and wp.is_junction:
            return JunctionClaim(wp.junction_id, -1)
        idx = self.monitor.route_index
        seg = int(self.route.segment[idx])
        ap = self.map.approaches.get(seg)
        if ap is None:
            return None
        fx, fy = self._front
        if math.hypot(ap.stop_x - fx, ap.stop_y - fy) > 4.0:
            return None
        if self.lights.approach_state(seg) == LightState.RED:
            return None
        return JunctionClaim(ap.junction, seg)

    def _collisions(self, ego_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids and kinds of the actors and props whose boxes overlap the ego's.

        Bounding circles rule out almost every pair; the separating-axis test runs on the rest.
        """
        t, pd = self.traffic, self.peds
        r_ego = 0.5 * math.hypot(ego_c[3], ego_c[4])
        ids, kinds = [], []
        d2 = (t.x - ego_c[0]) ** 2 + (t.y - ego_c[1]) ** 2
        near = (d2 < (r_ego + t.half_diagonal) ** 2).nonzero()[0]
        if len(near):
            hit = overlaps(ego_c, t.boxes()[near])
            ids.append(t.ids[near][hit])
            kinds.append(np.full(int(hit.sum()), int(ActorKind.VEHICLE)))
        d2 = (pd.x - ego_c[0]) ** 2 + (pd.y - ego_c[1]) ** 2
        near = (d2 < (r_ego + _PED_RADIUS) ** 2).nonzero()[0]
        if len(near):
            boxes = np.empty((len(near), 5))
            boxes[:, 0] = pd.x[near]
            boxes[:, 1] = pd.y[near]
            boxes[:, 2] = pd.yaw[near]
            boxes[:, 3] = PED_LENGTH_M
            boxes[:, 4] = PED_WIDTH_M
            hit = overlaps(ego_c, boxes)
            ids.append(pd.ids[near][hit])
            kinds.append(np.full(int(hit.sum()), int(ActorKind.PEDESTRIAN)))
        props = self._props
        d2 = (props[:, 1] - ego_c[0]) ** 2 + (props[:, 2] - ego_c[1]) ** 2
        near = (d2 < (r_ego + PROP_SIZE_M) ** 2).nonzero()[0]
        if len(near):
            hit = overlaps(ego_c, props[near, 1:])
            ids.append(props[near, 0][hit].astype(np.int64))
            kinds.append(np.zeros(int(hit.sum()), dtype=np.int64))
        if not ids:
            return _EMPTY, _EMPTY
        return np.concatenate(ids), np.concatenate(kinds)

    def _record_state(self) -> None:
        self._hash.update(self.ego.tobytes())

    # ------------------------------------------------------------------------- observation
    def ego_state(self) -> VehicleState:
        e = self.ego
        return VehicleState(
            self.t,
            self.frame,
            float(e[0]),
            float(e[1]),
            float(e[2]),
            float(e[3]),
            float(e[4]),
            float(e[5]),
        )

    def _observe(self) -> Observation:
        ego = self.ego_state()
        ahead = route_ahead(self.route, self.monitor.route_index, ego)
        t, pd = self.traffic, self.peds
        if self._actor_static is None:  # who the actors are and their sizes never change
            self._actor_static = (
                np.concatenate([t.ids, pd.ids]),
                np.concatenate(
                    [np.full(t.n, int(ActorKind.VEHICLE)), np.full(pd.n, int(ActorKind.PEDESTRIAN))]
                ),
                np.concatenate([t.length, np.full(pd.n, PED_LENGTH_M)]),
                np.concatenate([t.width, np.full(pd.n, PED_WIDTH_M)]),
                np.concatenate([t.height, np.full(pd.n, PED_HEIGHT_M)]),
            )
        ids, kinds, length, width, height = self._actor_static
        actors = ActorsGT(
            id=ids,
            kind=kinds,
            x=np.concatenate([t.x, pd.x]),
            y=np.concatenate([t.y, pd.y]),
            yaw=np.concatenate([t.yaw, pd.yaw]),
            speed=np.concatenate([t.v, pd.velocity]),
            length=length,
            width=width,
            height=height,
        )
        states = self.lights.state.tolist()
        if states != self._light_states:  # lights change every few seconds, not every tick
            self._light_states = states
            self._lights_obs = tuple(self._light_gt[i][st] for i, st in enumerate(states))
        lights = self._lights_obs
        obs = Observation(
            self.t,
            self.frame,
            ego,
            ahead,
            self._last_events,
            GroundTruth(actors, self._signs, lights),
        )
        if self._cameras:
            obs = dataclasses.replace(obs, sensors={c.name: c.sense(obs) for c in self._cameras})
        return obs


# ---------------------------------------------------------------------------- scripted events
class _Script:
    def update(self, world: EmbeddedWorld) -> None:
        raise NotImplementedError


class _LeadBrakes(_Script):
    def __init__(self, world: EmbeddedWorld, ev: LeadVehicleBrakes) -> None:
        self.ev = ev
        length, width, height = VEHICLE_TYPES[0]
        p = world.cfg.ego
        start = p.length_m - p.rear_overhang_m + ev.gap_m + length / 2
        chain, s_on = world._route_place(start)
        self.index = world.traffic.n
        world.traffic.add(
            world.rng,
            world._new_id(),
            chain,
            s_on,
            ev.speed_mps,
            length,
            width,
            height,
            1.0,
            mode=2,
            cruise=ev.speed_mps,
        )
        self.phase = "cruise"
        self.stopped_at = 0.0

    def update(self, world: EmbeddedWorld) -> None:
        tr, i = world.traffic, self.index
        if self.phase == "cruise" and world.monitor.progress_m >= self.ev.brake_at_route_m:
            self.phase = "braking"
            tr.forced_accel[i] = -self.ev.decel_mps2
        elif self.phase == "braking" and tr.v[i] <= 0.0:
            self.phase, self.stopped_at = "stopped", world.t
            tr.forced_accel[i] = 0.0
        elif self.phase == "stopped" and world.t - self.stopped_at >= self.ev.stop_s:
            self.phase = "done"
            tr.forced_accel[i] = math.nan


class _Crossing(_Script):
    def __init__(self, world: EmbeddedWorld, ev: PedestrianCrossing) -> None:
        self.ev = ev
        chain, s_on = world._route_place(ev.at_route_m)
        crossing = crossing_at(world.map, chain[0], s_on)
        self.index = world.peds.n
        world.peds.add(
            world._new_id(),
            crossing,
            ev.from_side == "right",
            ev.speed_mps,
            math.inf,
            scripted=True,
        )
        self.started = False

    def update(self, world: EmbeddedWorld) -> None:
        if not self.started and world.monitor.progress_m >= (
            self.ev.at_route_m - self.ev.trigger_distance_m
        ):
            self.started = True
            world.peds.start(self.index)


class _Parked(_Script):
    def __init__(self, world: EmbeddedWorld, ev: ParkedVehicle) -> None:
        self.ev = ev
        chain, s_on = world._route_place(ev.at_route_m)
        length, width, height = VEHICLE_TYPES[0]
        world.traffic.add(
            world.rng,
            world._new_id(),
            chain[:1],
            s_on,
            0.0,
            length,
            width,
            height,
            1.0,
            mode=1,
            lateral=ev.lateral_offset_m,
        )
        self.approached_at: float | None = None
        self.settled = False

    def update(self, world: EmbeddedWorld) -> None:
        if self.settled:
            return
        progress = world.monitor.progress_m
        if self.approached_at is None and progress >= self.ev.at_route_m - 50.0:
            self.approached_at = world.t
        if progress >= self.ev.at_route_m + 10.0:
            self.settled = True
        elif (
            self.approached_at is not None and world.t - self.approached_at > self.ev.clear_within_s
        ):
            self.settled = True
            ego = world._ego_box()
            world.monitor.events.append(
                _scenario_timeout(
                    world,
                    ego[0],
                    ego[1],
                    f"did not pass the parked vehicle in {self.ev.clear_within_s:g} s",
                )
            )


def _scenario_timeout(world: EmbeddedWorld, x: float, y: float, detail: str) -> Event:
    return Event("scenario_timeouts", world.t, world.frame, x, y, detail=detail)
