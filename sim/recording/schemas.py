"""JSON schemas of the recorded channels.

Foxglove's well-known schemas (``foxglove.CompressedImage``, ``foxglove.RawImage``,
``foxglove.FrameTransform``, ``foxglove.SceneUpdate``, ``foxglove.CameraCalibration``) are
written out here from their published field lists (docs.foxglove.dev, "Message schemas"),
restricted to the fields this recorder fills; Foxglove recognises them by name and reads
``bytes`` fields as base64 strings (``contentEncoding: base64``). Our own channels carry
``drivestack.*`` schemas that name their top-level fields; arrays inside them use the
:func:`sim.recording.codec.pack` form.
"""

from __future__ import annotations

import json
from typing import Any

JSON = dict[str, Any]


def _obj(title: str, props: JSON, description: str = "") -> JSON:
    out: JSON = {"title": title, "type": "object", "properties": props}
    if description:
        out["description"] = description
    return out


def _num() -> JSON:
    return {"type": "number"}


def _uint(description: str = "") -> JSON:
    out: JSON = {"type": "integer", "minimum": 0}
    if description:
        out["description"] = description
    return out


def _time() -> JSON:
    return _obj("time", {"sec": _uint(), "nsec": _uint()})


def _vec3(title: str = "foxglove.Vector3") -> JSON:
    return _obj(title, {"x": _num(), "y": _num(), "z": _num()})


def _quat() -> JSON:
    return _obj("foxglove.Quaternion", {"x": _num(), "y": _num(), "z": _num(), "w": _num()})


def _pose() -> JSON:
    return _obj("foxglove.Pose", {"position": _vec3(), "orientation": _quat()})


def _color() -> JSON:
    return _obj("foxglove.Color", {"r": _num(), "g": _num(), "b": _num(), "a": _num()})


def _bytes() -> JSON:
    return {"type": "string", "contentEncoding": "base64"}


def _array(items: JSON) -> JSON:
    return {"type": "array", "items": items}


COMPRESSED_IMAGE = _obj(
    "foxglove.CompressedImage",
    {
        "timestamp": _time(),
        "frame_id": {"type": "string"},
        "data": _bytes(),
        "format": {"type": "string", "description": "png or jpeg"},
    },
    "A compressed image",
)

RAW_IMAGE = _obj(
    "foxglove.RawImage",
    {
        "timestamp": _time(),
        "frame_id": {"type": "string"},
        "width": _uint(),
        "height": _uint(),
        "encoding": {"type": "string", "description": "32FC1: depth in metres"},
        "step": _uint("bytes per row"),
        "data": _bytes(),
    },
    "A raw image",
)

FRAME_TRANSFORM = _obj(
    "foxglove.FrameTransform",
    {
        "timestamp": _time(),
        "parent_frame_id": {"type": "string"},
        "child_frame_id": {"type": "string"},
        "translation": _vec3(),
        "rotation": _quat(),
    },
    "A transform between two named coordinate frames in 3D space",
)

CAMERA_CALIBRATION = _obj(
    "foxglove.CameraCalibration",
    {
        "timestamp": _time(),
        "frame_id": {"type": "string"},
        "width": _uint(),
        "height": _uint(),
        "distortion_model": {"type": "string"},
        "D": _array(_num()),
        "K": _array(_num()),
        "R": _array(_num()),
        "P": _array(_num()),
    },
    "Camera calibration parameters",
)

_CUBE = _obj("foxglove.CubePrimitive", {"pose": _pose(), "size": _vec3(), "color": _color()})
_LINE = _obj(
    "foxglove.LinePrimitive",
    {
        "type": {"type": "integer", "description": "0 LINE_STRIP, 1 LINE_LOOP, 2 LINE_LIST"},
        "pose": _pose(),
        "thickness": _num(),
        "scale_invariant": {"type": "boolean"},
        "points": _array(_vec3("foxglove.Point3")),
        "color": _color(),
        "colors": _array(_color()),
        "indices": _array(_uint()),
    },
)
_TEXT = _obj(
    "foxglove.TextPrimitive",
    {
        "pose": _pose(),
        "billboard": {"type": "boolean"},
        "font_size": _num(),
        "scale_invariant": {"type": "boolean"},
        "color": _color(),
        "text": {"type": "string"},
    },
)
_ENTITY = _obj(
    "foxglove.SceneEntity",
    {
        "timestamp": _time(),
        "frame_id": {"type": "string"},
        "id": {"type": "string"},
        "lifetime": _time(),
        "frame_locked": {"type": "boolean"},
        "metadata": _array(
            _obj("foxglove.KeyValuePair", {"key": {"type": "string"}, "value": {"type": "string"}})
        ),
        "cubes": _array(_CUBE),
        "lines": _array(_LINE),
        "texts": _array(_TEXT),
    },
)
SCENE_UPDATE = _obj(
    "foxglove.SceneUpdate",
    {
        "deletions": _array(
            _obj(
                "foxglove.SceneEntityDeletion",
                {"timestamp": _time(), "type": {"type": "integer"}, "id": {"type": "string"}},
            )
        ),
        "entities": _array(_ENTITY),
    },
    "An update to the entities displayed in a 3D scene",
)

FOXGLOVE: dict[str, JSON] = {
    s["title"]: s
    for s in (COMPRESSED_IMAGE, RAW_IMAGE, FRAME_TRANSFORM, CAMERA_CALIBRATION, SCENE_UPDATE)
}

_PACKED = "numpy arrays are {dtype, shape, data (base64 of the raw little-endian bytes)}"

OURS: dict[str, JSON] = {
    "drivestack.Scenario": _obj("drivestack.Scenario", {}, "The scenario file, as validated"),
    "drivestack.Config": _obj(
        "drivestack.Config",
        {
            "stack": {"type": "object"},
            "seed": {"type": "integer"},
            "settings": {"type": "object"},
            "vehicle": {"type": "object"},
            "max_steps": {"type": ["integer", "null"]},
        },
        "Stack configuration, seed, every stage's settings and the vehicle parameters",
    ),
    "drivestack.WorldStatic": _obj(
        "drivestack.WorldStatic",
        {
            "signs": _array({"type": "object"}),
            "lights": _array({"type": "object"}),
            "route": {"type": "object"},
        },
        "What does not change during the episode: signs, light heads and the whole route "
        "(map frame; " + _PACKED + ")",
    ),
    "drivestack.Observation": _obj(
        "drivestack.Observation",
        {
            "t": _num(),
            "frame": {"type": "integer"},
            "valid": {"type": "boolean"},
            "ego": {"type": "object"},
            "route": {"type": "object"},
            "events": _array({"type": "object"}),
            "actors": {"type": "object"},
            "lights": {"type": "object"},
            "sensors": {"type": "object"},
        },
        "What the world gave the stack; the route ahead is its own blocks or, when it is "
        "points index..index+n of the route in /world/static, those two numbers (it is that "
        "slice seen from the ego); " + _PACKED,
    ),
    "drivestack.PerceptionOutput": _obj(
        "drivestack.PerceptionOutput",
        {
            "t": _num(),
            "frame": {"type": "integer"},
            "objects": {"type": "object"},
            "signs": _array({"type": "object"}),
            "lights": _array({"type": "object"}),
            "speed_limit_mps": {"type": ["number", "null"]},
        },
        "Perception's output; objects as parallel lists",
    ),
    "drivestack.Plan": _obj(
        "drivestack.Plan",
        {"t": _num(), "frame": {"type": "integer"}, "path": {"type": "object"}},
        "The planner's output; " + _PACKED,
    ),
    "drivestack.Control": _obj(
        "drivestack.Control",
        {"t": _num(), "frame": {"type": "integer"}, "accel": _num(), "steer": _num()},
        "The controller's output (m/s², rad)",
    ),
    "drivestack.Events": _obj(
        "drivestack.Events",
        {"t": _num(), "frame": {"type": "integer"}, "events": _array({"type": "object"})},
        "Events of this tick (often none)",
    ),
    "drivestack.Metrics": _obj(
        "drivestack.Metrics",
        {"t": _num(), "frame": {"type": "integer"}, "speed_mps": _num()},
        "Per-tick driving metrics (speed, limit, cross-track error, penalties so far)",
    ),
    "drivestack.Result": _obj(
        "drivestack.Result", {"driving_score": _num()}, "The episode's result.json"
    ),
}


def schema_bytes(name: str) -> bytes:
    """The JSON schema registered for ``name`` (a key of :data:`FOXGLOVE` or :data:`OURS`)."""
    schema = FOXGLOVE.get(name) or OURS[name]
    return json.dumps(schema, separators=(",", ":")).encode()
