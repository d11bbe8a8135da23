"""Settings of the CARLA backend, and the ego car's geometry as CARLA built it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import carla
import numpy as np

from sim.carla_backend import convert
from sim.carla_backend.client import CarlaConnection
from sim.events import EventSettings
from sim.messages import VehicleParams
from sim.pedestrians import PedestrianSettings

MIN_SUBSTEP_S = 0.01  # CARLA's physics sub-step must not exceed this for stable vehicles
MAX_SUBSTEPS = 16  # CARLA's upper bound on sub-steps per tick


@dataclass(frozen=True)
class OpenDriveMesh:
    """How CARLA builds a world from a bare ``.xodr`` (``carla.OpendriveGenerationParameters``).

    No walls by default: the embedded world has none, so leaving the road scores the same.
    """

    vertex_distance_m: float = 2.0
    max_road_length_m: float = 500.0
    wall_height_m: float = 0.0
    additional_width_m: float = 0.6
    smooth_junctions: bool = True
    enable_mesh_visibility: bool = True
    enable_pedestrian_navigation: bool = True

    def parameters(self) -> carla.OpendriveGenerationParameters:
        return carla.OpendriveGenerationParameters(
            vertex_distance=self.vertex_distance_m,
            max_road_length=self.max_road_length_m,
            wall_height=self.wall_height_m,
            additional_width=self.additional_width_m,
            smooth_junctions=self.smooth_junctions,
            enable_mesh_visibility=self.enable_mesh_visibility,
            enable_pedestrian_navigation=self.enable_pedestrian_navigation,
        )


@dataclass(frozen=True)
class CarlaSettings:
    """Settings of the CARLA backend.

    :param ego_blueprint: the ego's vehicle blueprint (its size and steering come from CARLA)
    :param traffic_gap_m: the Traffic Manager's distance to the leading vehicle (m)
    :param min_traffic_spacing_m: least distance between spawned traffic vehicles (m)
    :param spawn_height_m: actors are spawned this far above the road and drop onto it (m)
    :param min_box_pixels: instance pixels an actor needs to get a camera box
    """

    connection: CarlaConnection = field(default_factory=CarlaConnection)
    events: EventSettings = field(default_factory=EventSettings)
    mesh: OpenDriveMesh = field(default_factory=OpenDriveMesh)
    ego_blueprint: str = "vehicle.lincoln.mkz_2020"
    traffic_gap_m: float = 2.5
    min_traffic_spacing_m: float = 12.0
    spawn_height_m: float = 0.3
    min_box_pixels: int = 12
    pedestrians: PedestrianSettings = field(default_factory=PedestrianSettings)


@dataclass(frozen=True)
class EgoGeometry:
    """The ego car as CARLA built it, in its actor frame (our axes: x forward, y left, z up).

    :param rear_axle_x_m: x of the rear axle's centre (the ego frame's origin)
    :param ground_z_m: z of the ground under the car
    :param centre: ``(3,)`` centre of its bounding box
    :param params: its size, wheelbase and steering limit as :class:`VehicleParams`
    """

    rear_axle_x_m: float
    ground_z_m: float
    centre: tuple[float, float, float]
    params: VehicleParams

    @classmethod
    def of(cls, actor: Any, base: VehicleParams | None = None) -> EgoGeometry:
        """Read it from the actor's bounding box and physics control (wheel positions are world
        coordinates in cm, CARLA's convention)."""
        bb = actor.bounding_box
        physics = actor.get_physics_control()
        world_to_actor = np.linalg.inv(convert.transform_to_ours(actor.get_transform()))
        local = []
        for w in physics.wheels:
            p = convert.location_to_ours(w.position) / 100.0
            local.append((world_to_actor @ np.append(p, 1.0))[:3])
        front_x = 0.5 * (local[0][0] + local[1][0])
        rear_x = 0.5 * (local[2][0] + local[3][0])
        c = convert.location_to_ours(bb.location)
        ext = bb.extent
        params = replace(
            base or VehicleParams(),
            wheelbase_m=float(front_x - rear_x),
            length_m=2.0 * ext.x,
            width_m=2.0 * ext.y,
            height_m=2.0 * ext.z,
            rear_overhang_m=float(rear_x - (c[0] - ext.x)),
            max_steer_rad=math.radians(float(physics.wheels[0].max_steer_angle)),
        )
        return cls(
            float(rear_x), float(c[2] - ext.z), (float(c[0]), float(c[1]), float(c[2])), params
        )


def substeps(dt: float) -> tuple[int, float]:
    """CARLA's ``(max_substeps, max_substep_delta_time)`` for a tick of ``dt`` s: sub-steps of at
    most :data:`MIN_SUBSTEP_S` where CARLA's bound of :data:`MAX_SUBSTEPS` allows."""
    n = min(MAX_SUBSTEPS, max(1, math.ceil(dt / MIN_SUBSTEP_S - 1e-9)))
    return n, dt / n
