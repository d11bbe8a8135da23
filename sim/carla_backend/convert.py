"""Conversions at the CARLA boundary, and nowhere else: frames, controls, images, light states.

Frames. CARLA's world is left-handed: x forward (east), y to the right (south), z up, angles in
degrees with yaw clockwise seen from above and pitch positive nose-up. Ours is right-handed
(x east, y north, z up; the OpenDRIVE frame; angles in radians, counter-clockwise). A point
converts by negating y; a pose converts by conjugating its matrix with ``S = diag(1, -1, 1)``:
``M_ours = S · M_carla · S`` (and back the same way). In angles (REP-103 roll, pitch, yaw about
x, y, z): ``roll = radians(roll_c)``, ``pitch = -radians(pitch_c)`` (CARLA's nose-up is a negative
rotation about our y axis, which points left), ``yaw = -radians(yaw_c)``.

Controls. Our :class:`~sim.messages.Control` is physical (acceleration m/s², front-wheel angle
rad, positive left); CARLA's ``VehicleControl`` is pedal and wheel positions in [0, 1] and
[-1, 1] (positive steer turns right). :class:`LongitudinalMap` is the documented mapping
(docs/carla.md): a first-order model of the car's forces.

Images. CARLA cameras deliver BGRA ``uint8``. Depth is 24 bits spread over R, G, B:
``d = (R + 256·G + 256²·B) / (256³ − 1) · 1000`` m. Semantic segmentation holds the
``CityObjectLabel`` tag in R; 0.9.16's instance segmentation holds the tag in R and the actor id
(low 16 bits) in G (low byte) and B (high byte).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import carla
import numpy as np
from numpy.typing import NDArray

from sim.messages import ActorKind, Control, FloatArray, LightState, VehicleParams

_S3 = np.diag([1.0, -1.0, 1.0])
_S4 = np.diag([1.0, -1.0, 1.0, 1.0])
DEPTH_FAR_M = 1000.0  # CARLA's depth camera range: the encoded value 1.0 is 1 km
GRAVITY_MPS2 = 9.81


# ------------------------------------------------------------------------------------ frames
def location_to_ours(loc: Any) -> FloatArray:
    """A CARLA ``Location``/``Vector3D`` to a point (or vector) in our frame ``(3,)``."""
    return np.array([loc.x, -loc.y, loc.z], dtype=np.float64)


def location_from_ours(x: float, y: float, z: float = 0.0) -> carla.Location:
    """A point in our frame to a CARLA ``Location``."""
    return carla.Location(x=float(x), y=float(-y), z=float(z))


def vector_from_ours(x: float, y: float, z: float = 0.0) -> carla.Vector3D:
    return carla.Vector3D(x=float(x), y=float(-y), z=float(z))


def yaw_from_ours(yaw_rad: float) -> float:
    """Our yaw (rad, counter-clockwise) to CARLA's (degrees, clockwise)."""
    return -math.degrees(yaw_rad)


def rotation_matrix_carla(rot: carla.Rotation) -> FloatArray:
    """The ``(3, 3)`` matrix of a CARLA rotation (LibCarla's convention, as ``get_matrix``)."""
    cp, sp = math.cos(math.radians(rot.pitch)), math.sin(math.radians(rot.pitch))
    cy, sy = math.cos(math.radians(rot.yaw)), math.sin(math.radians(rot.yaw))
    cr, sr = math.cos(math.radians(rot.roll)), math.sin(math.radians(rot.roll))
    return np.array(
        [
            [cp * cy, cy * sp * sr - sy * cr, -cy * sp * cr - sy * sr],
            [cp * sy, sy * sp * sr + cy * cr, -sy * sp * cr + cy * sr],
            [sp, -cp * sr, cp * cr],
        ]
    )


def transform_to_ours(tf: carla.Transform) -> FloatArray:
    """A CARLA transform to the ``(4, 4)`` homogeneous matrix of the same pose in our frame."""
    m = np.eye(4)
    m[:3, :3] = rotation_matrix_carla(tf.rotation)
    m[:3, 3] = (tf.location.x, tf.location.y, tf.location.z)
    return _S4 @ m @ _S4


def transform_from_ours(m: FloatArray) -> carla.Transform:
    """A ``(4, 4)`` pose in our frame to a CARLA transform (the inverse of
    :func:`transform_to_ours`)."""
    mc = _S4 @ np.asarray(m, dtype=np.float64) @ _S4
    r = mc[:3, :3]
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, r[2, 0]))))
    yaw = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    roll = math.degrees(math.atan2(-r[2, 1], r[2, 2]))
    return carla.Transform(
        carla.Location(x=float(mc[0, 3]), y=float(mc[1, 3]), z=float(mc[2, 3])),
        carla.Rotation(pitch=pitch, yaw=yaw, roll=roll),
    )


def pose2d(tf: carla.Transform) -> tuple[float, float, float]:
    """``(x, y, yaw)`` in our map frame (m, m, rad) of a CARLA transform."""
    m = transform_to_ours(tf)
    return float(m[0, 3]), float(m[1, 3]), math.atan2(m[1, 0], m[0, 0])


def points_to_ours(points: Any) -> FloatArray:
    """A sequence of CARLA locations to an ``(N, 3)`` array in our frame."""
    return np.array([[p.x, -p.y, p.z] for p in points], dtype=np.float64).reshape(-1, 3)


# ---------------------------------------------------------------------------------- controls
@dataclass(frozen=True)
class LongitudinalMap:
    """Acceleration (m/s²) to CARLA's throttle and brake, from a first-order force balance.

    The car's acceleration is ``throttle · full_throttle − brake · (full_brake − r(v)) − r(v)``
    with the resistance ``r(v) = rolling + drag · v²`` (m/s²). Inverting it for a requested
    ``accel``: ``throttle = clip((accel + r) / full_throttle, 0, 1)`` when ``accel + r ≥ 0``,
    else ``brake = clip(−(accel + r) / (full_brake − r), 0, 1)``. So the controller's whole range
    maps onto the pedals: ``max_accel`` and beyond is full throttle, ``−max_decel`` and beyond
    is full brake, and ``accel = −r`` is coasting.

    :param full_throttle_mps2: the engine's acceleration at throttle 1, before resistances
    :param full_brake_mps2: total deceleration at brake 1 (resistances included)
    :param rolling_mps2: rolling-resistance deceleration (c_rr · g, c_rr ≈ 0.015)
    :param drag_per_m: aerodynamic deceleration per speed² (½ ρ c_d A / m, 1/m)
    """

    full_throttle_mps2: float = 3.0
    full_brake_mps2: float = 8.0
    rolling_mps2: float = 0.15
    drag_per_m: float = 2.2e-4

    @classmethod
    def for_vehicle(
        cls,
        params: VehicleParams,
        physics: Any | None = None,
        frontal_area_m2: float = 2.2,
        air_density_kgpm3: float = 1.2,
    ) -> LongitudinalMap:
        """Full throttle and brake at the vehicle's limits; drag from its physics control
        (``mass`` kg, ``drag_coefficient``) when given."""
        drag = cls.drag_per_m
        if physics is not None and float(physics.mass) > 0:
            drag = (
                0.5 * air_density_kgpm3 * float(physics.drag_coefficient) * frontal_area_m2
            ) / float(physics.mass)
        return cls(params.max_accel_mps2, params.max_decel_mps2, cls.rolling_mps2, drag)

    def resistance_mps2(self, speed_mps: float) -> float:
        return self.rolling_mps2 + self.drag_per_m * speed_mps * speed_mps

    def pedals(self, accel_mps2: float, speed_mps: float) -> tuple[float, float]:
        """``(throttle, brake)`` in [0, 1] for a requested acceleration at a speed."""
        r = self.resistance_mps2(speed_mps)
        need = accel_mps2 + r
        if need >= 0.0:
            return min(need / self.full_throttle_mps2, 1.0), 0.0
        return 0.0, min(-need / max(self.full_brake_mps2 - r, 1e-6), 1.0)

    def accel(self, throttle: float, brake: float, speed_mps: float) -> float:
        """The acceleration the model predicts for pedal positions (the inverse of ``pedals``)."""
        r = self.resistance_mps2(speed_mps)
        return throttle * self.full_throttle_mps2 - brake * (self.full_brake_mps2 - r) - r


def steer_to_carla(steer_rad: float, max_steer_deg: float) -> float:
    """Our front-wheel angle (rad, + left) to CARLA's steer in [-1, 1] (+ right)."""
    return float(np.clip(-math.degrees(steer_rad) / max_steer_deg, -1.0, 1.0))


def steer_from_carla(steer: float, max_steer_deg: float) -> float:
    """CARLA's steer in [-1, 1] (+ right) to our front-wheel angle (rad, + left)."""
    return -math.radians(steer * max_steer_deg)


def control_to_carla(
    control: Control, speed_mps: float, longitudinal: LongitudinalMap, max_steer_deg: float
) -> carla.VehicleControl:
    """Our physical :class:`Control` to CARLA's ``VehicleControl`` for a car at ``speed_mps``.

    :param max_steer_deg: the front wheels' largest angle (degrees), from
        ``get_physics_control().wheels[0].max_steer_angle``
    """
    throttle, brake = longitudinal.pedals(control.accel, speed_mps)
    return carla.VehicleControl(
        throttle=float(throttle),
        steer=steer_to_carla(control.steer, max_steer_deg),
        brake=float(brake),
        hand_brake=False,
        reverse=False,
        manual_gear_shift=False,
    )


# ------------------------------------------------------------------------------------ images
def bgra(image: Any) -> NDArray[np.uint8]:
    """A CARLA image's pixels as an ``(H, W, 4)`` BGRA view (no copy)."""
    return np.frombuffer(image.raw_data, dtype=np.uint8).reshape(image.height, image.width, 4)


def rgb_of(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """BGRA ``(H, W, 4)`` to a contiguous RGB ``(H, W, 3)``."""
    return np.ascontiguousarray(pixels[..., 2::-1])


def depth_of(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """A depth camera's BGRA ``(H, W, 4)`` to metres ``(H, W)`` (CARLA's 24-bit encoding)."""
    b = pixels[..., 0].astype(np.float64)
    g = pixels[..., 1].astype(np.float64)
    r = pixels[..., 2].astype(np.float64)
    return ((r + g * 256.0 + b * 65536.0) / (256.0**3 - 1.0) * DEPTH_FAR_M).astype(np.float32)


def depth_to_bgra(depth_m: NDArray[np.floating]) -> NDArray[np.uint8]:
    """The inverse of :func:`depth_of` (to write test images and check round trips)."""
    code = np.clip(np.rint(np.asarray(depth_m) / DEPTH_FAR_M * (256.0**3 - 1.0)), 0, 256**3 - 1)
    code = code.astype(np.int64)
    out = np.zeros((*code.shape, 4), dtype=np.uint8)
    out[..., 2] = code % 256
    out[..., 1] = (code // 256) % 256
    out[..., 0] = code // 65536
    out[..., 3] = 255
    return out


def semantic_of(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A semantic or instance camera's BGRA to the ``CityObjectLabel`` tag per pixel ``(H, W)``."""
    return np.ascontiguousarray(pixels[..., 2])


def instance_of(pixels: NDArray[np.uint8]) -> NDArray[np.int32]:
    """An instance camera's BGRA to the actor id per pixel ``(H, W)`` (G + 256·B; 0 where the
    pixel belongs to no actor)."""
    return pixels[..., 1].astype(np.int32) + 256 * pixels[..., 0].astype(np.int32)


# ---------------------------------------------------------------------------- states, kinds
_LIGHT_STATES = {
    carla.TrafficLightState.Red: LightState.RED,
    carla.TrafficLightState.Yellow: LightState.YELLOW,
    carla.TrafficLightState.Green: LightState.GREEN,
    carla.TrafficLightState.Off: LightState.OFF,
    carla.TrafficLightState.Unknown: LightState.UNKNOWN,
}


def light_state(state: Any) -> LightState:
    """``carla.TrafficLightState`` to our :class:`LightState`."""
    return _LIGHT_STATES.get(state, LightState.UNKNOWN)


def actor_kind(type_id: str) -> int:
    """What a CARLA actor is, for collisions: an :class:`ActorKind`, or 0 for the static layout
    (props, poles, lights, signs, walls: ``static.*``, ``traffic.*`` and the level itself)."""
    if type_id.startswith("vehicle."):
        return int(ActorKind.VEHICLE)
    if type_id.startswith("walker."):
        return int(ActorKind.PEDESTRIAN)
    return 0
