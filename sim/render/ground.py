"""The ground: a top-down raster of the map, built once per map, seen by inverse perspective.

The raster holds what lies on the ground plane (terrain, sidewalks, shoulders, asphalt, lane
markings, stop lines) as RGB texels and as :class:`SemanticClass` ids, from CARLA's waypoints
of every lane. A camera sees it through one homography per frame (the ground plane z = 0 to the
image), applied with ``cv2.warpPerspective`` to a pyramid of the raster: rows far from the
camera read a coarser level, so distant markings do not shimmer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import carla
import cv2
import numpy as np
from numpy.typing import NDArray

from sim.map import RoadMap, to_ours, yaw_to_ours
from sim.messages import FloatArray, SemanticClass

log = logging.getLogger(__name__)

MARGIN_M = 60.0  # terrain drawn around the map's lanes
MIN_RES_M = 0.1  # finest texel (m)
MAX_TEXELS = 32_000_000  # coarser texels for larger maps, to bound memory (4 bytes a texel)
LEVELS = 6  # pyramid levels: texel sizes res · 2**k
STEP_M = 0.5  # waypoint spacing when sampling lanes
DASH_M, GAP_M = 3.0, 6.0  # broken lane lines: 3 m line, 6 m gap
STOP_LINE_M = 0.4
KERB_M = 0.2


class Material:
    """What a texel is made of: an index into :data:`PALETTE` and :data:`MATERIAL_SEMANTIC`."""

    TERRAIN = 0
    SIDEWALK = 1
    KERB = 2
    SHOULDER = 3
    ASPHALT = 4
    WHITE = 5
    YELLOW = 6
    MEDIAN = 7


# base colour (RGB) and noise amplitude (8-bit levels) of each material
PALETTE = np.array(
    [
        (86, 118, 58),  # terrain: grass
        (160, 158, 150),  # sidewalk: concrete
        (190, 188, 182),  # kerb
        (96, 94, 90),  # shoulder
        (72, 72, 75),  # asphalt
        (228, 228, 222),  # white paint
        (226, 178, 38),  # yellow paint
        (96, 124, 62),  # median: grass
    ],
    dtype=np.int16,
)
NOISE = np.array([14, 6, 4, 5, 4, 4, 4, 14], dtype=np.int16)
MATERIAL_SEMANTIC = np.array(
    [
        SemanticClass.TERRAIN,
        SemanticClass.SIDEWALK,
        SemanticClass.SIDEWALK,
        SemanticClass.ROAD,
        SemanticClass.ROAD,
        SemanticClass.ROAD_LINE,
        SemanticClass.ROAD_LINE,
        SemanticClass.TERRAIN,
    ],
    dtype=np.uint8,
)
TERRAIN_RGB = tuple(int(c) for c in PALETTE[Material.TERRAIN])

_SIDE_MATERIAL = {
    carla.LaneType.Sidewalk: Material.SIDEWALK,
    carla.LaneType.Shoulder: Material.SHOULDER,
    carla.LaneType.Border: Material.SHOULDER,
    carla.LaneType.Median: Material.MEDIAN,
    carla.LaneType.Parking: Material.ASPHALT,
    carla.LaneType.Biking: Material.ASPHALT,
    carla.LaneType.Stop: Material.ASPHALT,
    carla.LaneType.Restricted: Material.SHOULDER,
}
_DOUBLE = {
    carla.LaneMarkingType.SolidSolid: ("solid", "solid"),
    carla.LaneMarkingType.SolidBroken: ("solid", "broken"),
    carla.LaneMarkingType.BrokenSolid: ("broken", "solid"),
    carla.LaneMarkingType.BrokenBroken: ("broken", "broken"),
}


@dataclass
class MapRaster:
    """The map as a texel pyramid. Texel ``(c, r)`` of level 0 has its centre at map point
    ``(x0 + c·res, y0 + r·res)`` (rows grow northwards).

    :param levels: RGB images ``(H_k, W_k, 3)`` uint8, level k has texels ``res · 2**k``
    :param semantic: ``(H, W)`` uint8 :class:`SemanticClass` ids of level 0
    """

    name: str
    res: float
    x0: float
    y0: float
    levels: list[NDArray[np.uint8]]
    semantic: NDArray[np.uint8]

    def texel_from_map(self, level: int) -> FloatArray:
        """Homography (3, 3) from map (x, y, 1) to texel (c, r, 1) of a level."""
        s = self.res * 2**level
        # level k texel c covers level-0 texels [c·2^k, (c+1)·2^k): its centre is offset
        off = 0.5 * (2**level - 1) * self.res
        return np.array(
            [
                [1.0 / s, 0.0, -(self.x0 + off) / s],
                [0.0, 1.0 / s, -(self.y0 + off) / s],
                [0, 0, 1.0],
            ]
        )


@lru_cache(maxsize=4)
def map_raster(road_map: RoadMap) -> MapRaster:
    """The raster of a map, built on first use and kept for the process (about 2 s and 90 MB
    for the town)."""
    xmin, ymin, xmax, ymax = road_map.bounds
    x0, y0 = xmin - MARGIN_M, ymin - MARGIN_M
    area = (xmax - xmin + 2 * MARGIN_M) * (ymax - ymin + 2 * MARGIN_M)
    res = max(MIN_RES_M, math.sqrt(area / MAX_TEXELS))
    w = math.ceil((xmax - xmin + 2 * MARGIN_M) / res) + 1
    h = math.ceil((ymax - ymin + 2 * MARGIN_M) / res) + 1
    material = np.full((h, w), Material.TERRAIN, dtype=np.uint8)
    _Painter(road_map, material, res, x0, y0).paint()
    rgb = _colourise(material)
    levels = [rgb]
    for _ in range(1, LEVELS):
        prev = levels[-1]
        levels.append(
            cv2.resize(
                prev,
                ((prev.shape[1] + 1) // 2, (prev.shape[0] + 1) // 2),
                interpolation=cv2.INTER_AREA,
            ).astype(np.uint8, copy=False)
        )
    log.info("map raster %s: %d × %d texels of %.2f m", road_map.name, w, h, res)
    return MapRaster(road_map.name, res, x0, y0, levels, MATERIAL_SEMANTIC[material])


def _colourise(material: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """RGB texels: each material's colour with its own grain (a fixed, tiled noise field)."""
    tile = np.random.default_rng(12345).normal(0.0, 1.0, (256, 256)).astype(np.float32)
    tile = cv2.GaussianBlur(tile, (0, 0), 0.7).astype(np.float32, copy=False)
    tile = (tile / tile.std()).clip(-2.5, 2.5)
    h, w = material.shape
    noise = np.tile(tile, (h // 256 + 1, w // 256 + 1))[:h, :w]
    out = np.empty((h, w, 3), dtype=np.uint8)
    amp = NOISE[material].astype(np.float32) * noise  # (H, W)
    for ch in range(3):
        out[..., ch] = np.clip(PALETTE[material, ch] + amp, 0, 255)
    return out


class _Painter:
    """Fills the material raster from the map's lanes (CARLA waypoints every ``STEP_M``)."""

    def __init__(
        self, road_map: RoadMap, material: NDArray[np.uint8], res: float, x0: float, y0: float
    ) -> None:
        self.map = road_map
        self.mat = material
        self.scale = 16.0 / res  # fixed-point texel coordinates (shift = 4)
        self.x0, self.y0 = x0, y0
        self.quads: dict[int, list[NDArray[np.int32]]] = {}  # material -> quads, painted in order

    def paint(self) -> None:
        cmap = self.map.carla_map
        for wp in cmap.generate_waypoints(STEP_M):
            nxt = [
                n for n in wp.next(STEP_M) if n.road_id == wp.road_id and n.lane_id == wp.lane_id
            ]
            b = nxt[0] if nxt else None
            self._lane(wp, b)
        self._stop_lines()
        order = (
            Material.MEDIAN,
            Material.SHOULDER,
            Material.SIDEWALK,
            Material.KERB,
            Material.ASPHALT,
            Material.WHITE,
            Material.YELLOW,
        )
        for m in order:
            for quad in self.quads.get(m, []):
                cv2.fillConvexPoly(self.mat, quad, m, cv2.LINE_8, shift=4)

    def _add(self, m: int, pts: FloatArray) -> None:
        q = np.round((pts - (self.x0, self.y0)) * self.scale).astype(np.int32)
        self.quads.setdefault(m, []).append(q)

    def _strip(
        self,
        m: int,
        a: tuple[FloatArray, FloatArray],
        b: tuple[FloatArray, FloatArray],
        lo: float,
        hi: float,
    ) -> None:
        """A quad between lateral offsets ``lo`` and ``hi`` (m, left positive) of two samples."""
        (pa, na), (pb, nb) = a, b
        self._add(m, np.array([pa + na * lo, pb + nb * lo, pb + nb * hi, pa + na * hi]))

    def _lane(self, wp: carla.Waypoint, nxt: carla.Waypoint | None) -> None:
        a = _frame(wp)
        if nxt is not None:
            b = _frame(nxt)
        else:  # the lane's last sample: extend it by one step along its heading
            b = (a[0] + STEP_M * np.array([a[1][1], -a[1][0]]), a[1])
        half = wp.lane_width / 2.0
        self._strip(Material.ASPHALT, a, b, -half - 0.02, half + 0.02)
        self._sides(wp, a, b, half)
        if not wp.is_junction:
            for mark, side in ((wp.right_lane_marking, -1.0), (wp.left_lane_marking, 1.0)):
                self._marking(mark, side * half, a, b, wp.s)

    def _sides(
        self,
        wp: carla.Waypoint,
        a: tuple[FloatArray, FloatArray],
        b: tuple[FloatArray, FloatArray],
        half: float,
    ) -> None:
        """Non-driving lanes beside a driving lane, out to the edge of the road."""
        for go_right in (True, False):
            lane = wp.get_right_lane() if go_right else wp.get_left_lane()
            offset = half
            sign = -1.0 if go_right else 1.0
            for _ in range(6):
                if (
                    lane is None
                    or lane.road_id != wp.road_id
                    or lane.lane_type == carla.LaneType.Driving
                ):
                    break
                if lane.lane_id * wp.lane_id <= 0:  # crossed the centre line
                    break
                m = _SIDE_MATERIAL.get(lane.lane_type, Material.SHOULDER)
                width = lane.lane_width
                lo, hi = sorted((sign * offset, sign * (offset + width)))
                self._strip(m, a, b, lo, hi)
                if m == Material.SIDEWALK:  # the kerb on the road's side of the sidewalk
                    k0, k1 = sorted((sign * offset, sign * (offset + KERB_M)))
                    self._strip(Material.KERB, a, b, k0, k1)
                offset += width
                lane = lane.get_right_lane() if go_right else lane.get_left_lane()

    def _marking(
        self,
        mark: carla.LaneMarking,
        offset: float,
        a: tuple[FloatArray, FloatArray],
        b: tuple[FloatArray, FloatArray],
        s: float,
    ) -> None:
        kind = mark.type
        if kind in (
            carla.LaneMarkingType.NONE,
            carla.LaneMarkingType.Grass,
            carla.LaneMarkingType.Curb,
            carla.LaneMarkingType.Other,
        ):
            return
        m = Material.YELLOW if mark.color == carla.LaneMarkingColor.Yellow else Material.WHITE
        w = mark.width if mark.width > 0.01 else 0.12
        if kind in _DOUBLE:
            lines = [(p, -w) for p in _DOUBLE[kind][:1]] + [(p, w) for p in _DOUBLE[kind][1:]]
        elif kind == carla.LaneMarkingType.Broken or kind == carla.LaneMarkingType.BottsDots:
            lines = [("broken", 0.0)]
        else:
            lines = [("solid", 0.0)]
        on = (s % (DASH_M + GAP_M)) < DASH_M
        for pattern, shift in lines:
            if pattern == "broken" and not on:
                continue
            c = offset + shift
            self._strip(m, a, b, c - w / 2.0, c + w / 2.0)

    def _stop_lines(self) -> None:
        for ap in self.map.approaches.values():
            if ap.control not in ("stop", "light", "yield"):
                continue
            seg = self.map.segments[ap.segment]
            half = seg.width_m / 2.0 - 0.1
            fwd = np.array([math.cos(ap.stop_yaw), math.sin(ap.stop_yaw)])
            left = np.array([-fwd[1], fwd[0]])
            stop = np.array([ap.stop_x, ap.stop_y])
            if ap.control == "yield":  # a row of triangles pointing at the driver
                n = int(seg.width_m / 0.75)
                for k in range(n):
                    c = stop - fwd * 0.6 + left * (-half + (k + 0.5) * (2 * half / n))
                    tri = np.array(
                        [c - fwd * 0.3 + left * 0.22, c - fwd * 0.3 - left * 0.22, c + fwd * 0.3]
                    )
                    self._add(Material.WHITE, tri)
                continue
            back = stop - fwd * STOP_LINE_M
            self._add(
                Material.WHITE,
                np.array(
                    [stop + left * half, stop - left * half, back - left * half, back + left * half]
                ),
            )


def _frame(wp: carla.Waypoint) -> tuple[FloatArray, FloatArray]:
    """A waypoint's position and left normal in our map frame."""
    x, y, _ = to_ours(wp.transform.location)
    yaw = yaw_to_ours(wp.transform.rotation.yaw)
    return np.array([x, y]), np.array([-math.sin(yaw), math.cos(yaw)])
