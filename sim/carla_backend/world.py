"""The CARLA backend: the scenario files, stack and scoring of the embedded world on a CARLA
0.9.16 server, behind the same :class:`~sim.backend.World` calls.

``reset(scenario, seed)``:

1. connect (with the connection's timeout) and check the server's version;
2. load the map: a CARLA town when the scenario's ``.xodr`` is named after one the server has
   (``Town03.xodr``, exported with ``world.get_map().to_opendrive()``), otherwise the ``.xodr``
   itself in OpenDRIVE standalone mode (``client.generate_opendrive_world``); a map already
   loaded is kept;
3. synchronous mode with the scenario's ``dt``; the Traffic Manager synchronous and seeded with
   the episode's seed; the walkers' seed; the weather;
4. spawn the ego (role ``hero``) at the route's start, its collision and lane-invasion sensors and
   the scenario's cameras, the background traffic (Traffic Manager autopilot) and walkers
   (CARLA's walker AI; :mod:`sim.carla_backend.population`) and the scripted actors
   (:mod:`sim.carla_backend.scripts`).

The route, the speed limits, the stop lines and every check of the score come from the same
OpenDRIVE file through :class:`~sim.map.RoadMap` and :class:`~sim.events.EventMonitor`, as in
the embedded world; CARLA supplies the ego's motion, the traffic, the light states and the
collisions. Conversions to our frame happen in :mod:`sim.carla_backend.convert` only.

Faults become :class:`~sim.carla_backend.client.CarlaError` lines. On every exit path (an error,
``close``, Ctrl-C) the actors this world spawned are destroyed and the server's settings that
were found at the first ``reset`` are restored; the episode's result so far stays available from
``result``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import carla
import numpy as np

from sim.carla_backend import convert
from sim.carla_backend.client import (
    CarlaError,
    CarlaServerRestarted,
    CarlaTimeoutError,
    ClientFactory,
    classify,
    connect,
)
from sim.carla_backend.lights import ServerLights
from sim.carla_backend.observe import (
    Tracked,
    actors_gt,
    box_targets,
    lights_gt,
    sign_of,
)
from sim.carla_backend.population import spawn_traffic, spawn_walkers
from sim.carla_backend.scripts import Script, make_scripts
from sim.carla_backend.sensors import CameraRig, EventSensors
from sim.carla_backend.settings import CarlaSettings, EgoGeometry, substeps
from sim.errors import ScenarioError
from sim.events import EventMonitor, event_dict
from sim.messages import (
    ActorKind,
    CameraFrame,
    Control,
    Event,
    GroundTruth,
    Observation,
    SignGT,
    SignType,
    VehicleParams,
    VehicleState,
)
from sim.metrics import score_route
from sim.route import route_ahead, route_for
from sim.scenario import Scenario
from sim.world import EpisodeResult, load_map

log = logging.getLogger(__name__)

INFORMATIONAL = frozenset({"speeding", "lane_invasion", "simulation_error"})


class CarlaWorld:
    """The CARLA backend. ``reset(scenario, seed)`` then ``step(control)`` until ``done``."""

    backend = "carla"

    def __init__(
        self, settings: CarlaSettings | None = None, client_factory: ClientFactory | None = None
    ) -> None:
        """:param client_factory: makes the client from (host, port); ``carla.Client`` unless a
        test gives its double"""
        self.cfg = settings or CarlaSettings()
        self._factory = client_factory
        self.client: Any = None
        self.world: Any = None
        self.tm: Any = None
        self.scenario: Scenario | None = None
        self.error: CarlaError | None = None  # the server fault that ended the episode
        self._stopped: str | None = None  # why the episode ended early (a fault, Ctrl-C)
        self._original_settings: Any = None
        self._sync_applied = False
        self._owned: list[Any] = []  # every actor spawned, in order (sensors included)
        self._controllers: list[Any] = []  # walker AI controllers (stopped before destroying)
        self._listening: list[Any] = []  # sensors with a callback
        self._doing = "connecting"
        self._waiting_s: float | None = None  # a longer timeout in force (loading a map)
        self.monitor: EventMonitor | None = None
        self.scripts: list[Script] = []

    # ------------------------------------------------------------------------------- episode
    def reset(self, scenario: Scenario, seed: int) -> Observation:
        self._release(restore=False)
        self.error = None
        self._stopped = None
        self._waiting_s = None
        self.monitor = None
        try:
            with self._server(f"setting up scenario '{scenario.name}'"):
                return self._reset(scenario, seed)
        except BaseException:
            self._release(restore=True)
            raise

    def _reset(self, scenario: Scenario, seed: int) -> Observation:
        conn = self.cfg.connection
        self.scenario = scenario
        self.seed = seed
        self.dt = scenario.dt
        self.map = load_map(str(scenario.map_path()))
        rng_route, rng_traffic, rng_peds, _, self.rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
        )
        self.route = route_for(self.map, scenario.route, rng_route)
        if self.client is None:
            self._doing = "connecting"
            self.client = connect(conn, self._factory)
        self.world = self._load_map(scenario)
        self._waiting_s = None
        self._configure(scenario, seed)
        self._episode_id = self.world.get_snapshot().id
        self.t, self.frame = 0.0, 0
        self._spawn_ego(scenario)
        self.longitudinal = convert.LongitudinalMap.for_vehicle(
            self.ego_params, self.ego.get_physics_control()
        )
        self._tracked: list[Tracked] = []
        self._doing = "spawning traffic"
        spawn_traffic(self, rng_traffic, scenario.traffic.vehicles)
        self._doing = "spawning walkers"
        spawn_walkers(self, rng_peds, scenario.traffic.pedestrians)
        self.scripts = []
        self._doing = "spawning the scripted actors"
        make_scripts(self)
        for s in self.scripts:
            self.track(s.actor, ActorKind.PEDESTRIAN if s.kind == "walker" else ActorKind.VEHICLE)
        self._doing = "ticking the first frame"
        server_frame = self.world.tick(conn.timeout_s)
        for ctl in self._controllers:  # controllers start after the tick that made them
            ctl.start()
            target = self.world.get_random_location_from_navigation()
            if target is not None:
                ctl.go_to_location(target)
            ctl.set_max_speed(float(self.rng.uniform(*self.cfg.pedestrians.speed_range_mps)))
        actors = self.world.get_actors()
        self.lights = ServerLights(self.map, list(actors.filter("traffic.traffic_light")))
        self._sign_actors = [a for a in actors.filter("traffic.*") if sign_of(a) is not None]
        self.lights.update()
        timeout = scenario.timeout_s or (
            300.0 + self.route.length_m / (0.1 * float(np.mean(self.route.speed_limit_mps)))
        )
        self.monitor = EventMonitor(self.map, self.route, self.lights, timeout, self.cfg.events)
        self._signs = tuple(
            SignGT(lm.id, SignType(int(lm.type)), lm.value, lm.x, lm.y, lm.z, lm.yaw)
            for lm in self.map.signs
        )
        self._invasions: list[Event] = []
        self._hash = hashlib.sha256()
        self._read_ego()
        self._front = self._front_point()
        self._record_state()
        self._last_events: tuple[Event, ...] = ()
        return self._observe(server_frame)

    @property
    def progress_m(self) -> float:
        """The ego's progress along the route (m), what scripted events trigger on."""
        return self.monitor.progress_m if self.monitor is not None else 0.0

    def add_event(self, event: Event) -> None:
        """Record an event that a script decided (it counts in the score)."""
        assert self.monitor is not None
        self.monitor.events.append(event)

    @property
    def done(self) -> bool:
        return self._stopped is not None or (self.monitor is not None and self.monitor.done)

    def step(self, control: Control) -> Observation:
        if self._stopped is not None:
            raise CarlaError(f"the episode already stopped: {self._stopped}")
        try:
            with self._server(f"applying the control of frame {self.frame + 1}"):
                return self._step(control)
        except BaseException as exc:
            if isinstance(exc, CarlaError):
                self.error = exc
            self._stopped = str(exc) or type(exc).__name__
            self._release(restore=True)
            raise

    def _step(self, control: Control) -> Observation:
        conn = self.cfg.connection
        self.ego.apply_control(
            convert.control_to_carla(
                control, self._speed, self.longitudinal, math.degrees(self.ego_params.max_steer_rad)
            )
        )
        for script in self.scripts:
            script.update(self)
        self._doing = f"ticking frame {self.frame + 1}"
        server_frame = self.world.tick(conn.timeout_s)
        if self.world.get_snapshot().id != self._episode_id:
            raise CarlaServerRestarted(
                classify(RuntimeError("a new episode was started"), conn, self._doing).args[0]
            )
        self.t = round(self.t + self.dt, 9)
        self.frame += 1
        self.lights.update()
        self._read_ego()
        assert self.monitor is not None
        ids, kinds = self.sensors.collisions()
        front_prev, self._front = self._front, self._front_point()
        cx, cy = self.ego_centre()
        events = self.monitor.update(
            self.t,
            self.frame,
            front_prev,
            self._front,
            (cx, cy),
            self._pose[2],
            self._speed,
            ids,
            kinds,
            np.array([self.speed_of(tr.actor) for tr in self._alive() if tr.background]),
        )
        invasions = self.sensors.lane_invasions(self.t, self.frame, cx, cy)
        self._invasions.extend(invasions)
        self._last_events = (*events, *invasions)
        self._record_state()
        return self._observe(server_frame)

    def result(self) -> EpisodeResult:
        """Score of the episode so far (final once ``done``; kept after a server fault)."""
        if self.scenario is None or self.monitor is None:
            raise CarlaError("no CARLA episode has started: reset() did not complete")
        mon = self.monitor
        goal = self.route.xy[-1]
        cx, cy = self.ego_centre()
        if not mon.done:
            mon.finish(self.t, self.frame, cx, cy, mon.events)
        score = score_route(
            self.route.length_m,
            mon.route_completion,
            math.hypot(goal[0] - cx, goal[1] - cy),
            mon.events,
            mon.outside_route_lanes_pct,
            mon.min_speed_pcts,
        )
        extra = list(self._invasions)
        if self.error is not None:
            extra.append(
                Event("simulation_error", self.t, self.frame, cx, cy, detail=str(self.error))
            )
        events = sorted([*mon.events, *extra], key=lambda e: (e.t, e.frame))
        return EpisodeResult(
            self.scenario.name,
            self.seed,
            score,
            tuple(event_dict(e) for e in events if e.type not in INFORMATIONAL),
            tuple(event_dict(e) for e in events if e.type in INFORMATIONAL),
            self.frame,
            round(self.t, 6),
            self._hash.hexdigest(),
            self.map.name,
        )

    def close(self) -> None:
        """Destroy this world's actors and restore the server's settings; safe to call twice."""
        self._release(restore=True)
        self.client = None

    # ------------------------------------------------------------------------ server, faults
    @contextmanager
    def _server(self, doing: str) -> Iterator[None]:
        """Turn the ``RuntimeError`` of a server call into a :class:`CarlaError` naming what was
        being done (``self._doing`` is updated as the block goes)."""
        self._doing = doing
        try:
            yield
        except RuntimeError as exc:
            if type(exc) is not RuntimeError:  # RecursionError, NotImplementedError: our bugs
                raise
            raise classify(
                exc, self.cfg.connection, self._doing, self.monitor is not None, self._waiting_s
            ) from exc
        except TimeoutError as exc:  # a camera image did not arrive
            after = (
                "the episode stopped, its result so far is kept"
                if self.monitor is not None
                else "the episode did not start"
            )
            raise CarlaTimeoutError(
                f"the CARLA server at {self.cfg.connection.address} stopped sending images "
                f"while {self._doing} ({exc}); {after}"
            ) from exc

    def _load_map(self, scenario: Scenario) -> Any:
        conn = self.cfg.connection
        path = scenario.map_path()
        current = self.client.get_world()
        if self._original_settings is None:
            self._original_settings = current.get_settings()
        towns = {m.rsplit("/", 1)[-1] for m in self.client.get_available_maps()}
        # a new world starts with the default settings; _configure applies ours next
        self.client.set_timeout(conn.load_timeout_s)
        self._waiting_s = conn.load_timeout_s
        try:
            if path.stem in towns:
                if current.get_map().name.rsplit("/", 1)[-1] == path.stem:
                    return current
                self._doing = f"loading the CARLA town {path.stem}"
                log.info("loading CARLA town %s", path.stem)
                return self.client.load_world(path.stem)
            if current.get_map().to_opendrive() == self.map.xodr:
                return current
            self._doing = f"generating a world from {path.name} (OpenDRIVE standalone mode)"
            log.info("generating a CARLA world from %s", path)
            return self.client.generate_opendrive_world(self.map.xodr, self.cfg.mesh.parameters())
        finally:  # on a failure _waiting_s stays, so the error names the timeout that applied
            self.client.set_timeout(conn.timeout_s)

    def _configure(self, scenario: Scenario, seed: int) -> None:
        self._doing = "applying synchronous mode"
        s = self.world.get_settings()
        s.synchronous_mode = True
        s.fixed_delta_seconds = scenario.dt
        s.no_rendering_mode = not scenario.sensors
        s.substepping = True
        s.max_substeps, s.max_substep_delta_time = substeps(scenario.dt)
        self.world.apply_settings(s)
        self._sync_applied = True
        self._doing = "configuring the Traffic Manager"
        self.tm = self.client.get_trafficmanager(self.cfg.connection.tm_port)
        self.tm.set_synchronous_mode(True)
        self.tm.set_random_device_seed(seed)
        self.tm.set_hybrid_physics_mode(False)
        self.tm.set_osm_mode(True)  # our maps may have dead ends: retire vehicles there
        self.tm.set_global_distance_to_leading_vehicle(self.cfg.traffic_gap_m)
        self.world.set_pedestrians_seed(seed)
        w = scenario.weather
        weather = carla.WeatherParameters()
        weather.cloudiness = w.cloudiness
        weather.fog_density = w.fog_density
        weather.wetness = w.wetness
        weather.sun_altitude_angle = w.sun_altitude_angle
        weather.sun_azimuth_angle = w.sun_azimuth_angle
        self.world.set_weather(weather)

    def _release(self, restore: bool) -> None:
        """Stop sensors and walker controllers, destroy every actor spawned here and (with
        ``restore``) give the server back its settings. Each step tolerates a dead server; the
        first call that times out ends the sequence (so a dead server costs one timeout). After
        a server restart nothing is sent: our actors went with the old episode, and their ids
        may name someone else's actors now."""
        if isinstance(self.error, CarlaServerRestarted):
            self._listening, self._controllers, self._owned = [], [], []
            self._sync_applied = False
            return
        steps: list[tuple[str, Any]] = []
        for sensor in self._listening:
            steps.append(("stopping a sensor", sensor.stop))
        for ctl in self._controllers:
            steps.append(("stopping a walker controller", ctl.stop))
        if self._owned and self.client is not None:
            ids = [a.id for a in reversed(self._owned)]
            batch = [carla.command.DestroyActor(i) for i in ids]
            steps.append(
                (
                    f"destroying {len(ids)} actors",
                    lambda: self.client.apply_batch_sync(batch, False),
                )
            )
        if restore and self._sync_applied:
            if self.tm is not None:
                steps.append(
                    ("releasing the Traffic Manager", lambda: self.tm.set_synchronous_mode(False))
                )
            if self._original_settings is not None and self.world is not None:
                original = self._original_settings
                steps.append(
                    ("restoring the world settings", lambda: self.world.apply_settings(original))
                )
        self._listening, self._controllers, self._owned = [], [], []
        if restore:
            self._sync_applied = False
        for what, call in steps:
            try:
                call()
            except RuntimeError as exc:
                log.warning(
                    "CARLA cleanup: %s failed: %s",
                    what,
                    str(exc).splitlines()[0] if str(exc) else exc,
                )
                if "time-out" in str(exc) or "timeout" in str(exc):
                    break

    # ----------------------------------------------------------------------------- spawning
    def spawn(self, bp: Any, tf: Any, attach_to: Any = None, try_only: bool = False) -> Any:
        """Spawn an actor and remember it for cleanup (``try_only``: None where it collides)."""
        if try_only:
            actor = (
                self.world.try_spawn_actor(bp, tf, attach_to=attach_to)
                if attach_to
                else self.world.try_spawn_actor(bp, tf)
            )
        else:
            actor = (
                self.world.spawn_actor(bp, tf, attach_to=attach_to)
                if attach_to
                else self.world.spawn_actor(bp, tf)
            )
        if actor is not None:
            self._owned.append(actor)
        return actor

    def ground_location(self, x: float, y: float, above_m: float = 0.0) -> carla.Location:
        """A CARLA location at our map point (x, y), on the road surface plus ``above_m``."""
        wp = self.map.carla_map.get_waypoint(convert.location_from_ours(x, y), project_to_road=True)
        z = wp.transform.location.z if wp is not None else 0.0
        return convert.location_from_ours(x, y, z + above_m)

    def transform_at(self, x: float, y: float, yaw: float) -> carla.Transform:
        loc = self.ground_location(x, y, self.cfg.spawn_height_m)
        return carla.Transform(loc, carla.Rotation(yaw=convert.yaw_from_ours(yaw)))

    def _spawn_ego(self, scenario: Scenario) -> None:
        self._doing = "spawning the ego"
        library = self.world.get_blueprint_library()
        try:
            bp = library.find(self.cfg.ego_blueprint)
        except IndexError:
            raise CarlaError(
                f"the CARLA server at {self.cfg.connection.address} has no vehicle blueprint "
                f"'{self.cfg.ego_blueprint}' for the ego; choose one of its vehicle.* blueprints"
            ) from None
        bp.set_attribute("role_name", "hero")
        x0, y0 = (float(v) for v in self.route.xy[0])
        yaw0 = float(self.route.yaw[0])
        guess = VehicleParams().center_offset_m
        self.ego = self.spawn(
            bp, self.transform_at(x0 + guess * math.cos(yaw0), y0 + guess * math.sin(yaw0), yaw0)
        )
        self._doing = "ticking the ego's first frame"
        self.world.tick(self.cfg.connection.timeout_s)  # wheel positions are valid after a tick
        self.geometry = EgoGeometry.of(self.ego)
        self.ego_params = self.geometry.params
        # the actor's origin sits -rear_axle_x ahead of the rear axle, which is to start the
        # route at frame 0: one tick after this placement, so start that tick's travel behind
        v0 = scenario.ego.speed_mps
        ahead = -self.geometry.rear_axle_x_m - v0 * scenario.dt
        self.ego.set_transform(
            self.transform_at(x0 + ahead * math.cos(yaw0), y0 + ahead * math.sin(yaw0), yaw0)
        )
        self.ego.set_target_velocity(
            convert.vector_from_ours(v0 * math.cos(yaw0), v0 * math.sin(yaw0))
        )
        self._doing = "attaching the ego's sensors"
        self.sensors = EventSensors(self.world, self.ego)
        try:
            self.sensors.spawn()
        finally:
            self._owned.extend(self.sensors.sensors)
            self._listening.extend(self.sensors.sensors)
        self.cameras: list[CameraRig] = []
        for spec in scenario.sensors:
            rig = CameraRig(
                self.world,
                self.ego,
                spec,
                self.geometry.rear_axle_x_m,
                self.geometry.ground_z_m,
                self.cfg.min_box_pixels,
            )
            self.cameras.append(rig)
            try:
                rig.spawn()
            finally:
                self._owned.extend(rig.sensors)
                self._listening.extend(rig.sensors)

    def track(self, actor: Any, kind: ActorKind, background: bool = False) -> None:
        self._tracked.append(Tracked.of(actor, kind, background))

    def spawn_controller(self, walker: Any) -> Any:
        """A walker-AI controller on ``walker`` (stopped before it is destroyed)."""
        bp = self.world.get_blueprint_library().find("controller.ai.walker")
        ctl = self.spawn(bp, carla.Transform(), attach_to=walker)
        self._controllers.append(ctl)
        return ctl

    def spawn_vehicle(self, x: float, y: float, yaw: float, role: str, bp: Any = None) -> Any:
        """Spawn a vehicle at a map-frame pose (its box centre there); raises if it cannot."""
        if bp is None:
            bp = self.world.get_blueprint_library().find("vehicle.audi.a2")
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", role)
        return self.spawn(bp, self.transform_at(x, y, yaw))

    def spawn_walker(self, x: float, y: float, yaw: float) -> Any:
        bps = sorted(
            self.world.get_blueprint_library().filter("walker.pedestrian.*"), key=lambda b: b.id
        )
        bp = bps[int(self.rng.integers(len(bps)))]
        if bp.has_attribute("is_invincible"):
            bp.set_attribute("is_invincible", "false")
        loc = self.ground_location(x, y, 1.0)
        return self.spawn(bp, carla.Transform(loc, carla.Rotation(yaw=convert.yaw_from_ours(yaw))))

    def route_pose(self, route_s: float) -> tuple[float, float, float]:
        """Map-frame ``(x, y, yaw)`` of the route at route distance ``route_s`` (m)."""
        if route_s >= self.route.length_m:
            where = self.scenario.path if self.scenario is not None else ""
            raise ScenarioError(
                f"{where}: events: route distance {route_s:g} m is beyond the route's length "
                f"{self.route.length_m:.0f} m"
            )
        i = int(np.searchsorted(self.route.s, route_s))
        return float(self.route.xy[i, 0]), float(self.route.xy[i, 1]), float(self.route.yaw[i])

    # ------------------------------------------------------------------------------ reading
    def _read_ego(self) -> None:
        """Rear-axle pose, speed, acceleration and steer of the ego from this tick's snapshot."""
        m = convert.transform_to_ours(self.ego.get_transform())
        self._ego_m = m
        rear = m @ np.array([self.geometry.rear_axle_x_m, 0.0, 0.0, 1.0])
        yaw = math.atan2(m[1, 0], m[0, 0])
        fwd = m[:3, 0]
        v = convert.location_to_ours(self.ego.get_velocity())
        a = convert.location_to_ours(self.ego.get_acceleration())
        self._pose = (float(rear[0]), float(rear[1]), yaw)
        self._speed = max(0.0, float(v @ fwd))
        self._accel = float(a @ fwd)
        self._steer = convert.steer_from_carla(
            float(self.ego.get_control().steer), math.degrees(self.ego_params.max_steer_rad)
        )

    def speed_of(self, actor: Any) -> float:
        """Ground speed (m/s) of an actor."""
        v = convert.location_to_ours(actor.get_velocity())
        return float(math.hypot(v[0], v[1]))

    def ego_centre(self) -> tuple[float, float]:
        c = self._ego_m @ np.array([*self.geometry.centre, 1.0])
        return float(c[0]), float(c[1])

    def _front_point(self) -> tuple[float, float]:
        p = self.ego_params
        d = p.length_m - p.rear_overhang_m
        x, y, yaw = self._pose
        return (x + d * math.cos(yaw), y + d * math.sin(yaw))

    def _alive(self) -> list[Tracked]:
        """Tracked actors still in the world (the Traffic Manager retires some at dead ends)."""
        snap = self.world.get_snapshot()
        return [tr for tr in self._tracked if snap.has_actor(tr.actor.id)]

    def _record_state(self) -> None:
        x, y, yaw = self._pose
        self._hash.update(np.array([x, y, yaw, self._speed, self._accel, self._steer]).tobytes())

    def ego_state(self) -> VehicleState:
        x, y, yaw = self._pose
        return VehicleState(self.t, self.frame, x, y, yaw, self._speed, self._accel, self._steer)

    def _observe(self, server_frame: int) -> Observation:
        ego = self.ego_state()
        assert self.monitor is not None
        alive = self._alive()
        return Observation(
            self.t,
            self.frame,
            ego,
            route_ahead(self.route, self.monitor.route_index, ego),
            self._last_events,
            GroundTruth(actors_gt(alive, self.speed_of), self._signs, lights_gt(self.lights)),
            self._camera_frames(server_frame, alive),
        )

    def _camera_frames(self, server_frame: int, alive: list[Tracked]) -> dict[str, CameraFrame]:
        if not self.cameras:
            return {}
        self._doing = f"waiting for the camera images of frame {self.frame}"
        targets = box_targets(alive, self.lights, self._sign_actors, self.map)
        out = {}
        for rig in self.cameras:
            images = rig.collect(server_frame, self.cfg.connection.timeout_s)
            out[rig.spec.name] = rig.frame(self.t, self.frame, images, targets, self.rng)
        return out
