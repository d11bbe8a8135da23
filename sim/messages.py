"""Messages exchanged between the stages (DESIGN.md, "Messages between stages").

Every message is a small frozen dataclass carrying ``t`` (simulation time, s), ``frame`` (tick
index) and ``valid``; downstream stages must respect ``valid``. Arrays inside messages are numpy
and are treated as read-only by convention.

Frames: right-handed, x forward, y left, z up. "Map frame" is the OpenDRIVE inertial frame
(x east, y north); "ego frame" has its origin at the ego's rear axle, x along its heading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


class ActorKind(IntEnum):
    """Class of a dynamic actor; the values are the COCO category ids used by perception."""

    VEHICLE = 1
    PEDESTRIAN = 2


class SignType(IntEnum):
    """Traffic sign classes, keyed by their OpenDRIVE (German StVO) signal type."""

    SPEED_LIMIT = 274
    STOP = 206
    YIELD = 205


class DetectionClass(IntEnum):
    """Object classes of camera boxes; the values are the COCO category ids of the datasets.

    Vehicles and pedestrians share :class:`ActorKind`'s values; signs are split by type.
    """

    VEHICLE = 1
    PEDESTRIAN = 2
    TRAFFIC_LIGHT = 3
    SPEED_LIMIT_SIGN = 4
    STOP_SIGN = 5
    YIELD_SIGN = 6


SIGN_CLASS = {
    SignType.SPEED_LIMIT: DetectionClass.SPEED_LIMIT_SIGN,
    SignType.STOP: DetectionClass.STOP_SIGN,
    SignType.YIELD: DetectionClass.YIELD_SIGN,
}


class SemanticClass(IntEnum):
    """Per-pixel semantic ids of camera frames: CARLA 0.9.16's ``CityObjectLabel`` values (the
    tags its semantic camera writes), so labels mean the same on both backends."""

    UNLABELED = 0
    ROAD = 1
    SIDEWALK = 2
    POLE = 6
    TRAFFIC_LIGHT = 7
    TRAFFIC_SIGN = 8
    VEGETATION = 9
    TERRAIN = 10
    SKY = 11
    PEDESTRIAN = 12
    CAR = 14
    TRUCK = 15
    ROAD_LINE = 24
    GROUND = 25


class LightState(IntEnum):
    """State of a traffic light head, as CARLA's ``carla.TrafficLightState`` orders them."""

    RED = 0
    YELLOW = 1
    GREEN = 2
    OFF = 3
    UNKNOWN = 4


@dataclass(frozen=True)
class VehicleState:
    """Ego state in the map frame.

    :param x: rear-axle x (m, east)
    :param y: rear-axle y (m, north)
    :param yaw: heading (rad, counter-clockwise from east)
    :param speed: longitudinal speed (m/s, >= 0)
    :param accel: current (lagged) longitudinal acceleration (m/s²)
    :param steer: current (lagged) front-wheel angle (rad, positive = left)
    """

    t: float
    frame: int
    x: float
    y: float
    yaw: float
    speed: float
    accel: float = 0.0
    steer: float = 0.0
    valid: bool = True

    def to_ego(self, xy: FloatArray) -> FloatArray:
        """Transform map-frame points ``(N, 2)`` into this state's ego frame ``(N, 2)``."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        d = np.asarray(xy, dtype=np.float64) - (self.x, self.y)
        out = np.empty(d.shape)  # filled column by column: np.stack costs as much as the maths
        out[..., 0] = c * d[..., 0] + s * d[..., 1]
        out[..., 1] = -s * d[..., 0] + c * d[..., 1]
        return out

    def to_map(self, xy: FloatArray) -> FloatArray:
        """Transform ego-frame points ``(N, 2)`` into the map frame ``(N, 2)``."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        p = np.asarray(xy, dtype=np.float64)
        return np.stack(
            [self.x + c * p[..., 0] - s * p[..., 1], self.y + s * p[..., 0] + c * p[..., 1]], -1
        )


@dataclass(frozen=True)
class Event:
    """Something that happened this tick (an infraction, or an informational event).

    :param type: the METRICS.md key (``collisions_vehicle``, ``red_light``, ``route_dev``, ...)
        or an informational type (``speeding``, ``scenario_cleared``)
    :param x: where it happened (map frame, m)
    :param y: where it happened (map frame, m)
    :param other_id: the other actor or landmark involved, -1 if none
    :param detail: a short human-readable description
    :param value: a type-specific number (speeding: excess m/s; outside lanes: metres)
    """

    type: str
    t: float
    frame: int
    x: float = 0.0
    y: float = 0.0
    other_id: int = -1
    detail: str = ""
    value: float = 0.0


@dataclass(frozen=True)
class ActorsGT:
    """Ground truth of all dynamic actors except the ego, as parallel arrays (map frame).

    Shapes are ``(M,)``; ``kind`` holds :class:`ActorKind` values.
    """

    id: NDArray[np.int64]
    kind: NDArray[np.int64]
    x: FloatArray
    y: FloatArray
    yaw: FloatArray
    speed: FloatArray
    length: FloatArray
    width: FloatArray
    height: FloatArray

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True)
class SignGT:
    """A traffic sign from the map (map frame). ``yaw`` is the direction its face looks at."""

    id: int
    type: SignType
    value: float  # speed limit in km/h as printed on the sign; 0 for stop/yield
    x: float
    y: float
    z: float
    yaw: float


@dataclass(frozen=True)
class LightGT:
    """A traffic-light head and the stop line it governs (map frame)."""

    id: int
    group: int  # junction id: heads of one junction cycle together
    state: LightState
    x: float
    y: float
    z: float
    yaw: float  # direction the lit face looks at
    stop_x: float  # centre of the stop line
    stop_y: float
    stop_yaw: float  # driving direction of the governed lanes at the stop line


@dataclass(frozen=True)
class GroundTruth:
    """Privileged ground truth, for training and scoring only."""

    actors: ActorsGT
    signs: tuple[SignGT, ...]
    lights: tuple[LightGT, ...]


@dataclass(frozen=True)
class RouteAhead:
    """The route ahead of the ego, resampled every ``step_m`` metres, in the ego frame.

    :param xy: centreline points ``(N, 2)`` (ego frame, m); the first is the ego's projection
    :param yaw: centreline heading ``(N,)`` (ego frame, rad)
    :param speed_limit_mps: legal limit at each point ``(N,)`` (m/s), from the map's signs
    :param lane_width_m: lane width at each point ``(N,)`` (m)
    :param left_lane: ``(N,)`` +1 if a driving lane in the same direction is on the left,
        -1 if the left lane is the opposite direction's, 0 if there is none
    :param junction: ``(N,)`` junction id at each point, -1 outside junctions
    :param s0_m: route distance of the first point from the route's start (m)
    :param remaining_m: route distance from the first point to the goal (m)
    """

    xy: FloatArray
    yaw: FloatArray
    speed_limit_mps: FloatArray
    lane_width_m: FloatArray
    left_lane: NDArray[np.int64]
    junction: NDArray[np.int64]
    step_m: float
    s0_m: float
    remaining_m: float


@dataclass(frozen=True)
class CameraFrame:
    """One camera image with exact labels (filled by the camera sensor; docs/camera.md).

    Image coordinates are OpenCV's: pixel ``(u, v)`` has its centre at integer ``(u, v)``, so a
    box edge at ``u`` is ``u + 0.5`` in COCO's convention. ``pose`` maps the optical frame
    (x right, y down, z forward) into the ego frame. Box arrays are parallel, ``(B, ...)``.
    """

    t: float
    frame: int
    rgb: NDArray[np.uint8]  # (H, W, 3)
    K: FloatArray  # (3, 3) pinhole intrinsics
    pose: FloatArray  # (4, 4) camera-to-ego transform
    depth: NDArray[np.float32] | None = None  # (H, W) m along the optical axis; sky 1000 m
    semantic: NDArray[np.uint8] | None = None  # (H, W) SemanticClass ids
    instance: NDArray[np.int32] | None = None  # (H, W) actor/landmark ids, 0 for stuff
    boxes: FloatArray | None = None  # (B, 4) x0, y0, x1, y1 px, clipped to the image
    box_class: NDArray[np.int64] | None = None  # (B,) DetectionClass ids
    box_id: NDArray[np.int64] | None = None  # (B,) actor or landmark id
    box_truncation: FloatArray | None = None  # (B,) share of the box outside the image
    box_occlusion: FloatArray | None = None  # (B,) share of its in-image pixels hidden
    box_visible_px: NDArray[np.int64] | None = None  # (B,) pixels of it in the image
    box_value: FloatArray | None = None  # (B,) speed limit (km/h) of a sign, else 0
    box_state: NDArray[np.int64] | None = None  # (B,) LightState of a light, else -1
    valid: bool = True


@dataclass(frozen=True)
class Observation:
    """What the world gives the stack each tick."""

    t: float
    frame: int
    ego: VehicleState
    route: RouteAhead
    events: tuple[Event, ...]
    ground_truth: GroundTruth
    sensors: dict[str, CameraFrame] = field(default_factory=dict)
    valid: bool = True


@dataclass(frozen=True)
class DetectedObject:
    """A detected vehicle or pedestrian. Position is the box centre in the ego frame (m)."""

    id: int  # track id (ground-truth id for the ground-truth perceiver)
    kind: ActorKind
    x: float
    y: float
    yaw: float  # ego frame, rad
    speed: float  # m/s along its own heading
    length: float
    width: float
    score: float = 1.0
    # image box x0, y0, x1, y1 (px) on the camera frame of the last detection step; None when
    # that step did not box it (a tracked object coasting) or the perceiver has no image
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class DetectedSign:
    """A detected sign facing the ego; position in the ego frame (m)."""

    id: int
    type: SignType
    value: float  # km/h for speed limits, 0 otherwise
    x: float
    y: float
    score: float = 1.0


@dataclass(frozen=True)
class DetectedLight:
    """The traffic light that governs the ego's lane and where its stop line is (ego frame)."""

    id: int
    state: LightState
    stop_x: float
    stop_y: float
    score: float = 1.0


@dataclass(frozen=True)
class PerceptionOutput:
    """What perception believes about the scene."""

    t: float
    frame: int
    objects: tuple[DetectedObject, ...]
    signs: tuple[DetectedSign, ...]
    lights: tuple[DetectedLight, ...]
    speed_limit_mps: float | None  # the active limit (persists after its sign leaves view)
    latency_s: float = 0.0
    valid: bool = True


@dataclass(frozen=True)
class Plan:
    """A reference for the controller, in the ego frame at planning time.

    :param path: reference path ``(N, 2)`` (m), spaced ``step_m`` apart along its length
    :param speed: reference speed at each path point ``(N,)`` (m/s)
    :param step_m: spacing of the path points (m)
    :param horizon_s: how far ahead in time the plan is meant to be followed (s)
    :param origin: map-frame pose ``(x, y, yaw)`` of the ego frame the plan is expressed in, so
        a controller running faster than the planner can re-express it in the current frame
    """

    t: float
    frame: int
    path: FloatArray
    speed: FloatArray
    step_m: float
    horizon_s: float
    origin: tuple[float, float, float]
    valid: bool = True

    def path_in(self, state: VehicleState) -> FloatArray:
        """The path ``(N, 2)`` expressed in the ego frame of ``state``."""
        ox, oy, oyaw = self.origin
        c, s = np.cos(oyaw), np.sin(oyaw)
        p = self.path
        world = np.stack([ox + c * p[:, 0] - s * p[:, 1], oy + s * p[:, 0] + c * p[:, 1]], -1)
        return state.to_ego(world)


@dataclass(frozen=True)
class Control:
    """Physical actuation request: backends convert it to their own (CARLA's throttle/brake).

    :param accel: longitudinal acceleration (m/s², negative brakes)
    :param steer: front-wheel angle (rad, positive = left)
    :param reason: empty when nominal; otherwise why a fallback was returned
    """

    t: float
    frame: int
    accel: float
    steer: float
    valid: bool = True
    reason: str = ""


@dataclass(frozen=True)
class VehicleParams:
    """Physical parameters and actuator limits of a car (the ego by default).

    The world integrates the ego with these; controllers derive their bounds from them.
    Defaults: a mid-size sedan (CARLA's ``vehicle.lincoln.mkz``-like footprint).
    """

    wheelbase_m: float = 2.85
    length_m: float = 4.8
    width_m: float = 2.0
    height_m: float = 1.5
    rear_overhang_m: float = 0.95  # rear bumper to rear axle
    max_accel_mps2: float = 3.0  # engine limit
    max_decel_mps2: float = 8.0  # emergency-brake limit (a positive number)
    max_steer_rad: float = 0.5  # front-wheel angle limit
    max_steer_rate_radps: float = 0.6
    accel_time_constant_s: float = 0.2  # first-order lag of the longitudinal actuator
    steer_time_constant_s: float = 0.1  # first-order lag of the steering actuator
    max_speed_mps: float = 40.0

    @property
    def center_offset_m(self) -> float:
        """Distance from the rear axle forward to the box centre (m)."""
        return self.length_m / 2.0 - self.rear_overhang_m
