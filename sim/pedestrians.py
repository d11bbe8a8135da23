"""Pedestrians that cross roads: wait at the kerb, cross when the gap is long enough, repeat.

Each pedestrian owns a crossing line perpendicular to a road, from beyond its right edge to beyond
its left edge, and walks along it. Before stepping off it checks that no vehicle (the ego
included) is closer to the crossing than ``gap_base_m + gap_time_s × speed``. Scripted pedestrians
(the scenario's ``pedestrian_crossing``) skip the check: they start when told to.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.map import RoadMap

PED_LENGTH_M = 0.5
PED_WIDTH_M = 0.6
PED_HEIGHT_M = 1.8
KERB_CLEARANCE_M = 1.0  # pedestrians wait this far outside the road's edge


@dataclass(frozen=True)
class PedestrianSettings:
    speed_range_mps: tuple[float, float] = (1.1, 1.6)
    wait_range_s: tuple[float, float] = (3.0, 20.0)
    gap_base_m: float = 15.0
    gap_time_s: float = 5.0
    decide_every: int = 4  # ticks between decisions (wait, cross, arrive): 5 Hz at 0.05 s


@dataclass(frozen=True)
class Crossing:
    """A crossing line: from ``(x0, y0)`` to ``(x1, y1)``; the road spans ``[u_in, u_out]``."""

    x0: float
    y0: float
    x1: float
    y1: float
    u_in: float
    u_out: float

    @property
    def length(self) -> float:
        return math.hypot(self.x1 - self.x0, self.y1 - self.y0)


def crossing_at(road_map: RoadMap, seg_i: int, s_on: float) -> Crossing:
    """The line across the whole road at distance ``s_on`` along lane segment ``seg_i``."""
    seg = road_map.segments[seg_i]
    road_id, _, lane_id = seg.key
    x, y, yaw = road_map.lane_point(seg_i, s_on)
    wp = road_map.driving_lane_at(x, y)
    # Walk outwards on both sides (any lane type: sidewalks and shoulders belong to the road).
    right = left = seg.width_m / 2.0
    if wp is not None:
        w = wp.get_right_lane()
        while w is not None and w.road_id == road_id and abs(w.lane_id) > 0 and right < 40:
            right += w.lane_width
            w = w.get_right_lane()
        w = wp.get_left_lane()
        seen = {wp.lane_id}
        while w is not None and w.road_id == road_id and w.lane_id not in seen and left < 40:
            seen.add(w.lane_id)
            left += w.lane_width
            # beyond the centre line CARLA's "left" is relative to the opposite direction
            w = w.get_right_lane() if (w.lane_id > 0) != (lane_id > 0) else w.get_left_lane()
    nx, ny = -math.sin(yaw), math.cos(yaw)  # left normal
    a = right + KERB_CLEARANCE_M
    b = left + KERB_CLEARANCE_M
    return Crossing(
        x - nx * a, y - ny * a, x + nx * b, y + ny * b, KERB_CLEARANCE_M, a + b - KERB_CLEARANCE_M
    )


class Pedestrians:
    """All pedestrians, as arrays. ``u`` is the position along each crossing line (m)."""

    def __init__(self, settings: PedestrianSettings = PedestrianSettings()) -> None:
        self.cfg = settings
        self.n = 0
        self.ids = np.zeros(0, dtype=np.int64)
        self.ax = np.zeros(0)
        self.ay = np.zeros(0)
        self.ux = np.zeros(0)  # unit direction of the crossing line
        self.uy = np.zeros(0)
        self.span = np.zeros(0)  # line length
        self.u_in = np.zeros(0)
        self.u_out = np.zeros(0)
        self.u = np.zeros(0)
        self.direction = np.zeros(0)  # +1 / -1 walking, 0 waiting
        self.speed = np.zeros(0)
        self.wait = np.zeros(0)  # seconds left to wait (inf: never, until triggered)
        self.scripted = np.zeros(0, dtype=bool)
        self.cx = np.zeros(0)
        self.cy = np.zeros(0)
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.yaw = np.zeros(0)
        self.velocity = np.zeros(0)
        self._tick = 0

    def add(
        self,
        pid: int,
        crossing: Crossing,
        at_start: bool,
        speed: float,
        wait_s: float,
        scripted: bool = False,
    ) -> None:
        L = crossing.length
        self.ids = np.append(self.ids, pid)
        self.ax = np.append(self.ax, crossing.x0)
        self.ay = np.append(self.ay, crossing.y0)
        self.ux = np.append(self.ux, (crossing.x1 - crossing.x0) / L)
        self.uy = np.append(self.uy, (crossing.y1 - crossing.y0) / L)
        self.span = np.append(self.span, L)
        self.u_in = np.append(self.u_in, crossing.u_in)
        self.u_out = np.append(self.u_out, crossing.u_out)
        self.u = np.append(self.u, 0.0 if at_start else L)
        self.direction = np.append(self.direction, 0.0)
        self.speed = np.append(self.speed, speed)
        self.wait = np.append(self.wait, wait_s)
        self.scripted = np.append(self.scripted, scripted)
        self.n += 1
        self.cx = self.ax + self.ux * self.span / 2  # crossing centres
        self.cy = self.ay + self.uy * self.span / 2
        self._update_pose()

    def start(self, i: int) -> None:
        """Make pedestrian ``i`` step off now (scripted crossings)."""
        self.wait[i] = 0.0
        self.direction[i] = 1.0 if self.u[i] < self.span[i] / 2 else -1.0
        self._update_pose()

    def step(
        self,
        dt: float,
        rng: np.random.Generator,
        vehicles: Callable[
            [], tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]
        ],
    ) -> None:
        """Advance by ``dt``; ``vehicles()`` gives the x, y and speed of every vehicle.

        Walking is integrated every tick; waiting, gap acceptance and arrivals are decided every
        ``decide_every`` ticks.
        """
        if self.n == 0:
            return
        self.u = np.minimum(np.maximum(self.u + self.direction * self.speed * dt, 0.0), self.span)
        if self._tick % self.cfg.decide_every == 0:
            self._decide(dt * self.cfg.decide_every, rng, *vehicles())
            self._update_pose()  # headings and speeds change only here
        else:
            self.x = self.ax + self.ux * self.u
            self.y = self.ay + self.uy * self.u
        self._tick += 1

    def _decide(
        self,
        dt: float,
        rng: np.random.Generator,
        vx: NDArray[np.float64],
        vy: NDArray[np.float64],
        vv: NDArray[np.float64],
    ) -> None:
        cfg = self.cfg
        arrived = ((self.direction > 0) & (self.u >= self.span)) | (
            (self.direction < 0) & (self.u <= 0.0)
        )
        for i in np.flatnonzero(arrived):
            self.direction[i] = 0.0
            self.wait[i] = math.inf if self.scripted[i] else rng.uniform(*cfg.wait_range_s)
        waiting = self.direction == 0
        self.wait = np.where(waiting, self.wait - dt, self.wait)
        ready = waiting & (self.wait <= 0) & ~self.scripted
        if not ready.any():
            return
        if len(vx):
            d = np.hypot(self.cx[:, None] - vx[None, :], self.cy[:, None] - vy[None, :])
            ready &= ~(d < cfg.gap_base_m + cfg.gap_time_s * vv[None, :]).any(1)
        go = np.flatnonzero(ready)
        self.direction[go] = np.where(self.u[go] < self.span[go] / 2, 1.0, -1.0)

    def _update_pose(self) -> None:
        """Positions and headings of everyone after a step (read by the world and observers)."""
        self.x = self.ax + self.ux * self.u
        self.y = self.ay + self.uy * self.u
        sgn = np.where(self.direction < 0, -1.0, 1.0)
        self.yaw = np.arctan2(sgn * self.uy, sgn * self.ux)
        self.velocity = np.abs(self.direction) * self.speed

    def on_road(self) -> NDArray[np.bool_]:
        return (self.u > self.u_in) & (self.u < self.u_out)
