"""Things standing on the ground, as boxes and flat panels in the map frame.

Every object is a few *parts*, each an oriented box (``cx, cy, yaw, length, width, z0, z1``)
with a colour per face, or a *panel* (a sign face: a flat polygon seen from both sides). A
vehicle is wheels, body and glass cabin; a pedestrian is legs, torso and head; a sign is a post
and its face; a traffic light is a pole and a head whose front is a texture with the lit lamp.

Shapes are built as arrays for all objects of one kind at once; :mod:`sim.camera` projects and
fills them. ``rank`` orders the parts of one object for the painter (lower first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from sim.messages import FloatArray, SemanticClass, SignType
from sim.render.textures import LIGHT_HEAD_M, SIGN_SIZE_M, sign_outline

# corners of a part are (±l/2, ±w/2, z0|z1) in this order:
#   0: (+,+,0) 1: (+,-,0) 2: (-,-,0) 3: (-,+,0) 4..7: the same at z1
_CORNER_SIGNS = np.array(
    [
        [1, 1, 0],
        [1, -1, 0],
        [-1, -1, 0],
        [-1, 1, 0],
        [1, 1, 1],
        [1, -1, 1],
        [-1, -1, 1],
        [-1, 1, 1],
    ],
    dtype=np.float64,
)
# faces as corner indices (no bottom face: the camera is never below an object's floor)
FACES = np.array([[0, 1, 5, 4], [2, 3, 7, 6], [3, 0, 4, 7], [1, 2, 6, 5], [4, 5, 6, 7]])
FRONT, BACK, LEFT, RIGHT, TOP = range(5)
# the FRONT face's corners as a texture's top-left, top-right, bottom-right, bottom-left, seen
# by a viewer in front of it (whose right is the part's left, +y)
FRONT_TEXTURE_CORNERS = np.array([5, 4, 0, 1])

CAR_COLOURS = np.array(  # RGB, repeated by how common they are on roads
    [
        (220, 222, 224),
        (220, 222, 224),
        (30, 31, 34),
        (30, 31, 34),
        (160, 163, 168),
        (160, 163, 168),
        (100, 102, 108),
        (150, 22, 28),
        (28, 58, 130),
        (20, 32, 66),
        (34, 84, 52),
        (214, 172, 36),
        (200, 96, 30),
        (178, 162, 126),
        (94, 58, 40),
        (90, 140, 170),
    ],
    dtype=np.float64,
)
SHIRTS = np.array(
    [
        (170, 40, 40),
        (40, 70, 150),
        (230, 230, 225),
        (40, 40, 44),
        (60, 120, 60),
        (200, 150, 40),
        (120, 60, 130),
    ],
    dtype=np.float64,
)
TROUSERS = np.array([(35, 40, 60), (40, 40, 42), (90, 80, 65), (60, 70, 95)], dtype=np.float64)
SKIN = np.array([(230, 190, 160), (200, 150, 115), (150, 100, 70), (95, 62, 45)], dtype=np.float64)
HAIR = (50, 35, 25)
GLASS = (48, 58, 70)
TYRE = (26, 26, 28)
METAL = (128, 130, 134)
HOUSING = (34, 34, 36)
SIGN_BACK = (150.0, 152.0, 156.0)
POST_M = 0.07  # side of a sign post
POLE_M = 0.14  # side of a traffic-light pole
TALL_VEHICLE_M = 2.0  # vehicles this tall are vans and trucks: a longer cabin, semantic TRUCK


def look_index(ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """A stable pseudo-random number per actor id (Knuth's multiplicative hash), for colours."""
    return ((ids.astype(np.uint64) * np.uint64(2654435761)) >> np.uint64(7)).astype(np.int64)


@dataclass
class Parts:
    """Boxes ``(N,)`` in the map frame, with the object each belongs to.

    :param colour: ``(N, 5, 3)`` RGB of each face (FRONT, BACK, LEFT, RIGHT, TOP)
    :param emissive: ``(N,)`` whether the FRONT face is drawn unlit (a lamp)
    :param texture: ``(N,)`` index into the frame's textures for the FRONT face, -1 if none
    :param obj: ``(N,)`` index of the object; ``rank`` ``(N,)`` painter's order within it
    :param labelled: ``(N,)`` whether the part counts for the object's box
    """

    cx: FloatArray
    cy: FloatArray
    yaw: FloatArray
    length: FloatArray
    width: FloatArray
    z0: FloatArray
    z1: FloatArray
    colour: FloatArray
    semantic: NDArray[np.uint8]
    instance: NDArray[np.int32]
    obj: NDArray[np.int64]
    rank: NDArray[np.int64]
    labelled: NDArray[np.bool_]
    texture: NDArray[np.int64]
    emissive: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.cx)

    def take(self, idx: NDArray[np.int64]) -> Parts:
        return Parts(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def corners(self) -> FloatArray:
        """Map-frame corners ``(N, 8, 3)``."""
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        lx = _CORNER_SIGNS[None, :, 0] * (self.length / 2.0)[:, None]
        ly = _CORNER_SIGNS[None, :, 1] * (self.width / 2.0)[:, None]
        z = np.where(_CORNER_SIGNS[None, :, 2] > 0, self.z1[:, None], self.z0[:, None])
        x = self.cx[:, None] + c * lx - s * ly
        y = self.cy[:, None] + s * lx + c * ly
        return np.stack([x, y, z], -1)

    def normals(self) -> FloatArray:
        """Map-frame outward unit normals ``(N, 5, 3)`` of FRONT, BACK, LEFT, RIGHT, TOP."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        z = np.zeros_like(c)
        return np.stack(
            [
                np.stack([c, s, z], -1),
                np.stack([-c, -s, z], -1),
                np.stack([-s, c, z], -1),
                np.stack([s, -c, z], -1),
                np.stack([z, z, z + 1.0], -1),
            ],
            1,
        )


def concat_parts(blocks: list[Parts]) -> Parts:
    return Parts(
        **{f.name: np.concatenate([getattr(b, f.name) for b in blocks]) for f in fields(Parts)}
    )


def _parts(
    n: int,
    *,
    cx: FloatArray,
    cy: FloatArray,
    yaw: FloatArray,
    length: FloatArray,
    width: FloatArray,
    z0: FloatArray,
    z1: FloatArray,
    colour: FloatArray,
    semantic: NDArray[np.uint8],
    instance: NDArray[np.int32],
    obj: NDArray[np.int64],
    rank: NDArray[np.int64],
    labelled: bool,
) -> Parts:
    return Parts(
        cx=cx,
        cy=cy,
        yaw=yaw,
        length=length,
        width=width,
        z0=z0,
        z1=z1,
        colour=colour,
        semantic=semantic,
        instance=instance,
        obj=obj,
        rank=rank,
        labelled=np.full(n, labelled),
        texture=np.full(n, -1, dtype=np.int64),
        emissive=np.zeros(n, dtype=bool),
    )


def vehicle_parts(
    x: FloatArray,
    y: FloatArray,
    yaw: FloatArray,
    length: FloatArray,
    width: FloatArray,
    height: FloatArray,
    ids: NDArray[np.int64],
    obj: NDArray[np.int64],
) -> Parts:
    """Wheels, body and cabin of ``(V,)`` vehicles (centre ``x, y`` on the ground)."""
    v = len(x)
    tall = height >= TALL_VEHICLE_M
    cabin_len = np.where(tall, 0.72, 0.5) * length
    cabin_off = np.where(tall, 0.1, -0.06) * length
    z_belt = np.where(tall, 0.55, 0.6) * height
    c, s = np.cos(yaw), np.sin(yaw)
    off = np.stack([np.zeros(v), np.zeros(v), cabin_off], 1)  # (V, 3): wheels, body, cabin
    body_rgb = CAR_COLOURS[look_index(ids) % len(CAR_COLOURS)]
    colour = np.empty((v, 3, 5, 3))
    colour[:, 0] = TYRE
    colour[:, 1] = body_rgb[:, None, :]
    colour[:, 2] = GLASS
    colour[:, 2, TOP] = body_rgb
    sem = np.where(tall, SemanticClass.TRUCK, SemanticClass.CAR).astype(np.uint8)
    n = 3 * v
    return _parts(
        n,
        cx=(x[:, None] + c[:, None] * off).ravel(),
        cy=(y[:, None] + s[:, None] * off).ravel(),
        yaw=np.repeat(yaw, 3),
        length=np.stack([0.84 * length, length, cabin_len], 1).ravel(),
        width=np.stack([0.94 * width, width, 0.88 * width], 1).ravel(),
        z0=np.stack([np.zeros(v), np.full(v, 0.3), z_belt], 1).ravel(),
        z1=np.stack([np.full(v, 0.34), z_belt, height], 1).ravel(),
        colour=colour.reshape(n, 5, 3),
        semantic=np.repeat(sem, 3),
        instance=np.repeat(ids, 3).astype(np.int32),
        obj=np.repeat(obj, 3),
        rank=np.tile(np.arange(3), v),
        labelled=True,
    )


def pedestrian_parts(
    x: FloatArray,
    y: FloatArray,
    yaw: FloatArray,
    ids: NDArray[np.int64],
    obj: NDArray[np.int64],
) -> Parts:
    """Legs, torso and head of ``(P,)`` pedestrians, dressed by their id."""
    p = len(x)
    looks = look_index(ids)
    colour = np.empty((p, 3, 5, 3))
    colour[:, 0] = TROUSERS[looks % len(TROUSERS)][:, None, :]
    colour[:, 1] = SHIRTS[(looks // 4) % len(SHIRTS)][:, None, :]
    colour[:, 2] = SKIN[(looks // 32) % len(SKIN)][:, None, :]
    colour[:, 2, BACK] = HAIR
    colour[:, 2, TOP] = HAIR
    n = 3 * p
    return _parts(
        n,
        cx=np.repeat(x, 3),
        cy=np.repeat(y, 3),
        yaw=np.repeat(yaw, 3),
        length=np.tile([0.24, 0.3, 0.22], p),
        width=np.tile([0.36, 0.48, 0.2], p),
        z0=np.tile([0.0, 0.85, 1.52], p),
        z1=np.tile([0.85, 1.5, 1.78], p),
        colour=colour.reshape(n, 5, 3),
        semantic=np.full(n, SemanticClass.PEDESTRIAN, dtype=np.uint8),
        instance=np.repeat(ids, 3).astype(np.int32),
        obj=np.repeat(obj, 3),
        rank=np.tile(np.arange(3), p),
        labelled=True,
    )


def post_parts(
    x: FloatArray, y: FloatArray, top: FloatArray, side: float, obj: NDArray[np.int64]
) -> Parts:
    """Posts and poles ``(P,)`` from the ground to ``top``: unlabelled stuff, instance 0."""
    n = len(x)
    colour = np.empty((n, 5, 3))
    colour[:] = METAL
    return _parts(
        n,
        cx=x,
        cy=y,
        yaw=np.zeros(n),
        length=np.full(n, side),
        width=np.full(n, side),
        z0=np.zeros(n),
        z1=top,
        colour=colour,
        semantic=np.full(n, SemanticClass.POLE, dtype=np.uint8),
        instance=np.zeros(n, dtype=np.int32),
        obj=obj,
        rank=np.zeros(n, dtype=np.int64),
        labelled=False,
    )


def light_head_parts(
    x: FloatArray,
    y: FloatArray,
    yaw: FloatArray,
    z0: FloatArray,
    ids: NDArray[np.int64],
    obj: NDArray[np.int64],
) -> Parts:
    """Traffic-light heads ``(L,)`` with their lower edge at ``z0``, in front of their pole:
    dark boxes whose FRONT (looking along ``yaw``) shows the lamps (set ``texture`` per frame)."""
    n = len(x)
    w, h, d = LIGHT_HEAD_M
    colour = np.empty((n, 5, 3))
    colour[:] = HOUSING
    shift = (POLE_M + d) / 2.0
    parts = _parts(
        n,
        cx=x + shift * np.cos(yaw),
        cy=y + shift * np.sin(yaw),
        yaw=yaw,
        length=np.full(n, d),
        width=np.full(n, w),
        z0=z0,
        z1=z0 + h,
        colour=colour,
        semantic=np.full(n, SemanticClass.TRAFFIC_LIGHT, dtype=np.uint8),
        instance=ids.astype(np.int32),
        obj=obj,
        rank=np.ones(n, dtype=np.int64),
        labelled=True,
    )
    parts.emissive[:] = True
    return parts


@dataclass(frozen=True)
class Panel:
    """A flat sign face in the map frame; its front looks along ``normal``.

    :param points: outline ``(K, 3)``, in order around the face
    :param square: ``(4, 3)`` corners the texture spans: top-left, top-right, bottom-right,
        bottom-left as seen from the front
    """

    points: FloatArray
    normal: FloatArray
    square: FloatArray
    centre: FloatArray


def sign_panel(kind: SignType, x: float, y: float, z_bottom: float, yaw: float) -> Panel:
    """The face of a sign at ``(x, y)`` with its lower edge ``z_bottom`` above the ground,
    looking along ``yaw``. Its post stands just behind it (:func:`sign_post_xy`)."""
    size = SIGN_SIZE_M[kind]
    n = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    right = np.array([-math.sin(yaw), math.cos(yaw), 0.0])  # a viewer's right, facing the sign
    up = np.array([0.0, 0.0, 1.0])
    centre = np.array([x, y, z_bottom + size / 2.0])
    o = sign_outline(kind)
    pts = centre + o[:, :1] * right + o[:, 1:2] * up
    half = size / 2.0
    sq = np.array([[-half, half], [half, half], [half, -half], [-half, -half]])
    square = centre + sq[:, :1] * right + sq[:, 1:2] * up
    return Panel(pts, n, square, centre)


def sign_post_xy(x: float, y: float, yaw: float) -> tuple[float, float]:
    """Where the post of a sign face at ``(x, y)`` looking along ``yaw`` stands (just behind)."""
    back = POST_M / 2.0 + 0.01
    return x - back * math.cos(yaw), y - back * math.sin(yaw)
