"""Objects of one frame: from ground truth to filled faces and exact boxes.

The painter's algorithm on a face-index buffer: every front-facing face of every object in view
is projected, near-clipped and filled with ``cv2.fillConvexPoly`` (far objects first; parts of
one object by rank), writing only its face id. Colour, semantic id, instance id and depth (exact,
from the face's plane: ``1 / depth`` is affine in the pixel) of all object pixels are then looked
up from per-face tables in one vectorised pass; sign faces and lamp heads get their textures.

Boxes come from the same projected outlines: an object's box bounds all its faces, hidden ones
too, clipped to the image; its occlusion is the share of its own in-image pixels (its faces
filled alone) that the final face buffer gives to something else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from sim.messages import (
    SIGN_CLASS,
    ActorKind,
    DetectionClass,
    FloatArray,
    GroundTruth,
    LightGT,
    LightState,
    SemanticClass,
    SignGT,
    SignType,
)
from sim.render.lighting import Lighting
from sim.render.objects import (
    FACES,
    FRONT,
    FRONT_TEXTURE_CORNERS,
    POLE_M,
    POST_M,
    SIGN_BACK,
    Parts,
    concat_parts,
    light_head_parts,
    pedestrian_parts,
    post_parts,
    sign_panel,
    sign_post_xy,
    vehicle_parts,
)
from sim.render.textures import LIGHT_HEAD_M, light_texture, sign_outline, sign_texture

NEAR_M = 0.1  # near clipping plane (optical-axis depth)
FAR_DEPTH_M = 1000.0  # depth of the sky; nothing is farther
ACTOR_RANGE_M = 150.0  # objects farther than this are not drawn
MIN_PART_PX = 0.4  # parts thinner than this on screen are not drawn (distant posts)
TEXTURE_MIN_PX = 3  # faces smaller than this are drawn in their texture's mean colour
PANEL_VERTICES = 24  # sign outlines are padded to this many vertices (the circle's count)


@dataclass(frozen=True)
class View:
    """What drawing needs of a camera in one frame.

    :param R: rotation from the optical frame to the map frame (3, 3)
    :param t: camera position in the map frame (3,) m
    :param fog: extinction (1/m) applied per face, 0 for none
    """

    K: FloatArray
    width: int
    height: int
    R: FloatArray
    t: FloatArray
    light: Lighting
    fog: float

    def to_optical(self, p: FloatArray) -> FloatArray:
        """Map-frame points ``(..., 3)`` in the optical frame."""
        return (p - self.t) @ self.R

    def project(self, p_opt: FloatArray) -> FloatArray:
        """Pixels ``(..., 2)`` of optical-frame points in front of the camera."""
        K = self.K
        return p_opt[..., :2] / p_opt[..., 2:3] * (K[0, 0], K[1, 1]) + (K[0, 2], K[1, 2])


@dataclass
class Buffers:
    """Per-camera scratch images, reused every frame."""

    face: NDArray[np.int32]  # (H, W) face id, 0 for ground and sky
    scratch: NDArray[np.uint8]  # (H, W) one object's own pixels
    uu: NDArray[np.float32]  # (H, W) pixel column
    vv: NDArray[np.float32]  # (H, W) pixel row

    @classmethod
    def make(cls, width: int, height: int) -> Buffers:
        uu, vv = np.meshgrid(
            np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        )
        return cls(
            np.zeros((height, width), dtype=np.int32),
            np.zeros((height, width), dtype=np.uint8),
            uu,
            vv,
        )


@dataclass(frozen=True)
class Boxes:
    """2D boxes of a frame, parallel ``(B, ...)`` arrays (see :class:`CameraFrame`)."""

    xyxy: FloatArray
    cls: NDArray[np.int64]
    id: NDArray[np.int64]
    truncation: FloatArray
    occlusion: FloatArray
    visible_px: NDArray[np.int64]
    value: FloatArray
    state: NDArray[np.int64]


# ------------------------------------------------------------------------------ static props
def _mean_colour(img: NDArray[np.uint8], mask: NDArray[np.uint8] | None = None) -> FloatArray:
    return np.array(cv2.mean(img, mask)[:3])


@dataclass
class SignProps:
    """Sign faces and posts, built once per map: ``(S, ...)`` arrays in the map frame."""

    sign: list[SignGT]
    cls: NDArray[np.int64]
    outline: FloatArray  # (S, PANEL_VERTICES, 3)
    square: FloatArray  # (S, 4, 3) corners the texture spans
    normal: FloatArray  # (S, 3)
    centre: FloatArray  # (S, 3)
    posts: Parts
    textures: list[NDArray[np.uint8]]
    flat: FloatArray  # (S, 3) mean colour of each face

    @classmethod
    def build(cls, signs: tuple[SignGT, ...]) -> SignProps:
        kept = [sg for sg in signs if sg.type in SIGN_CLASS]
        panels = [sign_panel(SignType(sg.type), sg.x, sg.y, sg.z, sg.yaw) for sg in kept]
        outline = np.zeros((len(kept), PANEL_VERTICES, 3))
        for i, p in enumerate(panels):  # repeat the last vertex: fillConvexPoly ignores it
            k = len(p.points)
            outline[i, :k] = p.points
            outline[i, k:] = p.points[-1]
        textures = [sign_texture(SignType(sg.type), sg.value) for sg in kept]
        flat = np.array(
            [_sign_mean(SignType(sg.type), tex) for sg, tex in zip(kept, textures, strict=True)]
        )
        centre = np.array([p.centre for p in panels]).reshape(-1, 3)
        xy = np.array([sign_post_xy(sg.x, sg.y, sg.yaw) for sg in kept]).reshape(-1, 2)
        zeros = np.zeros(len(kept), dtype=np.int64)
        return cls(
            sign=kept,
            cls=np.array([int(SIGN_CLASS[SignType(sg.type)]) for sg in kept], dtype=np.int64),
            outline=outline,
            square=np.array([p.square for p in panels]).reshape(-1, 4, 3),
            normal=np.array([p.normal for p in panels]).reshape(-1, 3),
            centre=centre,
            posts=post_parts(xy[:, 0], xy[:, 1], centre[:, 2], POST_M, zeros),
            textures=textures,
            flat=flat.reshape(-1, 3),
        )


def _sign_mean(kind: SignType, tex: NDArray[np.uint8]) -> FloatArray:
    n = tex.shape[0]
    o = sign_outline(kind)
    half = np.abs(o).max()
    px = np.stack([(o[:, 0] / half + 1) * n / 2, (1 - o[:, 1] / half) * n / 2], -1)
    mask = np.zeros((n, n), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(px).astype(np.int32)], 1)
    return _mean_colour(tex, mask)


@dataclass
class LightProps:
    """Traffic-light heads and poles, one per head id: ``(L, ...)``."""

    ids: NDArray[np.int64]
    first: NDArray[np.int64]  # index of each head's first entry in the ground-truth tuple
    yaw: FloatArray
    centre: FloatArray  # (L, 3) head centre
    heads: Parts
    poles: Parts

    @classmethod
    def build(cls, lights: tuple[LightGT, ...]) -> LightProps:
        seen: dict[int, int] = {}
        for i, lt in enumerate(lights):
            seen.setdefault(lt.id, i)
        first = np.array(list(seen.values()), dtype=np.int64)
        gt = [lights[i] for i in first.tolist()]
        x = np.array([lt.x for lt in gt])
        y = np.array([lt.y for lt in gt])
        yaw = np.array([lt.yaw for lt in gt])
        z0 = np.array([lt.z for lt in gt])
        ids = np.array([lt.id for lt in gt], dtype=np.int64)
        zeros = np.zeros(len(ids), dtype=np.int64)
        heads = light_head_parts(x, y, yaw, z0, ids, zeros)
        poles = post_parts(x, y, z0 + LIGHT_HEAD_M[1], POLE_M, zeros)
        centre = np.stack([heads.cx, heads.cy, z0 + LIGHT_HEAD_M[1] / 2.0], -1).reshape(-1, 3)
        return cls(ids, first, yaw, centre, heads, poles)


_LIGHT_TEXTURES = {st: light_texture(st) for st in LightState}
_LIGHT_FLAT = {st: _mean_colour(img) for st, img in _LIGHT_TEXTURES.items()}


class Props:
    """Signs and lights of the ground truth, rebuilt only when the set of them changes."""

    def __init__(self) -> None:
        self._signs_key: tuple[SignGT, ...] | None = None
        self._lights_key: tuple[int, ...] | None = None
        self.signs = SignProps.build(())
        self.lights = LightProps.build(())

    def update(self, gt: GroundTruth) -> None:
        if gt.signs is not self._signs_key:
            self.signs = SignProps.build(gt.signs)
            self._signs_key = gt.signs
        key = tuple(lt.id for lt in gt.lights)
        if key != self._lights_key:
            self.lights = LightProps.build(gt.lights)
            self._lights_key = key


# ------------------------------------------------------------------------------------ scene
def _in_view(view: View, centre: FloatArray, radius: FloatArray | float) -> NDArray[np.bool_]:
    """Which spheres ``(N,)`` may be seen: in front, within range, inside the view's cone."""
    pc = view.to_optical(centre)
    z = pc[:, 2]
    zr = np.maximum(z, 0.0) + radius
    tan_x = (view.width / 2.0 + 1.0) / view.K[0, 0]
    tan_y = (view.height / 2.0 + 1.0) / view.K[1, 1]
    return (
        (z > NEAR_M - radius)
        & (z < ACTOR_RANGE_M + radius)
        & (np.abs(pc[:, 0]) - radius < zr * tan_x)
        & (np.abs(pc[:, 1]) - radius < zr * tan_y)
    )


@dataclass
class _Objects:
    """Objects in view: ``cls`` (-1: drawn but never boxed, e.g. a sign seen from behind)."""

    cls: list[int] = field(default_factory=list)
    id: list[int] = field(default_factory=list)
    distance: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    state: list[int] = field(default_factory=list)

    def add(
        self, cls: NDArray, ids: NDArray, dist: NDArray, value: NDArray, state: NDArray
    ) -> NDArray[np.int64]:
        """Append ``(N,)`` objects; return their indices."""
        start = len(self.cls)
        self.cls += cls.tolist()
        self.id += ids.tolist()
        self.distance += dist.tolist()
        self.value += value.tolist()
        self.state += state.tolist()
        return np.arange(start, len(self.cls), dtype=np.int64)


@dataclass
class _Faces:
    """Faces before sorting: ``(F, ...)`` arrays; outlines in the optical frame."""

    poly: FloatArray  # (F, V, 3)
    normal: FloatArray  # (F, 3) optical frame
    colour: FloatArray  # (F, 3) lit RGB
    obj: NDArray[np.int64]
    rank: NDArray[np.int64]
    labelled: NDArray[np.bool_]
    semantic: NDArray[np.uint8]
    instance: NDArray[np.int32]
    texture: NDArray[np.int64]  # index into the frame's textures, -1 for none
    tex_quad: FloatArray  # (F, 4, 3) corners the texture spans (optical frame)
    tex_gain: FloatArray  # (F, 3) light applied to the texture


def _box_faces(view: View, parts: Parts, flats: list[FloatArray]) -> _Faces | None:
    """Front faces of box parts, with parts thinner than :data:`MIN_PART_PX` left out."""
    centre = np.stack([parts.cx, parts.cy, 0.5 * (parts.z0 + parts.z1)], -1)
    z = view.to_optical(centre)[:, 2]
    thin = np.minimum(np.minimum(parts.length, parts.width), parts.z1 - parts.z0)
    keep = thin * view.K[0, 0] > MIN_PART_PX * np.maximum(z, NEAR_M)
    if not keep.all():
        parts = parts.take(np.flatnonzero(keep))
    if not len(parts):
        return None
    corners = view.to_optical(parts.corners())  # (N, 8, 3)
    fc = corners[:, FACES]  # (N, 5, 4, 3)
    nm = parts.normals()  # (N, 5, 3) map frame
    nc = nm @ view.R
    facing = np.einsum("nfk,nfk->nf", nc, fc[:, :, 0]) < 0.0  # camera on the outside
    pi, fi = np.nonzero(facing)
    if not len(pi):
        return None
    shade = view.light.shade(nm[pi, fi])  # (F,)
    colour = parts.colour[pi, fi] * shade[:, None] * view.light.gain
    front = fi == FRONT
    texture = np.where(front, parts.texture[pi], -1)
    lamp = front & parts.emissive[pi]
    gain = np.where(lamp[:, None], 1.0, shade[:, None] * view.light.gain)
    for j in np.flatnonzero(texture >= 0).tolist():  # flat colour: the texture's mean
        colour[j] = flats[texture[j]] * gain[j]
    return _Faces(
        poly=fc[pi, fi],
        normal=nc[pi, fi],
        colour=colour,
        obj=parts.obj[pi],
        rank=parts.rank[pi],
        labelled=parts.labelled[pi],
        semantic=parts.semantic[pi],
        instance=parts.instance[pi],
        texture=texture,
        tex_quad=corners[pi][:, FRONT_TEXTURE_CORNERS],
        tex_gain=gain,
    )


class Scene:
    """Everything one frame draws on top of the ground."""

    def __init__(self, view: View, gt: GroundTruth, props: Props) -> None:
        self.view = view
        self.objects = _Objects()
        self.textures: list[NDArray[np.uint8]] = []
        self.flats: list[FloatArray] = []  # mean colour of each texture
        parts: list[Parts] = []
        self._actors(gt, parts)
        panels = self._signs(props.signs, parts)
        self._lights(props.lights, gt.lights, parts)
        blocks = []
        if parts:
            b = _box_faces(view, concat_parts(parts), self.flats)
            if b is not None:
                blocks.append(b)
        if panels is not None:
            blocks.append(panels)
        self.faces = blocks

    def _actors(self, gt: GroundTruth, parts: list[Parts]) -> None:
        a = gt.actors
        if not len(a):
            return
        half = 0.5 * np.sqrt(a.length**2 + a.width**2 + a.height**2)
        centre = np.stack([a.x, a.y, a.height / 2.0], -1)
        sel = np.flatnonzero(_in_view(self.view, centre, half))
        if not len(sel):
            return
        veh = a.kind[sel] == ActorKind.VEHICLE
        cls = np.where(veh, int(DetectionClass.VEHICLE), int(DetectionClass.PEDESTRIAN))
        dist = np.linalg.norm(centre[sel] - self.view.t, axis=1)
        zeros = np.zeros(len(sel))
        obj = self.objects.add(cls, a.id[sel], dist, zeros, np.full(len(sel), -1))
        v, p = sel[veh], sel[~veh]
        if len(v):
            parts.append(
                vehicle_parts(
                    a.x[v],
                    a.y[v],
                    a.yaw[v],
                    a.length[v],
                    a.width[v],
                    a.height[v],
                    a.id[v],
                    obj[veh],
                )
            )
        if len(p):
            parts.append(pedestrian_parts(a.x[p], a.y[p], a.yaw[p], a.id[p], obj[~veh]))

    def _signs(self, sp: SignProps, parts: list[Parts]) -> _Faces | None:
        """Sign posts (as parts) and faces (returned): the textured front, or the grey back."""
        if not sp.sign:
            return None
        sel = np.flatnonzero(_in_view(self.view, sp.centre, 0.5))
        if not len(sel):
            return None
        t = self.view.t
        facing = np.einsum("sk,sk->s", sp.normal[sel], t - sp.centre[sel]) > 0.0
        dist = np.linalg.norm(sp.centre[sel] - t, axis=1)
        ids = np.array([sp.sign[i].id for i in sel.tolist()], dtype=np.int64)
        value = np.array([sp.sign[i].value for i in sel.tolist()])
        obj = self.objects.add(
            np.where(facing, sp.cls[sel], -1), ids, dist, value, np.full(len(sel), -1)
        )
        posts = sp.posts.take(sel)
        posts.obj = obj
        posts.rank = np.where(facing, 0, 2)  # a face seen from behind is behind its post
        parts.append(posts)
        n_map = np.where(facing[:, None], sp.normal[sel], -sp.normal[sel])
        lum = self.view.light.shade(n_map)[:, None] * self.view.light.gain  # (S, 3)
        base = np.where(facing[:, None], sp.flat[sel], np.array(SIGN_BACK))
        tex = np.full(len(sel), -1, dtype=np.int64)
        for j, i in enumerate(sel.tolist()):
            if facing[j]:
                tex[j] = len(self.textures)
                self.textures.append(sp.textures[i])
                self.flats.append(sp.flat[i])
        return _Faces(
            poly=self.view.to_optical(sp.outline[sel]),
            normal=n_map @ self.view.R,
            colour=base * lum,
            obj=obj,
            rank=np.ones(len(sel), dtype=np.int64),
            labelled=facing,
            semantic=np.full(len(sel), SemanticClass.TRAFFIC_SIGN, dtype=np.uint8),
            instance=ids.astype(np.int32),
            texture=tex,
            tex_quad=self.view.to_optical(sp.square[sel]),
            tex_gain=lum,
        )

    def _lights(self, lp: LightProps, gt: tuple[LightGT, ...], parts: list[Parts]) -> None:
        if not len(lp.ids):
            return
        sel = np.flatnonzero(_in_view(self.view, lp.centre, 0.8))
        if not len(sel):
            return
        t = self.view.t
        yaw = lp.yaw[sel]
        facing = (
            np.cos(yaw) * (t[0] - lp.centre[sel, 0]) + np.sin(yaw) * (t[1] - lp.centre[sel, 1]) > 0
        )
        states = np.array([int(gt[i].state) for i in lp.first[sel].tolist()], dtype=np.int64)
        dist = np.linalg.norm(lp.centre[sel] - t, axis=1)
        cls = np.where(facing, int(DetectionClass.TRAFFIC_LIGHT), -1)
        obj = self.objects.add(cls, lp.ids[sel], dist, np.zeros(len(sel)), states)
        heads, poles = lp.heads.take(sel), lp.poles.take(sel)
        heads.obj, poles.obj = obj, obj.copy()
        heads.rank = np.where(facing, 1, 0)  # seen from behind, the pole is in front
        poles.rank = np.where(facing, 0, 1)
        base = len(self.textures)
        self.textures += [_LIGHT_TEXTURES[LightState(s)] for s in states.tolist()]
        self.flats += [_LIGHT_FLAT[LightState(s)] for s in states.tolist()]
        heads.texture = base + np.arange(len(sel), dtype=np.int64)
        parts += [heads, poles]

    # ------------------------------------------------------------------------------- draw
    def draw(
        self,
        buf: Buffers,
        rgb: NDArray[np.uint8],
        depth: NDArray[np.float32],
        semantic: NDArray[np.uint8],
        instance: NDArray[np.int32],
    ) -> Boxes:
        """Fill the objects into the four images (in place); return the frame's boxes."""
        drawn = _Drawn.project(self.view, self.faces, self.objects)
        idx = drawn.fill(buf, rgb, depth, semantic, instance)
        drawn.texture(self.view, buf, self.textures, rgb)
        return drawn.boxes(self.view, buf, self.objects, idx)


@dataclass
class _Drawn:
    """Projected faces in painter's order: face id = index + 1."""

    poly: list[NDArray[np.int32]]  # fixed-point pixel outlines (1/16 px)
    uv_min: FloatArray  # (F, 2)
    uv_max: FloatArray
    obj: NDArray[np.int64]
    labelled: NDArray[np.bool_]
    colour: NDArray[np.uint8]
    semantic: NDArray[np.uint8]
    instance: NDArray[np.int32]
    plane: FloatArray  # (F, 3): 1 / depth = a·u + b·v + c at pixel (u, v)
    textured: list[tuple[int, int, FloatArray, FloatArray]]  # face, texture, quad (4, 2), gain

    @classmethod
    def project(cls, view: View, blocks: list[_Faces], objects: _Objects) -> _Drawn:
        polys: list[NDArray[np.int32]] = []
        lo: list[FloatArray] = []
        hi: list[FloatArray] = []
        kept: list[NDArray[np.int64]] = []
        for b in blocks:
            z = b.poly[..., 2]
            whole = z.min(axis=1) > NEAR_M  # most faces lie wholly in front of the camera
            idx = np.flatnonzero(whole)
            uv = view.project(b.poly[idx])  # (F, V, 2)
            polys += list(np.round(uv * 16.0).astype(np.int32))
            lo.append(uv.min(axis=1))
            hi.append(uv.max(axis=1))
            for i in np.flatnonzero(~whole & (z.max(axis=1) > NEAR_M)).tolist():
                clipped = _clip_near(b.poly[i])
                if len(clipped) < 3:
                    continue
                uvc = view.project(clipped)
                polys.append(np.round(uvc * 16.0).astype(np.int32))
                lo.append(uvc.min(axis=0)[None])
                hi.append(uvc.max(axis=0)[None])
                idx = np.append(idx, i)
            kept.append(idx)
        sizes = [len(k) for k in kept]
        cat = {  # attributes of the kept faces, block after block, in ``polys`` order
            name: np.concatenate([getattr(b, name)[k] for b, k in zip(blocks, kept, strict=True)])
            for name in (
                "normal", "colour", "obj", "rank", "labelled", "semantic", "instance",
                "texture", "tex_quad", "tex_gain",
            )
        } if sum(sizes) else None  # fmt: skip
        if cat is None:
            return cls.empty()
        cat["point"] = np.concatenate([b.poly[k, 0] for b, k in zip(blocks, kept, strict=True)])
        dist = np.asarray(objects.distance)[cat["obj"]]
        order = np.lexsort((cat["rank"], -dist))
        uv_min, uv_max = np.concatenate(lo)[order], np.concatenate(hi)[order]
        nrm = cat["normal"][order]
        p0 = cat["point"][order]
        d = np.einsum("fk,fk->f", nrm, p0)  # the face's plane n·X = d (optical frame)
        K = view.K
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        plane = np.stack(
            [
                nrm[:, 0] / (fx * d),
                nrm[:, 1] / (fy * d),
                (nrm[:, 2] - nrm[:, 0] * cx / fx - nrm[:, 1] * cy / fy) / d,
            ],
            -1,
        )
        colour = cat["colour"][order]
        if view.fog > 0.0:  # fog per face at its first corner: cheap and close enough
            f = 1.0 - np.exp(-view.fog * np.maximum(p0[:, 2:3], 0.0))
            colour = colour + (view.light.fog_rgb - colour) * f
        textured = []
        tex, quads, gains = cat["texture"][order], cat["tex_quad"][order], cat["tex_gain"][order]
        size = uv_max - uv_min
        for f in np.flatnonzero(tex >= 0).tolist():
            if quads[f, :, 2].min() <= NEAR_M or size[f].min() < TEXTURE_MIN_PX:
                continue  # crossing the camera plane, or too small: flat colour
            textured.append((f, int(tex[f]), view.project(quads[f]), gains[f]))
        return cls(
            poly=[polys[i] for i in order.tolist()],
            uv_min=uv_min,
            uv_max=uv_max,
            obj=cat["obj"][order],
            labelled=cat["labelled"][order],
            colour=np.clip(np.round(colour), 0, 255).astype(np.uint8),
            semantic=cat["semantic"][order],
            instance=cat["instance"][order],
            plane=plane,
            textured=textured,
        )

    @classmethod
    def empty(cls) -> _Drawn:
        e = np.zeros(0, dtype=np.int64)
        return cls(
            [],
            np.zeros((0, 2)),
            np.zeros((0, 2)),
            e,
            e.astype(bool),
            np.zeros((0, 3), dtype=np.uint8),
            e.astype(np.uint8),
            e.astype(np.int32),
            np.zeros((0, 3)),
            [],
        )

    def fill(
        self,
        buf: Buffers,
        rgb: NDArray[np.uint8],
        depth: NDArray[np.float32],
        semantic: NDArray[np.uint8],
        instance: NDArray[np.int32],
    ) -> NDArray[np.int64]:
        """Paint the faces; return the face index of every object pixel."""
        face = buf.face
        face.fill(0)
        for f, pts in enumerate(self.poly):
            cv2.fillConvexPoly(face, pts, f + 1, cv2.LINE_8, 4)
        if not self.poly:
            return np.zeros(0, dtype=np.int64)
        # look up only inside the rectangle the faces cover (usually a band about the horizon)
        h, w = face.shape
        c0, r0 = (max(math.floor(v), 0) for v in self.uv_min.min(axis=0))
        c1, r1 = (math.ceil(v) + 1 for v in self.uv_max.max(axis=0))
        win = (slice(r0, min(r1, h)), slice(c0, min(c1, w)))
        mask = face[win] > 0
        idx = face[win][mask].astype(np.int64) - 1
        rgb[win][mask] = self.colour[idx]
        semantic[win][mask] = self.semantic[idx]
        instance[win][mask] = self.instance[idx]
        pl = self.plane[idx]
        inv = pl[:, 0] * buf.uu[win][mask] + pl[:, 1] * buf.vv[win][mask] + pl[:, 2]
        depth[win][mask] = 1.0 / np.maximum(inv, 1.0 / FAR_DEPTH_M)
        return idx

    def texture(
        self, view: View, buf: Buffers, textures: list[NDArray[np.uint8]], rgb: NDArray[np.uint8]
    ) -> None:
        """Warp sign and lamp textures onto their faces, where those faces are visible."""
        w, h = view.width, view.height
        for f, ti, quad, gain in self.textured:
            x0, y0 = (max(math.floor(c), 0) for c in self.uv_min[f])
            x1, y1 = (
                min(math.ceil(self.uv_max[f, 0]) + 1, w),
                min(math.ceil(self.uv_max[f, 1]) + 1, h),
            )
            if x1 <= x0 or y1 <= y0:
                continue
            sel = buf.face[y0:y1, x0:x1] == f + 1
            if not sel.any():
                continue
            img = _minified(textures[ti], max(x1 - x0, y1 - y0))
            th, tw = img.shape[:2]
            src = np.array(
                [[-0.5, -0.5], [tw - 0.5, -0.5], [tw - 0.5, th - 0.5], [-0.5, th - 0.5]],
                dtype=np.float32,
            )
            m = cv2.getPerspectiveTransform(src, (quad - (x0, y0)).astype(np.float32))
            warped = cv2.warpPerspective(
                img, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            rgb[y0:y1, x0:x1][sel] = np.clip(warped[sel] * gain, 0, 255).astype(np.uint8)

    def _extent_in_image(
        self, faces: NDArray[np.int64], w: int, h: int
    ) -> tuple[float, float, float, float]:
        """The extent ``x0, y0, x1, y1`` of these faces' parts inside the image (its edges at
        -0.5 and w - 0.5, h - 0.5); empty (x1 < x0) where none is inside."""
        box = [math.inf, math.inf, -math.inf, -math.inf]
        for f in faces.tolist():
            (ax, ay), (bx, by) = self.uv_min[f], self.uv_max[f]
            if ax >= -0.5 and ay >= -0.5 and bx <= w - 0.5 and by <= h - 0.5:
                pts = np.array([[ax, ay], [bx, by]])  # wholly inside: its own extent
            else:
                pts = _clip_rect(self.poly[f] / 16.0, -0.5, -0.5, w - 0.5, h - 0.5)
                if len(pts) == 0:
                    continue
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            box = [min(box[0], lo[0]), min(box[1], lo[1]), max(box[2], hi[0]), max(box[3], hi[1])]
        return max(box[0], -0.5), max(box[1], -0.5), min(box[2], w - 0.5), min(box[3], h - 0.5)

    def boxes(self, view: View, buf: Buffers, objects: _Objects, idx: NDArray[np.int64]) -> Boxes:
        """Boxes of objects with a class and at least one own pixel in the image."""
        w, h = view.width, view.height
        n_obj = len(objects.cls)
        has_class = np.asarray(objects.cls, dtype=np.int64).reshape(-1) >= 0
        lab = self.labelled & has_class[self.obj] if len(self.obj) else self.labelled
        rows = []
        if lab.any():
            lo = np.full((n_obj, 2), np.inf)
            hi = np.full((n_obj, 2), -np.inf)
            np.minimum.at(lo, self.obj[lab], self.uv_min[lab])
            np.maximum.at(hi, self.obj[lab], self.uv_max[lab])
            shown = np.bincount(self.obj[idx[lab[idx]]], minlength=n_obj)
            lab_faces = np.flatnonzero(lab)
            lab_obj = self.obj[lab_faces]
            for o in np.unique(lab_obj).tolist():
                (x0, y0), (x1, y1) = lo[o], hi[o]
                cx0, cy0 = max(x0, -0.5), max(y0, -0.5)
                cx1, cy1 = min(x1, w - 0.5), min(y1, h - 0.5)
                if cx1 <= cx0 or cy1 <= cy0:
                    continue
                for f in lab_faces[lab_obj == o].tolist():
                    cv2.fillConvexPoly(buf.scratch, self.poly[f], 1, cv2.LINE_8, 4)
                r0, r1 = max(math.floor(cy0), 0), min(math.ceil(cy1) + 1, h)
                c0, c1 = max(math.floor(cx0), 0), min(math.ceil(cx1) + 1, w)
                own = int(cv2.countNonZero(buf.scratch[r0:r1, c0:c1]))
                buf.scratch[r0:r1, c0:c1] = 0
                if own == 0:
                    continue
                if x0 < -0.5 or y0 < -0.5 or x1 > w - 0.5 or y1 > h - 0.5:
                    # Cut by the image: the faces' extents clipped to it can hold far more than
                    # the object (a side face crossing the camera plane is a thin slanted band
                    # whose extent spans the image), so the box is that of the faces clipped.
                    tx0, ty0, tx1, ty1 = self._extent_in_image(lab_faces[lab_obj == o], w, h)
                    if tx1 > tx0 and ty1 > ty0:  # (else a sliver on the edge: keep the extent)
                        cx0, cy0, cx1, cy1 = tx0, ty0, tx1, ty1
                full = (x1 - x0) * (y1 - y0)
                trunc = 1.0 - (cx1 - cx0) * (cy1 - cy0) / full if full > 0 else 0.0
                seen = min(int(shown[o]), own)
                rows.append(
                    (cx0, cy0, cx1, cy1, objects.cls[o], objects.id[o], trunc, 1.0 - seen / own,
                     seen, objects.value[o], objects.state[o])
                )  # fmt: skip
        arr = np.array(rows, dtype=np.float64).reshape(-1, 11)
        return Boxes(
            xyxy=arr[:, :4].copy(),
            cls=arr[:, 4].astype(np.int64),
            id=arr[:, 5].astype(np.int64),
            truncation=arr[:, 6].copy(),
            occlusion=arr[:, 7].copy(),
            visible_px=arr[:, 8].astype(np.int64),
            value=arr[:, 9].copy(),
            state=arr[:, 10].astype(np.int64),
        )


_MIPS: dict[tuple[int, int], NDArray[np.uint8]] = {}


def _minified(img: NDArray[np.uint8], size_px: int) -> NDArray[np.uint8]:
    """The texture shrunk by a power of two towards ``size_px`` (a mipmap level), so a sign a
    few pixels wide averages its texels instead of sampling a few of them."""
    level = math.floor(math.log2(max(img.shape[0] / max(size_px, 1), 1.0)))
    if level == 0:
        return img
    key = (id(img), level)
    if key not in _MIPS:
        h, w = img.shape[:2]
        small = cv2.resize(
            img, (max(w >> level, 1), max(h >> level, 1)), interpolation=cv2.INTER_AREA
        )
        _MIPS[key] = small.astype(np.uint8, copy=False)
    return _MIPS[key]


def _clip_rect(poly: FloatArray, x0: float, y0: float, x1: float, y1: float) -> FloatArray:
    """The part of a convex polygon ``(K, 2)`` inside a rectangle (Sutherland–Hodgman)."""
    pts = [p for p in np.asarray(poly, dtype=np.float64)]
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        out = []
        for i in range(len(pts)):
            a, b = pts[i], pts[(i + 1) % len(pts)]
            ina = a[axis] <= bound if keep_below else a[axis] >= bound
            inb = b[axis] <= bound if keep_below else b[axis] >= bound
            if ina:
                out.append(a)
            if ina != inb:
                out.append(a + (bound - a[axis]) / (b[axis] - a[axis]) * (b - a))
        pts = out
        if not pts:
            break
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def _clip_near(poly: FloatArray) -> FloatArray:
    """The part of a convex polygon ``(K, 3)`` in front of the near plane (Sutherland–Hodgman)."""
    out = []
    k = len(poly)
    for i in range(k):
        a, b = poly[i], poly[(i + 1) % k]
        ina, inb = a[2] > NEAR_M, b[2] > NEAR_M
        if ina:
            out.append(a)
        if ina != inb:
            s = (NEAR_M * 1.0001 - a[2]) / (b[2] - a[2])
            out.append(a + s * (b - a))
    return np.array(out).reshape(-1, 3)
