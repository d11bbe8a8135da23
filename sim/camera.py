"""The camera sensor of the embedded world: a pinhole camera on the ego, with exact labels.

``Camera.render(obs)`` draws what the camera sees in an :class:`Observation` (the ego's pose and
the ground truth of actors, signs and lights) and returns a :class:`CameraFrame`. Drawing is
numpy/OpenCV on the CPU (docs/camera.md):

1. **ground**: the map's top-down raster (:mod:`sim.render.ground`) seen through the ground
   plane's homography, one ``warpPerspective`` per band of rows, far bands from coarser pyramid
   levels; the ground's depth and the sky above the horizon are fixed per camera (flat ground);
2. **objects** (:mod:`sim.render.scene`): painter's order on a face-index buffer, then colour,
   semantic, instance and exact planar depth looked up per pixel; boxes from the same outlines;
3. **weather**: fog by depth, then optional blur and sensor noise.

A scenario's ``sensors`` list makes the world render its cameras into ``Observation.sensors``
(``Camera.sense``: every tick, or every ``sensor_tick`` seconds with the last frame held
between); without one nothing is rendered and nothing is paid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from sim.errors import DrivestackError
from sim.map import RoadMap
from sim.messages import CameraFrame, FloatArray, Observation, SemanticClass
from sim.render.ground import TERRAIN_RGB, MapRaster, map_raster
from sim.render.lighting import Lighting
from sim.render.pinhole import camera_pose, ground_hits, intrinsics
from sim.render.scene import FAR_DEPTH_M, Buffers, Props, Scene, View
from sim.scenario import CameraSpec, Scenario, WeatherSpec

LEVEL_BIAS = 0.3  # pyramid level = floor(log2(ground footprint of a pixel / texel) + bias)


class CameraError(DrivestackError):
    """A camera that cannot be built (bad settings)."""


def camera_spec(**fields: object) -> CameraSpec:
    """A validated :class:`CameraSpec` from keyword fields; a bad one raises one clear line."""
    try:
        return CameraSpec.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "camera"
        got = err.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise CameraError(f"camera field '{loc}': {msg}{shown}") from exc


@dataclass(frozen=True)
class _Band:
    """Image rows ``[v0, v1)`` whose ground is read from pyramid ``level``."""

    v0: int
    v1: int
    level: int


class Camera:
    """One camera on the ego. Build once per episode (map and weather); ``render`` per tick.

    :param spec: resolution, field of view, pose on the ego, noise and blur
    :param road_map: the map whose ground is drawn
    :param weather: lighting, sky and fog
    :param rng: draws the sensor noise (used only when ``spec.noise_std > 0``)
    """

    def __init__(
        self,
        spec: CameraSpec,
        road_map: RoadMap,
        weather: WeatherSpec,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        w, h = spec.width, spec.height
        self.size = (w, h)
        self.K = intrinsics(w, h, spec.fov_deg)
        self.pose = camera_pose(spec.x, spec.y, spec.z, spec.roll_deg, spec.pitch_deg, spec.yaw_deg)
        self.light = Lighting.from_weather(weather)
        self.fog = self.light.extinction if weather.fog_density > 0 else 0.0
        self.rng = rng if rng is not None else np.random.default_rng(0)
        _, _, depth = ground_hits(self.K, self.pose, w, h)
        ground = depth < FAR_DEPTH_M
        if not ground.any():
            raise CameraError(
                f"camera '{spec.name}' looks at nothing: no pixel sees the ground within "
                f"{FAR_DEPTH_M:.0f} m; pitch it down (positive pitch_deg looks down)"
            )
        self.raster: MapRaster = map_raster(road_map)
        n_levels = len(self.raster.levels)
        self._map_from_texel = [
            np.linalg.inv(self.raster.texel_from_map(k)) for k in range(n_levels)
        ]
        self._depth0 = np.where(ground, depth, FAR_DEPTH_M).astype(np.float32)
        self._sky_mask = (~ground).astype(np.uint8)
        self._ground_mask = ground
        self._sky_rgb = self._sky_image()
        self._semantic0 = np.where(ground, 0, int(SemanticClass.SKY)).astype(np.uint8)
        self._first_ground_row = int(np.argmax(ground.any(axis=1)))
        self._bands = self._make_bands(ground)
        self._lut = self.light.lut()
        self._buffers = Buffers.make(w, h)
        self._props = Props()
        self._last: CameraFrame | None = None  # the frame ``sense`` took last

    @classmethod
    def for_scenario(cls, scenario: Scenario, road_map: RoadMap, seed: int) -> list[Camera]:
        """The cameras of a scenario's ``sensors``, with noise drawn from the episode's seed."""
        rngs = [
            np.random.default_rng(s)
            for s in np.random.SeedSequence([seed, 7]).spawn(len(scenario.sensors))
        ]
        return [
            cls(spec, road_map, scenario.weather, rng)
            for spec, rng in zip(scenario.sensors, rngs, strict=True)
        ]

    # ------------------------------------------------------------------------------ set-up
    def _sky_image(self) -> NDArray[np.uint8]:
        """Sky colour of every pixel: it depends only on the ray's elevation."""
        w, h = self.size
        u = (np.arange(w) - self.K[0, 2]) / self.K[0, 0]
        v = (np.arange(h) - self.K[1, 2]) / self.K[1, 1]
        rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), -1)
        d = rays @ self.pose[:3, :3].T  # ego frame (level with the ground)
        elev = np.arctan2(d[..., 2], np.hypot(d[..., 0], d[..., 1]))
        return np.clip(np.round(self.light.sky(elev)), 0, 255).astype(np.uint8)

    def _make_bands(self, ground: NDArray[np.bool_]) -> list[_Band]:
        """Rows grouped by the pyramid level whose texels match their ground footprint."""
        w, h = self.size
        gx, gy, depth = ground_hits(self.K, self.pose, w, h)
        u = min(w // 2, w - 2)
        top = len(self.raster.levels) - 1
        levels = []
        for v in range(h):
            if not ground[v].any():
                levels.append(-1)
            elif v + 1 >= h or not np.isfinite(depth[v : v + 2, u : u + 2]).all():
                levels.append(top if v + 1 < h else (levels[-1] if levels else 0))
            else:
                along = math.hypot(gx[v + 1, u] - gx[v, u], gy[v + 1, u] - gy[v, u])
                across = math.hypot(gx[v, u + 1] - gx[v, u], gy[v, u + 1] - gy[v, u])
                foot = math.sqrt(max(along * across, 1e-12))
                k = math.floor(math.log2(max(foot / self.raster.res, 1e-9)) + LEVEL_BIAS)
                levels.append(min(max(k, 0), top))
        bands: list[_Band] = []
        for v, k in enumerate(levels):
            if k < 0:
                continue
            if bands and bands[-1].level == k and bands[-1].v1 == v:
                bands[-1] = _Band(bands[-1].v0, v + 1, k)
            else:
                bands.append(_Band(v, v + 1, k))
        return bands

    # ------------------------------------------------------------------------------ render
    def sense(self, obs: Observation) -> CameraFrame:
        """The camera's frame at ``obs``: rendered when its ``sensor_tick`` has passed since the
        last (every tick at 0), else the last one again, whose ``t`` and ``frame`` say when it
        was taken."""
        if self._last is None or self.spec.captures(obs.t, self._last.t):
            self._last = self.render(obs)
        return self._last

    def render(self, obs: Observation) -> CameraFrame:
        """The frame this camera sees in ``obs``'s state (images and boxes)."""
        ego = obs.ego
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        map_from_ego = np.array(
            [[c, -s, 0.0, ego.x], [s, c, 0.0, ego.y], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
        )
        map_from_cam = map_from_ego @ self.pose
        R, t = map_from_cam[:3, :3], map_from_cam[:3, 3]
        rgb, semantic = self._ground(R, t)
        depth = self._depth0.copy()
        instance = np.zeros(semantic.shape, dtype=np.int32)
        self._props.update(obs.ground_truth)
        w, h = self.size
        view = View(self.K, w, h, R, t, self.light, self.fog)
        boxes = Scene(view, obs.ground_truth, self._props).draw(
            self._buffers, rgb, depth, semantic, instance
        )
        if self.fog > 0.0:
            self._apply_fog(rgb, depth)
        if self.spec.blur_px > 0.0:
            rgb = cv2.GaussianBlur(rgb, (0, 0), self.spec.blur_px).astype(np.uint8, copy=False)
        if self.spec.noise_std > 0.0:
            noise = self.rng.normal(0.0, self.spec.noise_std, rgb.shape).astype(np.float32)
            rgb = np.clip(rgb + noise, 0, 255).astype(np.uint8)
        return CameraFrame(
            t=obs.t,
            frame=obs.frame,
            rgb=rgb,
            K=self.K,
            pose=self.pose,
            depth=depth,
            semantic=semantic,
            instance=instance,
            boxes=boxes.xyxy,
            box_class=boxes.cls,
            box_id=boxes.id,
            box_truncation=boxes.truncation,
            box_occlusion=boxes.occlusion,
            box_visible_px=boxes.visible_px,
            box_value=boxes.value,
            box_state=boxes.state,
        )

    def _ground(self, R: FloatArray, t: FloatArray) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """RGB and semantic ids of the ground and the sky."""
        w, h = self.size
        img_from_map = self.K @ np.column_stack([R.T[:, 0], R.T[:, 1], -R.T @ t])  # z = 0 plane
        rgb = np.empty((h, w, 3), dtype=np.uint8)
        levels = self.raster.levels
        for b in self._bands:
            shift = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -b.v0], [0.0, 0.0, 1.0]])
            cv2.warpPerspective(
                levels[b.level],
                shift @ img_from_map @ self._map_from_texel[b.level],
                (w, b.v1 - b.v0),
                dst=rgb[b.v0 : b.v1],
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=TERRAIN_RGB,
            )
        v0 = self._first_ground_row
        cv2.LUT(rgb[v0:], self._lut, dst=rgb[v0:])  # sunlight on the ground
        cv2.copyTo(self._sky_rgb, self._sky_mask, rgb)
        semantic = self._semantic0.copy()
        shift = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -v0], [0.0, 0.0, 1.0]])
        ground_sem = cv2.warpPerspective(
            self.raster.semantic,
            shift @ img_from_map @ self._map_from_texel[0],
            (w, h - v0),
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=int(SemanticClass.TERRAIN),
        )
        np.copyto(semantic[v0:], ground_sem, where=self._ground_mask[v0:])
        return rgb, semantic

    def _apply_fog(self, rgb: NDArray[np.uint8], depth: NDArray[np.float32]) -> None:
        """Blend the ground towards the fog colour by depth (objects were fogged per face)."""
        f = (1.0 - np.exp(-self.fog * self._depth0)) * self._ground_mask
        f[self._buffers.face > 0] = 0.0
        out = rgb + (self.light.fog_rgb.astype(np.float32) - rgb) * f[..., None]
        np.copyto(rgb, np.clip(out, 0, 255).astype(np.uint8))
