"""Background traffic and walkers on CARLA, drawn from the episode's seed.

Traffic is placed as the embedded world places it (lane segments outside junctions, weighted by
length, away from the ego and from each other) and handed to the Traffic Manager at its own share
of the speed limit (``speed_factor``). Walkers stand on CARLA's navigation mesh and walk with its
walker AI; the server draws their places from the walkers' seed (``set_pedestrians_seed``).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import carla
import numpy as np

from sim.carla_backend import convert
from sim.messages import ActorKind

if TYPE_CHECKING:
    from sim.carla_backend.world import CarlaWorld

log = logging.getLogger(__name__)

WALKER_MIN_DISTANCE_M = 40.0  # walkers start at least this far from the ego, as embedded ones
WALKER_DROP_M = 1.0  # walkers are spawned this far above the navigation mesh


def vehicle_blueprints(world: CarlaWorld) -> list[Any]:
    """The server's cars (four wheels), in a fixed order so the seed picks the same ones."""
    bps = [
        bp
        for bp in world.world.get_blueprint_library().filter("vehicle.*")
        if not bp.has_attribute("number_of_wheels")
        or bp.get_attribute("number_of_wheels").as_int() == 4
    ]
    return sorted(bps, key=lambda bp: bp.id)


def spawn_traffic(world: CarlaWorld, rng: np.random.Generator, n: int) -> int:
    """Spawn up to ``n`` background vehicles on autopilot; returns how many were placed."""
    if n == 0:
        return 0
    assert world.scenario is not None
    spec = world.scenario.traffic
    lo, hi = spec.speed_factor
    bps = vehicle_blueprints(world)
    segs = [s for s in world.map.segments if s.junction < 0 and s.length > 15.0]
    weights = np.array([s.length for s in segs])
    placed: list[tuple[float, float]] = []
    ex, ey = (float(v) for v in world.route.xy[0])
    tries = 0
    while len(placed) < n and tries < 200 * n:
        tries += 1
        seg = segs[int(rng.choice(len(segs), p=weights / weights.sum()))]
        s_on = float(rng.uniform(5.0, seg.length - 8.0))
        x, y, yaw = world.map.lane_point(seg.index, s_on)
        if math.hypot(x - ex, y - ey) < spec.min_distance_from_ego_m:
            continue
        gap = world.cfg.min_traffic_spacing_m
        if placed and min(math.hypot(x - px, y - py) for px, py in placed) < gap:
            continue
        bp = bps[int(rng.integers(len(bps)))]
        factor = float(rng.uniform(lo, hi))
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", "background")
        actor = world.spawn(bp, world.transform_at(x, y, yaw), try_only=True)
        if actor is None:
            continue
        placed.append((x, y))
        actor.set_autopilot(True, world.cfg.connection.tm_port)
        world.tm.vehicle_percentage_speed_difference(actor, 100.0 * (1.0 - factor))
        world.track(actor, ActorKind.VEHICLE, background=True)
    if len(placed) < n:
        log.warning("could place only %d of %d traffic vehicles", len(placed), n)
    return len(placed)


def spawn_walkers(world: CarlaWorld, rng: np.random.Generator, n: int) -> int:
    """Spawn up to ``n`` walkers, each with a walker-AI controller (started after the next tick);
    returns how many were placed."""
    if n == 0:
        return 0
    library = world.world.get_blueprint_library()
    bps = sorted(library.filter("walker.pedestrian.*"), key=lambda b: b.id)
    ex, ey = (float(v) for v in world.route.xy[0])
    placed = 0
    for _ in range(20 * n):
        if placed == n:
            break
        loc = world.world.get_random_location_from_navigation()
        if loc is None:
            continue
        x, y, _ = convert.location_to_ours(loc)
        if math.hypot(x - ex, y - ey) < WALKER_MIN_DISTANCE_M:
            continue
        bp = bps[int(rng.integers(len(bps)))]
        if bp.has_attribute("is_invincible"):
            bp.set_attribute("is_invincible", "false")
        loc.z += WALKER_DROP_M
        walker = world.spawn(bp, carla.Transform(loc), try_only=True)
        if walker is None:
            continue
        world.spawn_controller(walker)
        world.track(walker, ActorKind.PEDESTRIAN)
        placed += 1
    if placed < n:
        log.warning("could place only %d of %d walkers", placed, n)
    return placed
