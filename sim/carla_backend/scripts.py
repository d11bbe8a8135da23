"""The scenario's scripted events, played on CARLA with the embedded world's triggers.

Each script spawns its actor at ``reset`` and is updated once per tick before the world ticks,
triggered by the ego's route progress exactly as in :mod:`sim.world`:

- :class:`LeadBrakes`: a vehicle ahead on the route, driven along it by the Traffic Manager at
  the scripted speed; when the ego's progress reaches ``brake_at_route_m`` the script takes it
  over and brakes at ``decel_mps2`` (the pedal from
  :class:`~sim.carla_backend.convert.LongitudinalMap`), stands ``stop_s``, then hands it back
  to the Traffic Manager;
- :class:`Crossing`: a walker on the kerb that crosses the whole road (``WalkerControl``) when
  the ego comes within ``trigger_distance_m``;
- :class:`Parked`: a vehicle standing in the route's lane with its hand brake on; not passing it
  within ``clear_within_s`` is a scenario timeout.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import carla
import numpy as np

from sim.carla_backend import convert
from sim.map import project_s
from sim.messages import Event
from sim.pedestrians import crossing_at
from sim.scenario import LeadVehicleBrakes, ParkedVehicle, PedestrianCrossing

if TYPE_CHECKING:
    from sim.carla_backend.world import CarlaWorld

STOPPED_MPS = 0.1
PATH_STEP_M = 10.0  # spacing of the locations a Traffic Manager path is given as


class Script:
    actor: Any = None
    kind = "vehicle"  # or "walker": what it counts as in ground truth and boxes

    def update(self, world: CarlaWorld) -> None:
        raise NotImplementedError


class LeadBrakes(Script):
    def __init__(self, world: CarlaWorld, ev: LeadVehicleBrakes) -> None:
        self.ev = ev
        p = world.ego_params
        start = p.length_m - p.rear_overhang_m + ev.gap_m + 2.5  # front bumper + gap + half car
        x, y, yaw = world.route_pose(start)
        self.actor = world.spawn_vehicle(x, y, yaw, role="scripted")
        self.speed_kmh = ev.speed_mps * 3.6
        i = int(np.searchsorted(world.route.s, start))
        step = max(1, int(PATH_STEP_M / world.route.step_m))
        self.path = [
            world.ground_location(float(px), float(py))
            for px, py in world.route.xy[i + step :: step].tolist()
        ]
        self._autopilot(world)
        fwd = (math.cos(yaw) * ev.speed_mps, math.sin(yaw) * ev.speed_mps)
        self.actor.set_target_velocity(convert.vector_from_ours(*fwd))
        self.phase = "cruise"
        self.stopped_at = 0.0

    def _autopilot(self, world: CarlaWorld) -> None:
        tm = world.tm
        self.actor.set_autopilot(True, world.cfg.connection.tm_port)
        tm.set_desired_speed(self.actor, self.speed_kmh)
        tm.auto_lane_change(self.actor, False)
        if self.path:
            tm.set_path(self.actor, self.path)

    def update(self, world: CarlaWorld) -> None:
        speed = world.speed_of(self.actor)
        if self.phase == "cruise" and world.progress_m >= self.ev.brake_at_route_m:
            self.phase = "braking"
            self.actor.set_autopilot(False, world.cfg.connection.tm_port)
        if self.phase == "braking":
            if speed <= STOPPED_MPS:
                self.phase, self.stopped_at = "stopped", world.t
            else:
                _, brake = world.longitudinal.pedals(-self.ev.decel_mps2, speed)
                self.actor.apply_control(carla.VehicleControl(throttle=0.0, brake=brake))
        if self.phase == "stopped":
            self.actor.apply_control(carla.VehicleControl(throttle=0.0, brake=1.0))
            if world.t - self.stopped_at >= self.ev.stop_s:
                self.phase = "done"
                self._autopilot(world)


class Crossing(Script):
    kind = "walker"

    def __init__(self, world: CarlaWorld, ev: PedestrianCrossing) -> None:
        self.ev = ev
        i = int(np.searchsorted(world.route.s, ev.at_route_m))
        seg_i = int(world.route.segment[min(i, len(world.route.s) - 1)])
        s_on = project_s(world.map.segments[seg_i], world.route.xy[i])
        c = crossing_at(world.map, seg_i, s_on)
        start, end = ((c.x0, c.y0), (c.x1, c.y1))
        if ev.from_side == "left":
            start, end = end, start
        self.start = np.array(start)
        self.length = math.hypot(end[0] - start[0], end[1] - start[1])
        d = (np.array(end) - self.start) / max(self.length, 1e-9)
        self.direction = convert.vector_from_ours(float(d[0]), float(d[1]), 0.0)
        self.actor = world.spawn_walker(float(start[0]), float(start[1]), math.atan2(d[1], d[0]))
        self.phase = "waiting"

    def update(self, world: CarlaWorld) -> None:
        if self.phase == "waiting" and world.progress_m >= (
            self.ev.at_route_m - self.ev.trigger_distance_m
        ):
            self.phase = "crossing"
        if self.phase == "crossing":
            x, y, _ = convert.location_to_ours(self.actor.get_location())
            if math.hypot(x - self.start[0], y - self.start[1]) >= self.length:
                self.phase = "done"
                self.actor.apply_control(carla.WalkerControl(self.direction, 0.0))
            else:
                self.actor.apply_control(carla.WalkerControl(self.direction, self.ev.speed_mps))


class Parked(Script):
    def __init__(self, world: CarlaWorld, ev: ParkedVehicle) -> None:
        self.ev = ev
        x, y, yaw = world.route_pose(ev.at_route_m)
        x -= math.sin(yaw) * ev.lateral_offset_m  # left of the lane centre
        y += math.cos(yaw) * ev.lateral_offset_m
        self.actor = world.spawn_vehicle(x, y, yaw, role="scripted")
        self.actor.apply_control(carla.VehicleControl(hand_brake=True, brake=1.0))
        self.approached_at: float | None = None
        self.settled = False

    def update(self, world: CarlaWorld) -> None:
        if self.settled:
            return
        progress = world.progress_m
        if self.approached_at is None and progress >= self.ev.at_route_m - 50.0:
            self.approached_at = world.t
        if progress >= self.ev.at_route_m + 10.0:
            self.settled = True
        elif (
            self.approached_at is not None and world.t - self.approached_at > self.ev.clear_within_s
        ):
            self.settled = True
            cx, cy = world.ego_centre()
            world.add_event(
                Event(
                    "scenario_timeouts",
                    world.t,
                    world.frame,
                    cx,
                    cy,
                    detail=f"did not pass the parked vehicle in {self.ev.clear_within_s:g} s",
                )
            )


def make_scripts(world: CarlaWorld) -> list[Script]:
    """One script per scenario event (spawning its actor); scripts already made are put in
    ``world.scripts`` one by one, so a failure part-way leaves nothing untracked."""
    assert world.scenario is not None
    for ev in world.scenario.events:
        if isinstance(ev, LeadVehicleBrakes):
            world.scripts.append(LeadBrakes(world, ev))
        elif isinstance(ev, PedestrianCrossing):
            world.scripts.append(Crossing(world, ev))
        elif isinstance(ev, ParkedVehicle):
            world.scripts.append(Parked(world, ev))
    return world.scripts
