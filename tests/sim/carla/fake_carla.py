"""A test double of a CARLA 0.9.16 server, reached through a fake ``carla.Client``.

It offers the calls the adapter makes, with CARLA's own types wherever the client package can
build them without a server (``carla.Transform``, ``Location``, ``Rotation``, ``BoundingBox``,
``VehicleControl``, ``WorldSettings``, ``VehiclePhysicsControl``, ``WheelPhysicsControl``,
``TrafficLightState``, ``LaneMarking``, ``command.DestroyActor``, and the map itself: a real
``carla.Map`` over the scenario's ``.xodr``). It works natively in CARLA's left-handed frame
(degrees, yaw clockwise, steer positive right, wheel positions in world cm) and never calls the
adapter's conversions, so a sign error there shows up as wrong motion here.

What it simulates, per ``tick`` (synchronous mode only):

- vehicles under ``VehicleControl``: a kinematic bicycle with pedal forces
  (``a = 3·throttle − 8·brake − 0.15`` m/s², the wheels' ``max_steer_angle`` at steer 1);
- autopilot vehicles: along their lane (``Waypoint.next``) at the Traffic Manager's desired
  speed, or 30 km/h less the vehicle's percentage; at a dead end they are destroyed (OSM mode);
- walkers: ``WalkerControl`` direction and speed, or their AI controller's target;
- sensors: collision events when the ego's box overlaps another actor's, lane-invasion events
  when the ego's lane changes, and camera images (flat RGB, a constant depth, and instance and
  semantic images with every actor's projected box painted far to near);
- traffic-light actors at the map's signals, cycling red 8 s, green 8 s, yellow 2 s.

Faults are switches on :class:`FakeServer`: ``down``, ``version``, ``hang_at_frame`` (every
call times out from then on), ``restart_at_frame`` (a new episode: actors gone, settings reset),
``interrupt_at_frame`` (Ctrl-C inside ``tick``), ``cameras_silent``, ``load_hangs``;
``light_override`` holds every light at one state.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import carla
import numpy as np

VERSION = "0.9.16"
ROOT = Path(__file__).resolve().parents[3]
FAKE_TOWNS = {"Town03": ROOT / "sim" / "maps" / "town_grid.xodr"}  # a "town" for the load path
LIGHT_CYCLE = ((carla.TrafficLightState.Red, 8.0), (carla.TrafficLightState.Green, 8.0),
               (carla.TrafficLightState.Yellow, 2.0))  # fmt: skip
DEPTH_M = 50.0
MAX_STEER_DEG = 70.0  # the front wheels' angle at steer 1
WHEELBASE_M = 2.9  # front axle at +1.5 m, rear axle at -1.4 m from the actor's origin
LANE_LIMIT_KMH = 30.0


def _rot(r: carla.Rotation) -> carla.Rotation:
    return carla.Rotation(pitch=r.pitch, yaw=r.yaw, roll=r.roll)


def _timeout(host: str, port: int, ms: float) -> RuntimeError:
    return RuntimeError(
        f"time-out of {int(ms)}ms while waiting for the simulator, make sure the simulator is "
        f"ready and connected to {host}:{port}"
    )


EXPIRED = RuntimeError(
    "trying to access an expired episode; a new episode was started in the simulation but an "
    "object tried accessing the old one."
)


# ------------------------------------------------------------------------------ blueprints
@dataclass
class Attribute:
    value: str

    def as_int(self) -> int:
        return int(self.value)

    def __str__(self) -> str:
        return self.value


@dataclass
class Blueprint:
    id: str
    attributes: dict[str, str] = field(default_factory=dict)
    extent: tuple[float, float, float] = (2.45, 1.05, 0.75)

    def has_attribute(self, name: str) -> bool:
        return name in self.attributes

    def set_attribute(self, name: str, value: str) -> None:
        if name not in self.attributes:
            raise IndexError(f"blueprint '{self.id}' has no attribute '{name}'")
        self.attributes[name] = value

    def get_attribute(self, name: str) -> Attribute:
        return Attribute(self.attributes[name])


def _library() -> list[Blueprint]:
    car = {"role_name": "", "number_of_wheels": "4"}
    cam = {"image_size_x": "800", "image_size_y": "600", "fov": "90", "sensor_tick": "0.0",
           "role_name": ""}  # fmt: skip
    walker = {"is_invincible": "true", "role_name": ""}
    return [
        Blueprint("vehicle.lincoln.mkz_2020", dict(car)),
        Blueprint("vehicle.audi.a2", dict(car), (1.85, 0.9, 0.77)),
        Blueprint("vehicle.tesla.model3", dict(car), (2.4, 1.05, 0.75)),
        Blueprint("vehicle.carlamotors.carlacola", dict(car), (2.6, 1.3, 1.3)),
        Blueprint("vehicle.yamaha.yzf", dict(car, number_of_wheels="2"), (1.1, 0.4, 0.8)),
        Blueprint("walker.pedestrian.0001", dict(walker), (0.2, 0.2, 0.9)),
        Blueprint("walker.pedestrian.0002", dict(walker), (0.25, 0.25, 0.85)),
        Blueprint("controller.ai.walker", {}),
        Blueprint("sensor.other.collision", {"role_name": ""}),
        Blueprint("sensor.other.lane_invasion", {"role_name": ""}),
        *(Blueprint(b, dict(cam)) for b in (
            "sensor.camera.rgb", "sensor.camera.depth", "sensor.camera.semantic_segmentation",
            "sensor.camera.instance_segmentation")),
    ]  # fmt: skip


class BlueprintLibrary:
    def __init__(self) -> None:
        self._bps = _library()

    def find(self, bp_id: str) -> Blueprint:
        for bp in self._bps:
            if bp.id == bp_id:
                return Blueprint(bp.id, dict(bp.attributes), bp.extent)
        raise IndexError(f"blueprint '{bp_id}' not found")

    def filter(self, pattern: str) -> list[Blueprint]:
        return [self.find(bp.id) for bp in self._bps if fnmatch.fnmatch(bp.id, pattern)]

    def __iter__(self) -> Any:
        return iter(self.filter("*"))


# ---------------------------------------------------------------------------------- actors
@dataclass
class CollisionEvent:
    frame: int
    actor: Any
    other_actor: Any
    normal_impulse: carla.Vector3D = field(default_factory=carla.Vector3D)


@dataclass
class LaneInvasionEvent:
    frame: int
    actor: Any
    crossed_lane_markings: list[Any]


@dataclass
class Image:
    frame: int
    width: int
    height: int
    fov: float
    transform: carla.Transform
    raw_data: bytes


class Actor:
    def __init__(self, server: FakeServer, actor_id: int, bp: Blueprint, tf: carla.Transform,
                 parent: Actor | None = None) -> None:  # fmt: skip
        self.server = server
        self.id = actor_id
        self.type_id = bp.id
        self.attributes = dict(bp.attributes)
        self.parent = parent
        self._tf = carla.Transform(carla.Location(tf.location), _rot(tf.rotation))
        ex, ey, ez = bp.extent
        self.bounding_box = carla.BoundingBox(carla.Location(0.05, 0.0, ez),
                                              carla.Vector3D(ex, ey, ez))  # fmt: skip
        self.speed = 0.0  # m/s along the heading (vehicles) or the walking direction (walkers)
        self.heading_c = math.radians(tf.rotation.yaw)  # walkers: walking direction
        self.control = carla.VehicleControl()
        self.autopilot = False
        self.tm_speed_kmh: float | None = None
        self.tm_percentage = 30.0
        self.is_alive = True
        self.callback: Any = None
        self.walker_speed = 0.0
        self.walker_dir: carla.Vector3D | None = None
        self.ai_target: carla.Location | None = None
        self.ai_speed = 1.4
        self.ai_started = False
        self.state = carla.TrafficLightState.Red
        self.opendrive_id = ""
        self.accel = 0.0

    # --- pose
    def get_transform(self) -> carla.Transform:
        self.server._check_call()
        if self.parent is not None:
            p = self.parent.get_transform()
            loc = p.transform(carla.Location(self._tf.location))
            r = self._tf.rotation  # exact for a parent on level ground (pitch = roll = 0)
            return carla.Transform(loc, carla.Rotation(r.pitch, p.rotation.yaw + r.yaw, r.roll))
        return carla.Transform(carla.Location(self._tf.location), _rot(self._tf.rotation))

    def get_location(self) -> carla.Location:
        return self.get_transform().location

    def set_transform(self, tf: carla.Transform) -> None:
        self.server._check_call()
        self._tf = carla.Transform(carla.Location(tf.location), _rot(tf.rotation))
        self.heading_c = math.radians(tf.rotation.yaw)

    def get_velocity(self) -> carla.Vector3D:
        self.server._check_call()
        if self.type_id.startswith("walker.") and self.walker_dir is not None:
            d = self.walker_dir
            return carla.Vector3D(d.x * self.speed, d.y * self.speed, 0.0)
        yaw = math.radians(self._tf.rotation.yaw)
        return carla.Vector3D(self.speed * math.cos(yaw), self.speed * math.sin(yaw), 0.0)

    def get_acceleration(self) -> carla.Vector3D:
        yaw = math.radians(self._tf.rotation.yaw)
        return carla.Vector3D(self.accel * math.cos(yaw), self.accel * math.sin(yaw), 0.0)

    def set_target_velocity(self, v: carla.Vector3D) -> None:
        self.server._check_call()
        self.speed = math.hypot(v.x, v.y)

    # --- vehicles
    def apply_control(self, control: Any) -> None:
        self.server._check_call()
        if isinstance(control, carla.WalkerControl):
            self.walker_dir = control.direction
            self.walker_speed = control.speed
        else:
            self.control = control

    def get_control(self) -> carla.VehicleControl:
        return self.control

    def set_autopilot(self, enabled: bool = True, port: int = 8000) -> None:
        self.server._check_call()
        if port != self.server.tm_port_open:
            raise RuntimeError(f"no traffic manager on port {port}")
        self.autopilot = enabled

    def get_physics_control(self) -> carla.VehiclePhysicsControl:
        self.server._check_call()
        tf = self.get_transform()
        wheels = []
        for lx, ly in ((1.5, -0.8), (1.5, 0.8), (-1.4, -0.8), (-1.4, 0.8)):
            p = tf.transform(carla.Location(lx, ly, 0.35))
            wheels.append(carla.WheelPhysicsControl(
                max_steer_angle=MAX_STEER_DEG if lx > 0 else 0.0,
                position=carla.Vector3D(p.x * 100.0, p.y * 100.0, p.z * 100.0)))  # fmt: skip
        pc = carla.VehiclePhysicsControl()
        pc.mass = 1845.0
        pc.drag_coefficient = 0.3
        pc.wheels = wheels
        return pc

    # --- sensors and controllers
    def listen(self, callback: Any) -> None:
        self.callback = callback

    def stop(self) -> None:
        self.server._check_call()
        self.callback = None
        self.ai_started = False

    def start(self) -> None:
        self.ai_started = True

    def go_to_location(self, loc: carla.Location) -> None:
        self.ai_target = loc

    def set_max_speed(self, speed: float) -> None:
        self.ai_speed = speed

    # --- traffic lights
    def get_state(self) -> carla.TrafficLightState:
        return self.state

    def get_opendrive_id(self) -> str:
        return self.opendrive_id

    def destroy(self) -> bool:
        self.server._check_call()
        return self.server._destroy(self.id)


class ActorList(list[Any]):
    def filter(self, pattern: str) -> ActorList:
        return ActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))


@dataclass
class Snapshot:
    id: int
    frame: int
    ids: frozenset[int]

    def has_actor(self, actor_id: int) -> bool:
        return actor_id in self.ids


# ---------------------------------------------------------------------------- traffic manager
class TrafficManager:
    def __init__(self, server: FakeServer, port: int) -> None:
        self.server = server
        self.port = port
        self.synchronous = False
        self.seed: int | None = None
        self.osm_mode = False
        self.paths: dict[int, list[carla.Location]] = {}

    def set_synchronous_mode(self, on: bool) -> None:
        self.server._check_call()
        self.synchronous = on

    def set_random_device_seed(self, seed: int) -> None:
        self.seed = seed

    def set_hybrid_physics_mode(self, on: bool = False) -> None:
        pass

    def set_osm_mode(self, on: bool = True) -> None:
        self.osm_mode = on

    def set_global_distance_to_leading_vehicle(self, d: float) -> None:
        pass

    def vehicle_percentage_speed_difference(self, actor: Actor, pct: float) -> None:
        actor.tm_percentage = pct

    def set_desired_speed(self, actor: Actor, speed_kmh: float) -> None:
        actor.tm_speed_kmh = speed_kmh

    def auto_lane_change(self, actor: Actor, on: bool) -> None:
        pass

    def set_path(self, actor: Actor, path: list[carla.Location]) -> None:
        self.paths[actor.id] = list(path)


# ---------------------------------------------------------------------------------- world
class World:
    def __init__(self, server: FakeServer, episode: int) -> None:
        self.server = server
        self.id = episode

    def _check(self) -> None:
        self.server._check_call()
        if self.id != self.server.episode:
            raise EXPIRED

    def get_settings(self) -> carla.WorldSettings:
        self._check()
        return _copy_settings(self.server.settings)

    def apply_settings(self, s: carla.WorldSettings) -> int:
        self._check()
        self.server.settings = _copy_settings(s)
        self.server.settings_log.append(_copy_settings(s))
        return self.server.frame

    def get_map(self) -> carla.Map:
        self._check()
        return self.server.map

    def get_blueprint_library(self) -> BlueprintLibrary:
        return BlueprintLibrary()

    def spawn_actor(
        self, bp: Blueprint, tf: carla.Transform, attach_to: Actor | None = None
    ) -> Actor:
        self._check()
        actor = self.server._spawn(bp, tf, attach_to)
        if actor is None:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        return actor

    def try_spawn_actor(
        self, bp: Blueprint, tf: carla.Transform, attach_to: Actor | None = None
    ) -> Actor | None:
        self._check()
        return self.server._spawn(bp, tf, attach_to)

    def tick(self, seconds: float = 10.0) -> int:
        self._check()
        return self.server._tick(seconds)

    def get_snapshot(self) -> Snapshot:
        s = self.server
        return Snapshot(s.episode, s.frame, frozenset(s.actors))

    def get_actors(self) -> ActorList:
        self._check()
        return ActorList(self.server.actors.values())

    def set_pedestrians_seed(self, seed: int) -> None:
        self.server.nav_rng = np.random.default_rng(seed)

    def get_random_location_from_navigation(self) -> carla.Location:
        return self.server._sidewalk_point()

    def set_weather(self, w: carla.WeatherParameters) -> None:
        self.server.weather = w


def _copy_settings(s: carla.WorldSettings) -> carla.WorldSettings:
    out = carla.WorldSettings()
    for name in ("synchronous_mode", "no_rendering_mode", "fixed_delta_seconds", "substepping",
                 "max_substep_delta_time", "max_substeps"):  # fmt: skip
        setattr(out, name, getattr(s, name))
    return out


# --------------------------------------------------------------------------------- server
class FakeServer:
    """The server's state, shared by every client made by :meth:`factory`."""

    def __init__(self, xodr_path: Path | None = None) -> None:
        self.version = VERSION
        self.down = False
        self.hang_at_frame: int | None = None
        self.restart_at_frame: int | None = None
        self.interrupt_at_frame: int | None = None
        self.cameras_silent = False
        self.light_override: Any = None  # a carla.TrafficLightState every light shows
        self.load_hangs = False  # generating an OpenDRIVE world times out
        self.hung = False
        self.episode = 1
        self.frame = 100  # the server's frame counter does not start at 0
        self.settings = carla.WorldSettings()
        self.settings_log: list[carla.WorldSettings] = []
        self.map_name = "Carla/Maps/Town10HD_Opt"
        self.map = carla.Map("Town10HD_Opt", (xodr_path or FAKE_TOWNS["Town03"]).read_text())
        self.loads: list[str] = []
        self.actors: dict[int, Actor] = {}
        self.destroyed: list[int] = []
        self.ever_spawned: list[int] = []
        self._ids = itertools.count(1)
        self.tm_port_open: int | None = None
        self.tms: dict[int, TrafficManager] = {}
        self.nav_rng = np.random.default_rng(0)
        self.weather: Any = None
        self.elapsed = 0.0
        self._ego_lane: tuple[int, int] | None = None
        self.timeout_s = 5.0
        self.landmark_ids: set[int] = set()  # the server's own light and sign actors
        self._spawn_landmarks()

    def factory(self, host: str, port: int) -> Client:
        return Client(self, host, port)

    # --- calls and faults
    def _check_call(self) -> None:
        if self.hung:
            raise _timeout("localhost", 2000, self.timeout_s * 1000)

    def _restart(self) -> None:
        self.episode += 1
        self.actors.clear()
        self.settings = carla.WorldSettings()
        self.tm_port_open = None
        self._spawn_landmarks()

    # --- maps
    def _load(self, name: str, xodr: str) -> World:
        self._check_call()
        self.episode += 1
        self.actors.clear()
        self.map_name = name
        self.map = carla.Map(name.rsplit("/", 1)[-1], xodr)
        self.loads.append(name)
        self._spawn_landmarks()
        return World(self, self.episode)

    def _spawn_landmarks(self) -> None:
        for kind, type_id in (("1000001", "traffic.traffic_light"), ("206", "traffic.stop")):
            seen = set()
            for lm in self.map.get_all_landmarks_of_type(kind):
                if lm.id in seen:
                    continue
                seen.add(lm.id)
                tf = lm.transform
                bp = Blueprint(type_id, {}, (0.3, 0.3, 1.5) if kind == "206" else (0.3, 0.3, 2.5))
                actor = self._new_actor(bp, tf, None)
                actor.opendrive_id = str(lm.id)
                self.landmark_ids.add(actor.id)
                actor.bounding_box = carla.BoundingBox(
                    carla.Location(0, 0, 2.5), carla.Vector3D(*bp.extent)
                )

    # --- actors
    def _new_actor(self, bp: Blueprint, tf: carla.Transform, parent: Actor | None) -> Actor:
        actor = Actor(self, next(self._ids), bp, tf, parent)
        self.actors[actor.id] = actor
        self.ever_spawned.append(actor.id)
        return actor

    def _box(self, a: Actor) -> tuple[float, float, float, float, float]:
        tf = a.get_transform()
        c = tf.transform(carla.Location(a.bounding_box.location))
        e = a.bounding_box.extent
        return c.x, c.y, math.radians(tf.rotation.yaw), 2 * e.x, 2 * e.y

    def _solid(self, a: Actor) -> bool:
        return a.type_id.startswith(("vehicle.", "walker."))

    def _spawn(self, bp: Blueprint, tf: carla.Transform, parent: Actor | None) -> Actor | None:
        if parent is None and bp.id.startswith(("vehicle.", "walker.")):
            probe = Actor(self, -1, bp, tf)
            for other in self.actors.values():
                if self._solid(other) and _overlap(self._box(probe), self._box(other)):
                    return None
        actor = self._new_actor(bp, tf, parent)
        if bp.id.startswith("vehicle."):
            actor.heading_c = math.radians(tf.rotation.yaw)
        return actor

    def _destroy(self, actor_id: int) -> bool:
        if actor_id not in self.actors:
            return False
        self.actors.pop(actor_id).is_alive = False
        self.destroyed.append(actor_id)
        return True

    def _sidewalk_point(self) -> carla.Location:
        wps = self.map.generate_waypoints(5.0)
        wp = wps[int(self.nav_rng.integers(len(wps)))]
        r = wp.transform.get_right_vector()
        off = wp.lane_width / 2 + 2.0
        loc = wp.transform.location
        return carla.Location(loc.x + r.x * off, loc.y + r.y * off, loc.z)

    # --- simulation
    def _tick(self, seconds: float) -> int:
        nxt = self.frame + 1
        if self.hang_at_frame is not None and nxt >= self.hang_at_frame:
            self.hung = True
            raise _timeout("localhost", 2000, seconds * 1000)
        if self.interrupt_at_frame is not None and nxt >= self.interrupt_at_frame:
            self.interrupt_at_frame = None
            raise KeyboardInterrupt
        if not self.settings.synchronous_mode:
            raise AssertionError("the adapter ticked a world that is not in synchronous mode")
        if self.tm_port_open is not None and not self.tms[self.tm_port_open].synchronous:
            raise AssertionError("the adapter ticked without a synchronous Traffic Manager")
        dt = float(self.settings.fixed_delta_seconds)
        self.frame = nxt
        if self.restart_at_frame is not None and nxt >= self.restart_at_frame:
            self.restart_at_frame = None
            self._restart()
            return self.frame
        self.elapsed += dt
        for a in list(self.actors.values()):
            if a.parent is not None or not a.is_alive:
                continue
            if a.type_id.startswith("vehicle."):
                self._move_vehicle(a, dt)
            elif a.type_id.startswith("walker."):
                self._move_walker(a, dt)
            elif a.type_id == "traffic.traffic_light":
                self._cycle_light(a)
        self._sensors()
        return self.frame

    def _move_vehicle(self, a: Actor, dt: float) -> None:
        if a.autopilot:
            kmh = (
                a.tm_speed_kmh
                if a.tm_speed_kmh is not None
                else LANE_LIMIT_KMH * (1 - a.tm_percentage / 100)
            )
            a.speed = kmh / 3.6
            wp = self.map.get_waypoint(a._tf.location, project_to_road=True)
            nxt = wp.next(max(a.speed * dt, 1e-3)) if wp is not None else []
            if not nxt:
                self._destroy(a.id)  # the Traffic Manager's OSM mode retires it
                return
            t = nxt[0].transform
            a._tf = carla.Transform(carla.Location(t.location.x, t.location.y, a._tf.location.z),
                                    carla.Rotation(yaw=t.rotation.yaw))  # fmt: skip
            return
        c = a.control
        resist = 0.15 if a.speed > 0 else 0.0
        accel = 3.0 * c.throttle - 8.0 * max(c.brake, 1.0 if c.hand_brake else 0.0) - resist
        v = max(0.0, a.speed + accel * dt)
        a.accel = (v - a.speed) / dt
        a.speed = v
        yaw = math.radians(a._tf.rotation.yaw)
        steer = math.radians(MAX_STEER_DEG) * c.steer
        yaw += v / WHEELBASE_M * math.tan(steer) * dt  # clockwise: positive steer turns right
        loc = a._tf.location
        a._tf = carla.Transform(
            carla.Location(loc.x + v * math.cos(yaw) * dt, loc.y + v * math.sin(yaw) * dt, loc.z),
            carla.Rotation(yaw=math.degrees(yaw)),
        )

    def _move_walker(self, a: Actor, dt: float) -> None:
        ctl = next(
            (
                c
                for c in self.actors.values()
                if c.parent is a and c.type_id == "controller.ai.walker"
            ),
            None,
        )
        loc = a._tf.location
        if ctl is not None and ctl.ai_started and ctl.ai_target is not None:
            d = carla.Vector3D(ctl.ai_target.x - loc.x, ctl.ai_target.y - loc.y, 0.0)
            n = math.hypot(d.x, d.y)
            a.walker_dir = carla.Vector3D(d.x / n, d.y / n, 0.0) if n > 0.5 else None
            a.speed = ctl.ai_speed if n > 0.5 else 0.0
        elif a.walker_dir is not None:
            a.speed = a.walker_speed
        if a.walker_dir is None:
            return
        d = a.walker_dir
        a._tf = carla.Transform(
            carla.Location(loc.x + d.x * a.speed * dt, loc.y + d.y * a.speed * dt, loc.z),
            carla.Rotation(yaw=math.degrees(math.atan2(d.y, d.x))),
        )

    def _cycle_light(self, a: Actor) -> None:
        if self.light_override is not None:
            a.state = self.light_override
            return
        period = sum(d for _, d in LIGHT_CYCLE)
        t = (self.elapsed + 3.0 * (a.id % 4)) % period
        for state, d in LIGHT_CYCLE:
            if t < d:
                a.state = state
                return
            t -= d

    def _sensors(self) -> None:
        for s in list(self.actors.values()):
            if s.parent is None or s.callback is None:
                continue
            parent = s.parent
            if s.type_id == "sensor.other.collision":
                mine = self._box(parent)
                for other in list(self.actors.values()):
                    if (
                        other is not parent
                        and self._solid(other)
                        and _overlap(mine, self._box(other))
                    ):
                        s.callback(CollisionEvent(self.frame, parent, other))
            elif s.type_id == "sensor.other.lane_invasion":
                wp = self.map.get_waypoint(parent.get_location())
                lane = (wp.road_id, wp.lane_id)
                if self._ego_lane is not None and lane != self._ego_lane:
                    s.callback(LaneInvasionEvent(self.frame, parent, [wp.left_lane_marking]))
                self._ego_lane = lane
            elif s.type_id.startswith("sensor.camera.") and not self.cameras_silent:
                s.callback(self._render(s))

    def _render(self, cam: Actor) -> Image:
        w, h = int(cam.attributes["image_size_x"]), int(cam.attributes["image_size_y"])
        fov = float(cam.attributes["fov"])
        tf = cam.get_transform()
        f = w / (2 * math.tan(math.radians(fov) / 2))
        px = np.zeros((h, w, 4), dtype=np.uint8)
        px[..., 3] = 255
        kind = cam.type_id.rsplit(".", 1)[1]
        if kind == "rgb":
            px[..., :3] = 128
        elif kind == "depth":
            code = round(DEPTH_M / 1000.0 * (256**3 - 1))
            px[..., 2], px[..., 1], px[..., 0] = code % 256, (code // 256) % 256, code // 65536
        else:
            inv = np.array(tf.get_inverse_matrix())
            items = []
            for a in self.actors.values():
                if not self._solid(a) or a is cam.parent:
                    continue
                corners = np.array(
                    [
                        [v.x, v.y, v.z, 1.0]
                        for v in a.bounding_box.get_world_vertices(a.get_transform())
                    ]
                )
                p = corners @ inv.T  # camera frame: x forward, y right, z up
                if (p[:, 0] <= 0.1).any():
                    continue
                u = w / 2 + f * p[:, 1] / p[:, 0]
                v = h / 2 - f * p[:, 2] / p[:, 0]
                items.append((float(p[:, 0].min()), a, u, v))
            px[..., 2] = 1  # road
            for _, a, u, v in sorted(items, key=lambda it: -it[0]):
                c0, c1 = max(int(u.min()), 0), min(math.ceil(u.max()), w)
                r0, r1 = max(int(v.min()), 0), min(math.ceil(v.max()), h)
                if c1 <= c0 or r1 <= r0:
                    continue
                px[r0:r1, c0:c1, 2] = 14 if a.type_id.startswith("vehicle.") else 12
                if kind == "instance_segmentation":
                    px[r0:r1, c0:c1, 1] = a.id & 0xFF
                    px[r0:r1, c0:c1, 0] = (a.id >> 8) & 0xFF
        return Image(self.frame, w, h, fov, tf, px.tobytes())


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Separating-axis test of two boxes (cx, cy, yaw, length, width), CARLA frame."""

    def corners(box: tuple[float, ...]) -> list[tuple[float, float]]:
        cx, cy, yaw, ln, wd = box
        c, s = math.cos(yaw), math.sin(yaw)
        return [(cx + c * i * ln / 2 - s * j * wd / 2, cy + s * i * ln / 2 + c * j * wd / 2)
                for i, j in ((1, 1), (1, -1), (-1, -1), (-1, 1))]  # fmt: skip

    ca, cb = corners(a), corners(b)
    for yaw in (a[2], b[2]):
        for ax, ay in ((math.cos(yaw), math.sin(yaw)), (-math.sin(yaw), math.cos(yaw))):
            pa = [x * ax + y * ay for x, y in ca]
            pb = [x * ax + y * ay for x, y in cb]
            if max(pa) < min(pb) or max(pb) < min(pa):
                return False
    return True


# --------------------------------------------------------------------------------- client
class Client:
    def __init__(self, server: FakeServer, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.timeout_s = 5.0

    def set_timeout(self, seconds: float) -> None:
        self.timeout_s = seconds
        self.server.timeout_s = seconds

    def get_server_version(self) -> str:
        if self.server.down:
            raise _timeout(self.host, self.port, self.timeout_s * 1000)
        self.server._check_call()
        return self.server.version

    def get_client_version(self) -> str:
        return VERSION

    def get_world(self) -> World:
        self.server._check_call()
        return World(self.server, self.server.episode)

    def get_available_maps(self) -> list[str]:
        return [f"/Game/Carla/Maps/{t}" for t in (*FAKE_TOWNS, "Town10HD_Opt")]

    def load_world(self, name: str, reset_settings: bool = True, map_layers: Any = None) -> World:
        if name not in FAKE_TOWNS:
            raise RuntimeError(f"map '{name}' not found")
        world = self.server._load(f"Carla/Maps/{name}", FAKE_TOWNS[name].read_text())
        if reset_settings:
            self.server.settings = carla.WorldSettings()
        return world

    def generate_opendrive_world(
        self, xodr: str, parameters: Any = None, reset_settings: bool = True
    ) -> World:
        assert isinstance(parameters, carla.OpendriveGenerationParameters)
        if self.server.load_hangs:
            raise _timeout(self.host, self.port, self.timeout_s * 1000)
        world = self.server._load("OpenDriveMap", xodr)
        if reset_settings:
            self.server.settings = carla.WorldSettings()
        return world

    def get_trafficmanager(self, port: int = 8000) -> TrafficManager:
        self.server._check_call()
        self.server.tm_port_open = port
        return self.server.tms.setdefault(port, TrafficManager(self.server, port))

    def apply_batch_sync(self, commands: list[Any], do_tick: bool = False) -> list[Any]:
        self.server._check_call()
        out = []
        for cmd in commands:
            assert isinstance(cmd, carla.command.DestroyActor), type(cmd)
            ok = self.server._destroy(cmd.actor_id)
            out.append(None if ok else f"actor {cmd.actor_id} not found")
        return out
