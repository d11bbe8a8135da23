"""What the CARLA world observes, built from the server's actors in our frame: the route ahead,
ground truth of actors and lights, and the targets of camera boxes.

Pure functions of the actors' (snapshot) state, so the world class only gathers and ticks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.carla_backend import convert
from sim.carla_backend.lights import ServerLights, nearest_landmark
from sim.carla_backend.sensors import BoxTarget, corners_of
from sim.map import RoadMap
from sim.messages import (
    SIGN_CLASS,
    ActorKind,
    ActorsGT,
    DetectionClass,
    LightGT,
    LightState,
    SignType,
)

SIGN_TYPES = {"traffic.stop": SignType.STOP, "traffic.yield": SignType.YIELD}
SIGN_MATCH_M = 5.0  # a sign actor is the map's sign of its type within this distance


@dataclass(frozen=True)
class Tracked:
    """An actor the world spawned and reports in ground truth (not the ego, not sensors).

    :param background: counts as background traffic for the minimum-speed check
    :param centre: its bounding-box centre in its actor frame (our axes, m)
    :param size: length, width, height (m)
    """

    actor: Any
    kind: ActorKind
    background: bool
    centre: tuple[float, float, float]
    size: tuple[float, float, float]

    @classmethod
    def of(cls, actor: Any, kind: ActorKind, background: bool = False) -> Tracked:
        bb = actor.bounding_box
        c = convert.location_to_ours(bb.location)
        return cls(
            actor,
            kind,
            background,
            (float(c[0]), float(c[1]), float(c[2])),
            (2.0 * bb.extent.x, 2.0 * bb.extent.y, 2.0 * bb.extent.z),
        )


def actors_gt(alive: Sequence[Tracked], speed_of: Callable[[Any], float]) -> ActorsGT:
    """Ground truth of the tracked actors: box centres, headings and speeds in our map frame."""
    rows = []
    for tr in alive:
        m = convert.transform_to_ours(tr.actor.get_transform())
        c = m @ np.array([*tr.centre, 1.0])
        rows.append((c[0], c[1], math.atan2(m[1, 0], m[0, 0]), speed_of(tr.actor)))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return ActorsGT(
        id=np.array([tr.actor.id for tr in alive], dtype=np.int64),
        kind=np.array([int(tr.kind) for tr in alive], dtype=np.int64),
        x=arr[:, 0],
        y=arr[:, 1],
        yaw=arr[:, 2],
        speed=arr[:, 3],
        length=np.array([tr.size[0] for tr in alive]),
        width=np.array([tr.size[1] for tr in alive]),
        height=np.array([tr.size[2] for tr in alive]),
    )


def lights_gt(lights: ServerLights) -> tuple[LightGT, ...]:
    """One :class:`LightGT` per (head, approach) of the map, with the server's state."""
    return tuple(
        LightGT(
            lm.id,
            ap.junction,
            LightState(int(st)),
            lm.x,
            lm.y,
            lm.z,
            lm.yaw,
            ap.stop_x,
            ap.stop_y,
            ap.stop_yaw,
        )
        for lm, ap, st in zip(
            lights.landmarks, lights.approaches, lights.state.tolist(), strict=True
        )
    )


def sign_of(actor: Any) -> tuple[SignType, float] | None:
    """What a ``traffic.*`` actor is as a sign (type and speed limit km/h), or None."""
    type_id = str(actor.type_id)
    if type_id in SIGN_TYPES:
        return SIGN_TYPES[type_id], 0.0
    if type_id.startswith("traffic.speed_limit."):
        try:
            return SignType.SPEED_LIMIT, float(type_id.rsplit(".", 1)[1])
        except ValueError:
            return None
    return None


def box_targets(
    alive: Sequence[Tracked], lights: ServerLights, sign_actors: Sequence[Any], road_map: RoadMap
) -> list[BoxTarget]:
    """Everything a camera may box: tracked vehicles and walkers (by actor id), light heads (by
    the map's signal id, with their state) and sign actors (by the map's sign id when one of the
    same type stands within :data:`SIGN_MATCH_M`, with a speed sign's value)."""
    targets = [
        BoxTarget(
            int(tr.actor.id),
            int(tr.actor.id),
            int(
                DetectionClass.VEHICLE
                if tr.kind == ActorKind.VEHICLE
                else DetectionClass.PEDESTRIAN
            ),
            corners_of(tr.actor.bounding_box, tr.actor.get_transform()),
        )
        for tr in alive
    ]
    for lm, actor, st in zip(lights.landmarks, lights.actors, lights.state.tolist(), strict=True):
        if actor is not None:
            targets.append(
                BoxTarget(
                    lm.id,
                    int(actor.id),
                    int(DetectionClass.TRAFFIC_LIGHT),
                    corners_of(actor.bounding_box, actor.get_transform()),
                    state=int(st),
                )
            )
    for actor in sign_actors:
        kind_value = sign_of(actor)
        if kind_value is None:
            continue
        kind, value = kind_value
        x, y, _ = convert.location_to_ours(actor.get_location())
        lm_id = nearest_landmark(road_map, x, y, {str(int(kind))}, SIGN_MATCH_M)
        targets.append(
            BoxTarget(
                lm_id if lm_id is not None else int(actor.id),
                int(actor.id),
                int(SIGN_CLASS[kind]),
                corners_of(actor.bounding_box, actor.get_transform()),
                value=value,
            )
        )
    return targets
