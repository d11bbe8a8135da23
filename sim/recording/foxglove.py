"""Builders of Foxglove well-known messages (JSON dicts or JSON text) from our messages.

Frames: ``map`` (OpenDRIVE inertial, x east, y north, z up), ``ego`` (rear axle, x forward,
y left, z up) and ``camera_<name>`` (optical: x right, y down, z forward), linked by the
``/tf/*`` FrameTransform channels.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from sim.messages import ActorKind, LightState

JSON = dict[str, Any]

# RGBA in [0, 1]
VEHICLE_RGBA = (0.2, 0.45, 0.95, 0.8)
PEDESTRIAN_RGBA = (1.0, 0.55, 0.1, 0.9)
DETECTION_RGBA = (0.1, 0.9, 0.3, 0.5)
PLAN_RGBA = (0.95, 0.2, 0.8, 1.0)
ROUTE_RGBA = (0.6, 0.6, 0.6, 0.8)
LANE_RGBA = (0.85, 0.85, 0.85, 1.0)
SIGN_RGBA = (0.9, 0.1, 0.1, 1.0)
LIGHT_RGBA = {
    LightState.RED: (1.0, 0.0, 0.0, 1.0),
    LightState.YELLOW: (1.0, 0.85, 0.0, 1.0),
    LightState.GREEN: (0.0, 0.9, 0.2, 1.0),
    LightState.OFF: (0.3, 0.3, 0.3, 1.0),
    LightState.UNKNOWN: (0.5, 0.5, 0.5, 1.0),
}
DETECTED_HEIGHT_M = {ActorKind.VEHICLE: 1.5, ActorKind.PEDESTRIAN: 1.8}
LIGHT_BOX_M = 0.6


def stamp(t: float) -> JSON:
    sec, nsec = divmod(round(t * 1e9), 1_000_000_000)
    return {"sec": sec, "nsec": nsec}


def matrix_quat(r: np.ndarray) -> JSON:
    """Unit quaternion of a 3×3 rotation matrix (Shepperd's method, stable for all angles)."""
    m = np.asarray(r, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        w, x, y, z = (
            0.25 * s,
            (m[2, 1] - m[1, 2]) / s,
            (m[0, 2] - m[2, 0]) / s,
            (m[1, 0] - m[0, 1]) / s,
        )
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x, y, z = (
            (m[2, 1] - m[1, 2]) / s,
            0.25 * s,
            (m[0, 1] + m[1, 0]) / s,
            (m[0, 2] + m[2, 0]) / s,
        )
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x, y, z = (
            (m[0, 2] - m[2, 0]) / s,
            (m[0, 1] + m[1, 0]) / s,
            0.25 * s,
            (m[1, 2] + m[2, 1]) / s,
        )
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x, y, z = (
            (m[1, 0] - m[0, 1]) / s,
            (m[0, 2] + m[2, 0]) / s,
            (m[1, 2] + m[2, 1]) / s,
            0.25 * s,
        )
    return {"x": float(x), "y": float(y), "z": float(z), "w": float(w)}


def frame_transform(
    t: float, parent: str, child: str, xyz: tuple[float, float, float], rotation: JSON
) -> JSON:
    return {
        "timestamp": stamp(t),
        "parent_frame_id": parent,
        "child_frame_id": child,
        "translation": {"x": xyz[0], "y": xyz[1], "z": xyz[2]},
        "rotation": rotation,
    }


def ego_transform(t: float, x: float, y: float, yaw: float) -> str:
    """map → ego, as JSON text (written every tick)."""
    st = stamp(t)
    return (
        f'{{"timestamp":{{"sec":{st["sec"]},"nsec":{st["nsec"]}}},"parent_frame_id":"map",'
        f'"child_frame_id":"ego","translation":{{"x":{x!r},"y":{y!r},"z":0.0}},'
        f'"rotation":{{"x":0.0,"y":0.0,"z":{math.sin(0.5 * yaw)!r},'
        f'"w":{math.cos(0.5 * yaw)!r}}}}}'
    )


def camera_transform(t: float, name: str, pose: np.ndarray) -> JSON:
    p = np.asarray(pose, dtype=np.float64)
    xyz = (float(p[0, 3]), float(p[1, 3]), float(p[2, 3]))
    return frame_transform(t, "ego", f"camera_{name}", xyz, matrix_quat(p[:3, :3]))


def camera_calibration(t: float, name: str, K: np.ndarray, width: int, height: int) -> JSON:
    k = np.asarray(K, dtype=np.float64)
    p = np.zeros((3, 4))
    p[:, :3] = k
    return {
        "timestamp": stamp(t),
        "frame_id": f"camera_{name}",
        "width": width,
        "height": height,
        "distortion_model": "plumb_bob",
        "D": [0.0] * 5,
        "K": k.reshape(-1).tolist(),
        "R": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "P": p.reshape(-1).tolist(),
    }


def depth_image(t: float, name: str, depth: np.ndarray) -> JSON:
    """A ``foxglove.RawImage`` of a depth image: ``32FC1``, metres along the optical axis, the
    little-endian float32 values themselves (lossless)."""
    h, w = depth.shape
    return {
        "timestamp": stamp(t),
        "frame_id": f"camera_{name}",
        "width": int(w),
        "height": int(h),
        "encoding": "32FC1",
        "step": 4 * int(w),
        "data": base64.b64encode(np.ascontiguousarray(depth, dtype="<f4").tobytes()).decode(),
    }


def compressed_image(t: float, name: str, data: bytes, fmt: str) -> JSON:
    return {
        "timestamp": stamp(t),
        "frame_id": f"camera_{name}",
        "data": base64.b64encode(data).decode("ascii"),
        "format": fmt,
    }


# Scene updates are formatted straight to JSON text: at every tick this is several times
# cheaper than building nested dicts for ``json.dumps``. Geometry is written to the millimetre
# (these channels are for looking at; the exact values are in /observation, /perception, /plan).
_CUBE = (
    '{"pose":{"position":{"x":%.3f,"y":%.3f,"z":%.3f},'
    '"orientation":{"x":0,"y":0,"z":%.6f,"w":%.6f}},'
    '"size":{"x":%.3f,"y":%.3f,"z":%.3f},"color":%s}'
)
_POINT = '{"x":%.3f,"y":%.3f,"z":0}'


def _color_json(rgba: tuple[float, float, float, float]) -> str:
    r, g, b, a = rgba
    return f'{{"r":{r:g},"g":{g:g},"b":{b:g},"a":{a:g}}}'


def _cubes(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    yaw: np.ndarray,
    size: np.ndarray,
    colors: list[str],
) -> list[str]:
    """Boxes centred at ``(x, y, z)`` ``(B,)`` with ``size (B, 3)``, one colour each."""
    qz, qw = np.sin(0.5 * yaw), np.cos(0.5 * yaw)
    rows = np.column_stack([x, y, z, qz, qw, size]).tolist()
    return [_CUBE % (*row, c) for row, c in zip(rows, colors, strict=True)]


def _line(points: np.ndarray, rgba: tuple[float, float, float, float], thickness: float) -> str:
    """A line strip through ``points (N, 2)``."""
    pts = ",".join([_POINT % (px, py) for px, py in np.asarray(points).tolist()])
    return (
        '{"type":0,"pose":{"position":{"x":0,"y":0,"z":0.05},'
        '"orientation":{"x":0,"y":0,"z":0,"w":1}},'
        f'"thickness":{thickness},"scale_invariant":false,"points":[{pts}],'
        f'"color":{_color_json(rgba)},"colors":[],"indices":[]}}'
    )


def _entity(t: float, frame: str, eid: str, cubes: list[str], lines: list[str]) -> str:
    st = stamp(t)
    return (
        f'{{"timestamp":{{"sec":{st["sec"]},"nsec":{st["nsec"]}}},"frame_id":"{frame}",'
        f'"id":"{eid}","lifetime":{{"sec":0,"nsec":0}},"frame_locked":false,"metadata":[],'
        f'"cubes":[{",".join(cubes)}],"lines":[{",".join(lines)}],"texts":[]}}'
    )


def _update(*entities: str) -> str:
    return f'{{"deletions":[],"entities":[{",".join(entities)}]}}'


_VEHICLE = _color_json(VEHICLE_RGBA)
_PEDESTRIAN = _color_json(PEDESTRIAN_RGBA)
_DETECTION = _color_json(DETECTION_RGBA)
_LIGHT = {state: _color_json(rgba) for state, rgba in LIGHT_RGBA.items()}
_LIGHT_BY_VALUE = {int(state): color for state, color in _LIGHT.items()}


class GroundTruthScene:
    """Actors and light heads within ``radius_m`` of the ego as boxes in the map frame.

    What never changes is formatted once: each actor's height, size and colour, and each light
    head's whole box per state; a tick formats only positions and headings.
    """

    def __init__(self, radius_m: float) -> None:
        self.radius_m = radius_m
        self._actor: dict[int, tuple[str, str]] = {}  # id -> (z part, size and colour part)
        self._light: dict[tuple[int, int], str] = {}  # (id, state) -> cube

    def __call__(
        self,
        t: float,
        ego_xy: tuple[float, float],
        actors: dict[str, np.ndarray],
        lights: np.ndarray,
        light_states: list[int],
    ) -> str:
        """``actors``: arrays ``(M,)`` id, kind, x, y, yaw, length, width, height (map frame);
        ``lights``: ``(L, 5)`` id, x, y, z, yaw with ``light_states`` ``(L,)``."""
        ex, ey = ego_xy
        r2 = self.radius_m**2
        cubes: list[str] = []
        x, y = actors["x"], actors["y"]
        if len(x):
            near = np.flatnonzero((x - ex) ** 2 + (y - ey) ** 2 < r2)
            yaw = actors["yaw"][near]
            rows = zip(
                actors["id"][near].tolist(),
                x[near].tolist(),
                y[near].tolist(),
                np.sin(0.5 * yaw).tolist(),
                np.cos(0.5 * yaw).tolist(),
                near.tolist(),
                strict=True,
            )
            for aid, ax, ay, qz, qw, i in rows:
                parts = self._actor.get(aid)
                if parts is None:
                    parts = self._actor[aid] = self._static_parts(actors, i)
                cubes.append(
                    f'{{"pose":{{"position":{{"x":{ax:.3f},"y":{ay:.3f},{parts[0]}'
                    f'"z":{qz:.6f},"w":{qw:.6f}}}}},{parts[1]}'
                )
        if len(lights):
            near = np.flatnonzero((lights[:, 1] - ex) ** 2 + (lights[:, 2] - ey) ** 2 < r2)
            for i in near.tolist():
                key = (int(lights[i, 0]), int(light_states[i]))
                cube = self._light.get(key)
                if cube is None:
                    _, lx, ly, lz, lyaw = lights[i].tolist()
                    cube = self._light[key] = _cubes(
                        np.array([lx]),
                        np.array([ly]),
                        np.array([lz]),
                        np.array([lyaw]),
                        np.full((1, 3), LIGHT_BOX_M),
                        [_LIGHT_BY_VALUE.get(key[1], _LIGHT[LightState.UNKNOWN])],
                    )[0]
                cubes.append(cube)
        return _update(_entity(t, "map", "ground_truth", cubes, []))

    @staticmethod
    def _static_parts(a: dict[str, np.ndarray], i: int) -> tuple[str, str]:
        h = float(a["height"][i])
        color = _PEDESTRIAN if int(a["kind"][i]) == ActorKind.PEDESTRIAN else _VEHICLE
        z = f'"z":{0.5 * h:.3f}}},"orientation":{{"x":0,"y":0,'
        tail = (
            f'"size":{{"x":{float(a["length"][i]):.3f},"y":{float(a["width"][i]):.3f},'
            f'"z":{h:.3f}}},"color":{color}}}'
        )
        return z, tail


def stack_scene(
    t: float,
    objects: np.ndarray,
    kinds: list[int],
    plan_t: float | None,
    plan_path: np.ndarray | None,
    plan_origin: tuple[float, float, float] | None,
) -> str:
    """Detected objects (boxes, ego frame; ``objects (N, 6)`` x, y, yaw, length, width and
    ``kinds``) and the plan's path (map frame; the whole route is on ``/map``)."""
    cubes = []
    for (ox, oy, oyaw, length, width), kind in zip(objects.tolist(), kinds, strict=True):
        h = DETECTED_HEIGHT_M.get(ActorKind(kind), 1.5) if kind in (1, 2) else 1.5
        cubes.append(
            f'{{"pose":{{"position":{{"x":{ox:.3f},"y":{oy:.3f},"z":{0.5 * h:.3f}}},'
            f'"orientation":{{"x":0,"y":0,"z":{math.sin(0.5 * oyaw):.6f},'
            f'"w":{math.cos(0.5 * oyaw):.6f}}}}},"size":{{"x":{length:.3f},'
            f'"y":{width:.3f},"z":{h:.3f}}},"color":{_DETECTION}}}'
        )
    entities = [_entity(t, "ego", "detections", cubes, [])]
    if plan_path is not None and plan_origin is not None and plan_t is not None:
        px, py, pyaw = plan_origin
        c, s = math.cos(pyaw), math.sin(pyaw)
        path = plan_path[::5]
        world = np.stack(
            [px + c * path[:, 0] - s * path[:, 1], py + s * path[:, 0] + c * path[:, 1]], -1
        )
        entities.append(_entity(plan_t, "map", "plan", [], [_line(world, PLAN_RGBA, 0.3)]))
    return _update(*entities)


def map_scene(
    lanes: list[np.ndarray], signs: list[tuple[float, float, float]], route: np.ndarray | None
) -> str:
    """The static map: lane centrelines, sign posts, and the whole route when known."""
    lines = [_line(xy, LANE_RGBA, 0.1) for xy in lanes]
    if route is not None and len(route) > 1:
        lines.append(_line(route, ROUTE_RGBA, 0.4))
    cubes: list[str] = []
    if signs:
        xyz = np.array(signs, dtype=np.float64).reshape(-1, 3)
        n = len(xyz)
        cubes = _cubes(
            xyz[:, 0],
            xyz[:, 1],
            np.full(n, 1.0),
            np.zeros(n),
            np.tile([0.3, 0.3, 2.0], (n, 1)),
            [_color_json(SIGN_RGBA)] * n,
        )
    return _update(_entity(0.0, "map", "map", cubes, lines))


def lines_of(scene: JSON, entity: str | None = None) -> list[np.ndarray]:
    """The line strips of a scene update (of one entity) as ``(N, 2)`` arrays."""
    out = []
    for ent in scene["entities"]:
        if entity is not None and ent["id"] != entity:
            continue
        for line in ent["lines"]:
            out.append(np.array([[p["x"], p["y"]] for p in line["points"]], dtype=np.float64))
    return out
