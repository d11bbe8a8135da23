"""Stage messages to JSON-ready dicts and back, exactly.

Floats go through ``repr`` (JSON numbers) or, for arrays, the raw little-endian bytes in base64
(:func:`pack`), so a decoded message equals the recorded one bit for bit: an open-loop replay of
unchanged stages reproduces the recorded outputs exactly. Arrays are packed rather than listed
because ``repr`` of every float costs more than the recording overhead budget allows.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from sim.messages import (
    ActorKind,
    ActorsGT,
    CameraFrame,
    Control,
    DetectedLight,
    DetectedObject,
    DetectedSign,
    Event,
    GroundTruth,
    LightGT,
    LightState,
    Observation,
    PerceptionOutput,
    Plan,
    RouteAhead,
    SignGT,
    SignType,
    VehicleState,
)
from sim.route import Route, route_slice

JSON = dict[str, Any]

# Parallel arrays are packed as one float block and one integer block (columns in this order):
# one base64 string per block is what keeps encoding cheap enough to run at every tick.
_ACTOR_FLOATS = ("x", "y", "yaw", "speed", "length", "width", "height")
_ACTOR_INTS = ("id", "kind")
_ROUTE_FLOATS = ("x", "y", "yaw", "speed_limit_mps", "lane_width_m")
_ROUTE_INTS = ("left_lane", "junction")
_WHOLE_ROUTE_FLOATS = ("xy", "yaw", "s", "speed_limit_mps", "lane_width_m")  # xy: 2 columns
_WHOLE_ROUTE_INTS = ("segment", "left_lane", "junction")
_CAMERA_ARRAYS = (
    "boxes",
    "box_class",
    "box_id",
    "box_truncation",
    "box_occlusion",
    "box_visible_px",
    "box_value",
    "box_state",
)


def pack(a: np.ndarray) -> JSON:
    """An array as ``{dtype, shape, data}`` with ``data`` the base64 of its bytes."""
    a = np.ascontiguousarray(a)
    return {
        "dtype": a.dtype.str,
        "shape": list(a.shape),
        "data": base64.b64encode(a.tobytes()).decode("ascii"),
    }


def pack_json(a: np.ndarray) -> str:
    """:func:`pack` as JSON text, without passing the base64 through ``json.dumps`` (it needs
    no escaping, and scanning it costs more than encoding it)."""
    a = np.ascontiguousarray(a)
    data = base64.b64encode(a.tobytes()).decode("ascii")
    return f'{{"dtype":"{a.dtype.str}","shape":{list(a.shape)},"data":"{data}"}}'


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps builds one a call
_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def num(x: float) -> str:
    """A float as JSON text, exactly (``repr`` round-trips; a numpy float prints as a plain
    one); NaN and infinities as Python's ``json`` writes and reads them."""
    r = repr(float(x))
    return _SPECIAL.get(r, r)


def flag(x: bool) -> str:
    return "true" if x else "false"


def _dumps(x: Any) -> str:
    return _ENCODER.encode(x)


def _columns(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    """``(N, K)`` from K arrays of shape ``(N,)`` or ``(N, k)`` (cheaper than column_stack)."""
    n = len(arrays[0])
    width = sum(1 if a.ndim == 1 else a.shape[1] for a in arrays)
    out: np.ndarray = np.empty((n, width), dtype=dtype)
    j = 0
    for a in arrays:
        if a.ndim == 1:
            out[:, j] = a
            j += 1
        else:
            out[:, j : j + a.shape[1]] = a
            j += a.shape[1]
    return out


_ROUTE_COLUMNS = _dumps(_ROUTE_FLOATS + _ROUTE_INTS)
_ACTOR_COLUMNS = _dumps(_ACTOR_FLOATS + _ACTOR_INTS)


def unpack(d: JSON) -> np.ndarray:
    """The array :func:`pack` wrote (a writable copy)."""
    raw = base64.b64decode(d["data"])
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


# --------------------------------------------------------------------------------- world side
def encode_ego(e: VehicleState) -> str:
    """The ego state as JSON text (every tick: formatted by hand, it costs a fifth)."""
    return (
        f'{{"t":{num(e.t)},"frame":{e.frame},"x":{num(e.x)},"y":{num(e.y)},'
        f'"yaw":{num(e.yaw)},"speed":{num(e.speed)},"accel":{num(e.accel)},'
        f'"steer":{num(e.steer)},"valid":{flag(e.valid)}}}'
    )


def decode_ego(d: JSON) -> VehicleState:
    return VehicleState(**d)


def encode_events(events: tuple[Event, ...]) -> str:
    """A tick's events as JSON text (usually none)."""
    return _dumps([encode_event(e) for e in events]) if events else "[]"


def encode_event(e: Event) -> JSON:
    return {
        "type": e.type,
        "t": e.t,
        "frame": e.frame,
        "x": e.x,
        "y": e.y,
        "other_id": e.other_id,
        "detail": e.detail,
        "value": e.value,
    }


def decode_event(d: JSON) -> Event:
    return Event(**d)


def encode_sign(s: SignGT) -> JSON:
    return {
        "id": s.id,
        "type": int(s.type),
        "value": s.value,
        "x": s.x,
        "y": s.y,
        "z": s.z,
        "yaw": s.yaw,
    }


def decode_sign(d: JSON) -> SignGT:
    return SignGT(**(d | {"type": SignType(d["type"])}))


def encode_light(g: LightGT) -> JSON:
    return {
        "id": g.id,
        "group": g.group,
        "state": int(g.state),
        "x": g.x,
        "y": g.y,
        "z": g.z,
        "yaw": g.yaw,
        "stop_x": g.stop_x,
        "stop_y": g.stop_y,
        "stop_yaw": g.stop_yaw,
    }


def decode_light(d: JSON) -> LightGT:
    return LightGT(**(d | {"state": LightState(d["state"])}))


def encode_static(obs: Observation, route: Route | None = None) -> JSON:
    """What stays fixed for an episode (written once, at frame 0): the signs, the light heads
    and, when the backend knows it, the whole route."""
    gt = obs.ground_truth
    out: JSON = {
        "signs": [encode_sign(s) for s in gt.signs],
        "lights": [encode_light(g) for g in gt.lights],
    }
    if route is not None:
        out["route"] = encode_route(route)
    return out


def encode_route(route: Route) -> JSON:
    """A whole route (map frame) as a float and an integer block."""
    floats = _columns([getattr(route, n) for n in _WHOLE_ROUTE_FLOATS], np.float64)
    ints = _columns([getattr(route, n) for n in _WHOLE_ROUTE_INTS], np.int64)
    return {
        "columns": ["x", "y", *_WHOLE_ROUTE_FLOATS[1:], *_WHOLE_ROUTE_INTS],
        "floats": pack(floats),
        "ints": pack(ints),
        "step_m": route.step_m,
    }


def decode_route(d: JSON) -> Route:
    f, i = unpack(d["floats"]), unpack(d["ints"])
    cols = {n: np.ascontiguousarray(f[:, k + 1]) for k, n in enumerate(_WHOLE_ROUTE_FLOATS)}
    cols["xy"] = np.ascontiguousarray(f[:, 0:2])
    cols |= {n: np.ascontiguousarray(i[:, k]) for k, n in enumerate(_WHOLE_ROUTE_INTS)}
    return Route(**cols, step_m=d["step_m"])


def route_index(ahead: RouteAhead, route: Route) -> int | None:
    """The index of ``ahead``'s first point in ``route`` when ``ahead`` is a slice of it
    (:func:`sim.route.route_slice`, which is how every backend makes it), else ``None``.

    It must start at a route point, fit in the route, and hold the route's own arrays (views,
    not copies: nothing but the route code makes those); its geometry is then the route's seen
    from the observation's ego, which the decoder recomputes bit for bit.
    """
    n = len(ahead.yaw)
    if n == 0 or ahead.step_m != route.step_m:
        return None
    i0 = int(np.searchsorted(route.s, ahead.s0_m))
    if i0 + n > len(route.s) or route.s[i0] != ahead.s0_m:
        return None
    limit, own = ahead.speed_limit_mps, route.speed_limit_mps
    if limit.base is None or limit.base is not (own if own.base is None else own.base):
        return None
    if limit[0] != own[i0] or limit[-1] != own[i0 + n - 1]:
        return None
    return i0


class StaticGT:
    """The episode's fixed ground truth: per-tick lights are written as states against it,
    signs only when they differ from it, and the route ahead as a slice of its route."""

    def __init__(
        self, signs: tuple[SignGT, ...], lights: tuple[LightGT, ...], route: Route | None = None
    ) -> None:
        self.signs = signs
        self.lights = lights
        self.light_ids = tuple(g.id for g in lights)
        self.route = route

    @classmethod
    def of(cls, obs: Observation, route: Route | None = None) -> StaticGT:
        return cls(obs.ground_truth.signs, obs.ground_truth.lights, route)

    @classmethod
    def decode(cls, d: JSON) -> StaticGT:
        """From :func:`encode_static`'s dict."""
        return cls(
            tuple(decode_sign(s) for s in d["signs"]),
            tuple(decode_light(g) for g in d["lights"]),
            decode_route(d["route"]) if "route" in d else None,
        )


def encode_camera(c: CameraFrame) -> JSON:
    """Everything of a camera frame but its pixels (those go to the image channel)."""
    out: JSON = {
        "t": c.t,
        "frame": c.frame,
        "valid": c.valid,
        "height": int(c.rgb.shape[0]),
        "width": int(c.rgb.shape[1]),
        "K": pack(np.asarray(c.K, dtype=np.float64)),
        "pose": pack(np.asarray(c.pose, dtype=np.float64)),
    }
    for name in _CAMERA_ARRAYS:
        value = getattr(c, name)
        if value is not None:
            out[name] = pack(np.asarray(value))
    return out


def decode_camera(d: JSON, rgb: np.ndarray | None, depth: np.ndarray | None = None) -> CameraFrame:
    """A camera frame from its labels and (when images were recorded) its decoded pixels;
    without them the image is black, which the caller is told through ``valid``. ``depth``:
    its depth image, where the run recorded it."""
    if rgb is None:
        rgb = np.zeros((d["height"], d["width"], 3), dtype=np.uint8)
    arrays = {name: unpack(d[name]) for name in _CAMERA_ARRAYS if name in d}
    return CameraFrame(
        t=d["t"],
        frame=d["frame"],
        rgb=rgb,
        K=unpack(d["K"]),
        pose=unpack(d["pose"]),
        valid=d["valid"],
        depth=depth,
        **arrays,
    )


def encode_observation(obs: Observation, static: StaticGT) -> str:
    """An observation as JSON text; signs and light geometry refer to the static message
    when unchanged. Parallel arrays are packed as one float and one integer block each."""
    r = obs.route
    a = obs.ground_truth.actors
    gt = obs.ground_truth
    i0 = None if static.route is None else route_index(r, static.route)
    if i0 is None:
        route_f = _columns([r.xy, r.yaw, r.speed_limit_mps, r.lane_width_m], np.float64)
        route_i = _columns([r.left_lane, r.junction], np.int64)
        blocks = (
            f'"columns":{_ROUTE_COLUMNS},"floats":{pack_json(route_f)},"ints":{pack_json(route_i)}'
        )
    else:  # the common case: points i0:i0+n of the route in /world/static
        blocks = f'"index":{i0},"n":{len(r.yaw)}'
    actor_f = _columns([getattr(a, n) for n in _ACTOR_FLOATS], np.float64)
    actor_i = _columns([getattr(a, n) for n in _ACTOR_INTS], np.int64)
    if gt.lights and tuple(g.id for g in gt.lights) == static.light_ids:
        lights = f'{{"state":{[int(g.state) for g in gt.lights]!r}}}'
    else:
        lights = _dumps({"full": [encode_light(g) for g in gt.lights]})
    parts = [
        f'{{"t":{num(obs.t)},"frame":{obs.frame},"valid":{flag(obs.valid)},',
        f'"ego":{encode_ego(obs.ego)},',
        f'"route":{{{blocks},',
        f'"step_m":{num(r.step_m)},"s0_m":{num(r.s0_m)},"remaining_m":{num(r.remaining_m)}}},',
        f'"events":{encode_events(obs.events)},',
        f'"actors":{{"columns":{_ACTOR_COLUMNS},',
        f'"floats":{pack_json(actor_f)},"ints":{pack_json(actor_i)}}},',
        f'"lights":{lights}',
    ]
    if gt.signs != static.signs:
        parts.append(f',"signs":{_dumps([encode_sign(s) for s in gt.signs])}')
    if obs.sensors:
        cams = {name: encode_camera(c) for name, c in obs.sensors.items()}
        parts.append(f',"sensors":{_dumps(cams)}')
    parts.append("}")
    return "".join(parts)


def decode_observation(
    d: JSON,
    static: StaticGT,
    images: dict[str, np.ndarray | None] | None = None,
    depths: dict[str, np.ndarray | None] | None = None,
) -> Observation:
    """The observation :func:`encode_observation` wrote; ``images`` holds each camera's
    decoded pixels for this frame, ``depths`` its depth image where one was recorded."""
    ego = decode_ego(d["ego"])
    route = decode_route_ahead(d["route"], static.route, ego)
    af = unpack(d["actors"]["floats"]).reshape(-1, len(_ACTOR_FLOATS))
    ai = unpack(d["actors"]["ints"]).reshape(-1, len(_ACTOR_INTS))
    actors = ActorsGT(
        **{n: np.ascontiguousarray(af[:, i]) for i, n in enumerate(_ACTOR_FLOATS)},
        **{n: np.ascontiguousarray(ai[:, i]) for i, n in enumerate(_ACTOR_INTS)},
    )
    lights_d = d["lights"]
    if "state" in lights_d:
        lights = tuple(
            LightGT(**(encode_light(g) | {"state": LightState(s)}))
            for g, s in zip(static.lights, lights_d["state"], strict=True)
        )
    else:
        lights = tuple(decode_light(g) for g in lights_d["full"])
    signs = tuple(decode_sign(s) for s in d["signs"]) if "signs" in d else static.signs
    images, depths = images or {}, depths or {}
    sensors = {
        name: decode_camera(c, images.get(name), depths.get(name))
        for name, c in d.get("sensors", {}).items()
    }
    return Observation(
        t=d["t"],
        frame=d["frame"],
        ego=ego,
        route=route,
        events=tuple(decode_event(e) for e in d["events"]),
        ground_truth=GroundTruth(actors, signs, lights),
        sensors=sensors,
        valid=d["valid"],
    )


# --------------------------------------------------------------------------------- stack side
_OBJECT_FLOATS = ("x", "y", "yaw", "speed", "length", "width", "score")
_OBJECT_INTS = ("id", "kind")
_OBJECT_COLUMNS = _dumps(_OBJECT_FLOATS + _OBJECT_INTS)


_NO_OBJECTS = (
    f'"floats":{pack_json(np.zeros((0, len(_OBJECT_FLOATS))))},'
    f'"ints":{pack_json(np.zeros((0, len(_OBJECT_INTS)), dtype=np.int64))},"box":[]'
)


def decode_route_ahead(r: JSON, route: Route | None, ego: VehicleState) -> RouteAhead:
    """An observation's route ahead: its own blocks, or the slice of the episode's ``route``
    (from ``/world/static``) that :func:`encode_observation` referred to, rebuilt from ``ego``."""
    if "index" in r:
        if route is None:
            raise ValueError("the route ahead refers to a route, but /world/static has none")
        return route_slice(route, r["index"], r["index"] + r["n"], ego)
    rf, ri = unpack(r["floats"]).reshape(-1, 5), unpack(r["ints"]).reshape(-1, 2)
    return RouteAhead(
        xy=np.ascontiguousarray(rf[:, 0:2]),
        yaw=np.ascontiguousarray(rf[:, 2]),
        speed_limit_mps=np.ascontiguousarray(rf[:, 3]),
        lane_width_m=np.ascontiguousarray(rf[:, 4]),
        left_lane=np.ascontiguousarray(ri[:, 0]),
        junction=np.ascontiguousarray(ri[:, 1]),
        step_m=r["step_m"],
        s0_m=r["s0_m"],
        remaining_m=r["remaining_m"],
    )


def encode_perception(p: PerceptionOutput) -> str:
    """A perception output as JSON text; objects as a float and an integer block, their image
    boxes as a list (``null`` where a detector gives none)."""
    objs = p.objects
    if objs:
        floats = np.array(
            [(o.x, o.y, o.yaw, o.speed, o.length, o.width, o.score) for o in objs],
            dtype=np.float64,
        )  # the columns of _OBJECT_FLOATS
        ints = np.array([(o.id, o.kind) for o in objs], dtype=np.int64)
        boxes = _dumps([list(o.box) if o.box is not None else None for o in objs])
        blocks = f'"floats":{pack_json(floats)},"ints":{pack_json(ints)},"box":{boxes}'
    else:
        blocks = _NO_OBJECTS
    signs = ",".join(
        f'{{"id":{s.id},"type":{int(s.type)},"value":{num(s.value)},"x":{num(s.x)},'
        f'"y":{num(s.y)},"score":{num(s.score)}}}'
        for s in p.signs
    )
    lights = ",".join(
        f'{{"id":{g.id},"state":{int(g.state)},"stop_x":{num(g.stop_x)},'
        f'"stop_y":{num(g.stop_y)},"score":{num(g.score)}}}'
        for g in p.lights
    )
    limit = "null" if p.speed_limit_mps is None else num(p.speed_limit_mps)
    return (
        f'{{"t":{num(p.t)},"frame":{p.frame},"valid":{flag(p.valid)},'
        f'"latency_s":{num(p.latency_s)},"speed_limit_mps":{limit},'
        f'"objects":{{"columns":{_OBJECT_COLUMNS},{blocks}}},'
        f'"signs":[{signs}],"lights":[{lights}]}}'
    )


def decode_perception(d: JSON) -> PerceptionOutput:
    o = d["objects"]
    floats = unpack(o["floats"]).reshape(-1, len(_OBJECT_FLOATS)).tolist()
    ints = unpack(o["ints"]).reshape(-1, len(_OBJECT_INTS)).tolist()
    objects = tuple(
        DetectedObject(
            **dict(zip(_OBJECT_FLOATS, f, strict=True)),
            id=i[0],
            kind=ActorKind(i[1]),
            box=tuple(box) if box is not None else None,
        )
        for f, i, box in zip(floats, ints, o["box"], strict=True)
    )
    return PerceptionOutput(
        t=d["t"],
        frame=d["frame"],
        objects=objects,
        signs=tuple(DetectedSign(**(s | {"type": SignType(s["type"])})) for s in d["signs"]),
        lights=tuple(DetectedLight(**(g | {"state": LightState(g["state"])})) for g in d["lights"]),
        speed_limit_mps=d["speed_limit_mps"],
        latency_s=d["latency_s"],
        valid=d["valid"],
    )


def encode_plan(p: Plan) -> str:
    """A plan as JSON text."""
    ox, oy, oyaw = p.origin
    path = pack_json(np.asarray(p.path, dtype=np.float64))
    speed = pack_json(np.asarray(p.speed, dtype=np.float64))
    return (
        f'{{"t":{num(p.t)},"frame":{p.frame},"valid":{flag(p.valid)},"path":{path},'
        f'"speed":{speed},"step_m":{num(p.step_m)},"horizon_s":{num(p.horizon_s)},'
        f'"origin":[{num(ox)},{num(oy)},{num(oyaw)}]}}'
    )


def decode_plan(d: JSON) -> Plan:
    ox, oy, oyaw = d["origin"]
    return Plan(
        t=d["t"],
        frame=d["frame"],
        path=unpack(d["path"]),
        speed=unpack(d["speed"]),
        step_m=d["step_m"],
        horizon_s=d["horizon_s"],
        origin=(ox, oy, oyaw),
        valid=d["valid"],
    )


def encode_control(c: Control) -> JSON:
    return {
        "t": c.t,
        "frame": c.frame,
        "accel": c.accel,
        "steer": c.steer,
        "valid": c.valid,
        "reason": c.reason,
    }


def decode_control(d: JSON) -> Control:
    return Control(**d)
