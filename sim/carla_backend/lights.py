"""The map's traffic lights with the states of the server's traffic-light actors.

:class:`ServerLights` offers what :class:`~sim.events.EventMonitor` reads of
:class:`sim.lights.TrafficLights` (``segment_to_entry`` and ``state``), with one entry per
(light head, approach) of the map, so the red-light check runs unchanged on CARLA. Each entry is
matched to the server's ``traffic.traffic_light`` actor with the same OpenDRIVE signal id, or
failing that the nearest one within ``match_radius_m``. An entry with no actor reads ``OFF``:
nothing there can be run (CARLA's OpenDRIVE standalone mode, for one, may spawn no light actors).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sim.carla_backend import convert
from sim.map import RoadMap
from sim.messages import LightState

log = logging.getLogger(__name__)


class ServerLights:
    """Light states per (head, approach) entry, read from the server each tick."""

    def __init__(
        self, road_map: RoadMap, light_actors: Sequence[Any], match_radius_m: float = 15.0
    ) -> None:
        pairs = road_map.lights
        self.landmarks = [lm for lm, _ in pairs]
        self.approaches = [ap for _, ap in pairs]
        self.segment_to_entry = {ap.segment: i for i, ap in enumerate(self.approaches)}
        self.state: NDArray[np.int64] = np.full(len(pairs), int(LightState.OFF), dtype=np.int64)
        by_odr: dict[int, Any] = {}
        positions = []
        for actor in light_actors:
            with contextlib.suppress(TypeError, ValueError):  # a light with no OpenDRIVE id
                by_odr[int(actor.get_opendrive_id())] = actor
            positions.append(convert.location_to_ours(actor.get_transform().location)[:2])
        xy = np.array(positions).reshape(-1, 2)
        self.actors: list[Any | None] = []
        for lm in self.landmarks:
            actor = by_odr.get(lm.id)
            if actor is None and len(xy):
                d = np.hypot(xy[:, 0] - lm.x, xy[:, 1] - lm.y)
                k = int(np.argmin(d))
                if d[k] <= match_radius_m:
                    actor = light_actors[k]
            self.actors.append(actor)
        missing = sum(a is None for a in self.actors)
        if missing:
            log.warning(
                "%d of %d light entries of map '%s' have no traffic-light actor on the server; "
                "they read OFF",
                missing,
                len(self.actors),
                road_map.name,
            )

    def update(self) -> None:
        """Read every matched actor's state (from the client's snapshot: no server call)."""
        for i, actor in enumerate(self.actors):
            if actor is not None:
                self.state[i] = int(convert.light_state(actor.get_state()))

    def approach_state(self, segment: int) -> LightState | None:
        """State of the light governing an approach segment, or None if it has no light."""
        i = self.segment_to_entry.get(segment)
        return None if i is None else LightState(int(self.state[i]))


def nearest_landmark(
    road_map: RoadMap, x: float, y: float, types: set[str], radius_m: float
) -> int | None:
    """The id of the map landmark of one of ``types`` nearest to (x, y), within ``radius_m``."""
    best, best_d = None, radius_m
    for lm in road_map.landmarks:
        if lm.type in types:
            d = math.hypot(lm.x - x, lm.y - y)
            if d <= best_d:
                best, best_d = lm.id, d
    return best
