"""Sensors on the CARLA ego: cameras (RGB, depth, semantic, instance) and the collision and
lane-invasion detectors, all read through queues their callbacks fill.

CARLA runs sensor callbacks on the client's worker threads, not on ours, so every callback only
puts its data on a ``queue.SimpleQueue``; the world reads the queues after each ``tick``. A
camera's image for a tick carries that tick's frame number: :meth:`CameraRig.collect` waits for
it (up to a timeout) and drops stale ones. Collision and lane-invasion events come only when they
happen, so they are drained without waiting.

Capture rate. The server's sensors send an image every tick (CARLA's ``sensor_tick`` stays 0:
which ticks a server would pick for a longer one is its own to choose, and a synchronous client
must know which ticks bring an image). A spec's ``sensor_tick`` is kept on this side, by the
embedded camera's rule: :meth:`CameraRig.frame` converts a tick's images into a frame only when
it is due and otherwise hands the last frame on again.

Camera pose. A scenario's :class:`~sim.scenario.CameraSpec` places a camera in the ego frame
(origin at the rear axle on the ground, x forward, y left, z up; docs/camera.md), exactly as the
embedded camera does, so ``K`` and ``CameraFrame.pose`` come from the same functions
(:mod:`sim.render.pinhole`). The CARLA mount is that pose moved into the vehicle actor's frame.

2D boxes. For each vehicle, walker, traffic light and sign near the camera, the 8 corners of its
bounding box are projected with ``K``; the box is kept when the instance image shows at least
``min_pixels`` of that actor inside it, and is then tightened to those pixels (so an occluded
actor has the box of what is visible). Occlusion is estimated against the projected 3D box's
hull (CARLA gives no unoccluded silhouette).
"""

from __future__ import annotations

import logging
import math
import queue
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import carla
import cv2
import numpy as np
from numpy.typing import NDArray

from sim.carla_backend import convert
from sim.messages import CameraFrame, DetectionClass, Event, FloatArray, SemanticClass
from sim.render import pinhole
from sim.scenario import CameraSpec

log = logging.getLogger(__name__)

OUTPUTS = ("rgb", "depth", "semantic", "instance")
BLUEPRINTS = {
    "rgb": "sensor.camera.rgb",
    "depth": "sensor.camera.depth",
    "semantic": "sensor.camera.semantic_segmentation",
    "instance": "sensor.camera.instance_segmentation",
}
NEAR_M = 0.1  # box corners nearer than this to the image plane are dropped
BOX_RANGE_M = 120.0  # targets farther than this from the camera get no box

# CityObjectLabel tags of each class (0.9.16 numbering), for the fallback visibility test when
# the instance image does not carry an actor's id (CARLA uses engine ids for some props)
CLASS_TAGS: dict[int, frozenset[int]] = {
    DetectionClass.VEHICLE: frozenset({int(SemanticClass.CAR), int(SemanticClass.TRUCK), 16, 18}),
    DetectionClass.PEDESTRIAN: frozenset({int(SemanticClass.PEDESTRIAN)}),
    DetectionClass.TRAFFIC_LIGHT: frozenset({int(SemanticClass.TRAFFIC_LIGHT)}),
    DetectionClass.SPEED_LIMIT_SIGN: frozenset({int(SemanticClass.TRAFFIC_SIGN)}),
    DetectionClass.STOP_SIGN: frozenset({int(SemanticClass.TRAFFIC_SIGN)}),
    DetectionClass.YIELD_SIGN: frozenset({int(SemanticClass.TRAFFIC_SIGN)}),
}


@dataclass(frozen=True)
class BoxTarget:
    """Something that may get a 2D box.

    :param id: the id reported in ``box_id`` (the actor id; the OpenDRIVE id for lights/signs)
    :param actor_id: the CARLA actor id, looked for in the instance image
    :param cls: a :class:`~sim.messages.DetectionClass` value
    :param corners: the 8 corners of its box in CARLA's world frame ``(8, 3)``
    :param value: a sign's speed limit (km/h), else 0
    :param state: a light's :class:`~sim.messages.LightState`, else -1
    """

    id: int
    actor_id: int
    cls: int
    corners: FloatArray
    value: float = 0.0
    state: int = -1


@dataclass(frozen=True)
class Boxes:
    """Parallel box arrays, as :class:`~sim.messages.CameraFrame` holds them."""

    xyxy: FloatArray  # (B, 4)
    cls: NDArray[np.int64]
    id: NDArray[np.int64]
    truncation: FloatArray
    occlusion: FloatArray
    visible_px: NDArray[np.int64]
    value: FloatArray
    state: NDArray[np.int64]


def corners_of(bbox: Any, transform: Any) -> FloatArray:
    """The 8 world corners ``(8, 3)`` (CARLA frame) of an actor's bounding box."""
    return np.array([[v.x, v.y, v.z] for v in bbox.get_world_vertices(transform)])


def mount_transform(spec: CameraSpec, rear_axle_x_m: float, ground_z_m: float) -> carla.Transform:
    """Where a camera sits on the vehicle actor (CARLA's attachment transform).

    :param rear_axle_x_m: the actor-frame x of the rear axle (m), the ego frame's origin
    :param ground_z_m: the actor-frame z of the ground under the car (m)
    """
    mount = np.eye(4)
    mount[:3, :3] = pinhole.body_rotation(spec.roll_deg, spec.pitch_deg, spec.yaw_deg)
    mount[:3, 3] = (spec.x + rear_axle_x_m, spec.y, spec.z + ground_z_m)
    return convert.transform_from_ours(mount)


def _hull_area_in_image(u: FloatArray, v: FloatArray, width: int, height: int) -> float:
    """Area (px²) of the convex hull of points, clipped to the image rectangle."""
    pts = np.stack([u, v], -1).astype(np.float32).reshape(-1, 1, 2)
    hull = cv2.convexHull(pts).reshape(-1, 2).astype(np.float32)
    rect = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    area, _ = cv2.intersectConvexConvex(hull, rect)
    return float(area)


def project_boxes(
    targets: Sequence[BoxTarget],
    camera_world: FloatArray,
    K: FloatArray,
    width: int,
    height: int,
    instance: NDArray[np.int32] | None = None,
    semantic: NDArray[np.uint8] | None = None,
    min_pixels: int = 12,
) -> Boxes:
    """The visible targets' boxes (x0, y0, x1, y1 px, clipped to the image) and their labels.

    :param camera_world: the camera's ``(4, 4)`` world transform in CARLA's frame (the image's
        ``transform``; the camera looks along its x axis, y right, z up)
    :param instance: actor ids per pixel ``(H, W)``; a box is kept when at least ``min_pixels``
        of its actor show inside it, tightened to them
    :param semantic: tags per pixel ``(H, W)``; where the instance image shows none of an actor,
        enough pixels of its class keep the projected box
    """
    rows: list[tuple[tuple[float, float, float, float], BoxTarget, float, float, int]] = []
    world_to_cam = np.linalg.inv(camera_world)
    for tg in targets:
        p = world_to_cam[:3, :3] @ tg.corners.T + world_to_cam[:3, 3:4]  # (3, 8) x fwd, y right
        x_o, y_o, z_o = p[1], -p[2], p[0]  # optical frame
        front = z_o > NEAR_M
        if not front.any() or float(np.min(z_o[front])) > BOX_RANGE_M:
            continue
        u = K[0, 0] * x_o[front] / z_o[front] + K[0, 2]
        v = K[1, 1] * y_o[front] / z_o[front] + K[1, 2]
        full = (float(u.max()) - float(u.min())) * (float(v.max()) - float(v.min()))
        x0, x1 = max(float(u.min()), 0.0), min(float(u.max()), float(width))
        y0, y1 = max(float(v.min()), 0.0), min(float(v.max()), float(height))
        if x1 - x0 < 1.0 or y1 - y0 < 1.0:
            continue
        truncation = 1.0 - (x1 - x0) * (y1 - y0) / max(full, 1e-9)
        if not front.all():
            truncation = max(truncation, 1.0 - float(front.mean()))
        hull_px = _hull_area_in_image(u, v, width, height)
        box = (x0, y0, x1, y1)
        c0, r0, c1, r1 = int(x0), int(y0), math.ceil(x1), math.ceil(y1)
        visible = round((x1 - x0) * (y1 - y0))
        if instance is not None:
            mask = instance[r0:r1, c0:c1] == (tg.actor_id & 0xFFFF)
            visible = int(mask.sum())
            if visible >= min_pixels:
                rs = np.flatnonzero(mask.any(axis=1))
                cs = np.flatnonzero(mask.any(axis=0))
                box = (
                    float(c0 + cs[0]),
                    float(r0 + rs[0]),
                    float(c0 + cs[-1] + 1),
                    float(r0 + rs[-1] + 1),
                )
            elif semantic is not None:
                tags = np.array(sorted(CLASS_TAGS.get(tg.cls, ())), dtype=np.uint8)
                visible = int(np.isin(semantic[r0:r1, c0:c1], tags).sum())
                if visible < min_pixels:
                    continue
            else:
                continue
        occlusion = min(max(1.0 - visible / max(hull_px, 1.0), 0.0), 1.0)
        rows.append((box, tg, truncation, occlusion, visible))
    n = len(rows)
    return Boxes(
        xyxy=np.array([r[0] for r in rows], dtype=np.float64).reshape(n, 4),
        cls=np.array([r[1].cls for r in rows], dtype=np.int64),
        id=np.array([r[1].id for r in rows], dtype=np.int64),
        truncation=np.array([r[2] for r in rows], dtype=np.float64),
        occlusion=np.array([r[3] for r in rows], dtype=np.float64),
        visible_px=np.array([r[4] for r in rows], dtype=np.int64),
        value=np.array([r[1].value for r in rows], dtype=np.float64),
        state=np.array([r[1].state for r in rows], dtype=np.int64),
    )


def degrade(
    rgb: NDArray[np.uint8], noise_std: float, blur_px: float, rng: np.random.Generator
) -> NDArray[np.uint8]:
    """The scenario's lens blur (Gaussian, sigma px) then pixel noise (8-bit levels)."""
    out = rgb
    if blur_px > 0:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), blur_px), dtype=np.uint8)
    if noise_std > 0:
        noisy = out.astype(np.float32) + rng.normal(0.0, noise_std, out.shape).astype(np.float32)
        out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


class CameraRig:
    """The four CARLA camera sensors (RGB, depth, semantic, instance) of one camera spec."""

    def __init__(
        self,
        world: Any,
        ego: Any,
        spec: CameraSpec,
        rear_axle_x_m: float,
        ground_z_m: float,
        min_box_pixels: int = 12,
    ) -> None:
        """Spawn one sensor per output on ``ego`` and start listening (the sensors are in
        :attr:`sensors` as soon as they exist, so a failure part-way still cleans up)."""
        self.spec = spec
        self.K = pinhole.intrinsics(spec.width, spec.height, spec.fov_deg)
        self.pose = pinhole.camera_pose(
            spec.x, spec.y, spec.z, spec.roll_deg, spec.pitch_deg, spec.yaw_deg
        )
        self.min_box_pixels = min_box_pixels
        self.sensors: list[Any] = []
        self._queues: dict[str, queue.SimpleQueue[Any]] = {}
        self._mount = mount_transform(spec, rear_axle_x_m, ground_z_m)
        self._world = world
        self._ego = ego
        self._last: CameraFrame | None = None  # the frame ``frame`` made last

    def spawn(self) -> None:
        library = self._world.get_blueprint_library()
        spec = self.spec
        for out in OUTPUTS:
            bp = library.find(BLUEPRINTS[out])
            bp.set_attribute("image_size_x", str(spec.width))
            bp.set_attribute("image_size_y", str(spec.height))
            bp.set_attribute("fov", f"{spec.fov_deg:g}")
            bp.set_attribute("sensor_tick", "0.0")
            if bp.has_attribute("role_name"):
                bp.set_attribute("role_name", f"drivestack_{spec.name}_{out}")
            sensor = self._world.spawn_actor(bp, self._mount, attach_to=self._ego)
            self.sensors.append(sensor)
            q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            self._queues[out] = q
            sensor.listen(q.put)

    def collect(self, server_frame: int, timeout_s: float) -> dict[str, Any]:
        """Each output's image of ``server_frame``; older images are dropped.

        :raises TimeoutError: an image did not arrive within ``timeout_s``
        """
        images: dict[str, Any] = {}
        for out, q in self._queues.items():
            while True:
                try:
                    image = q.get(timeout=timeout_s)
                except queue.Empty:
                    raise TimeoutError(
                        f"camera {self.spec.name!r} sent no {out} image for frame {server_frame} "
                        f"within {timeout_s:g} s"
                    ) from None
                if image.frame >= server_frame:
                    images[out] = image
                    break
        return images

    def frame(
        self,
        t: float,
        step: int,
        images: dict[str, Any],
        targets: Sequence[BoxTarget],
        rng: np.random.Generator,
    ) -> CameraFrame:
        """A :class:`CameraFrame` from one tick's images (conversion happens here) when the
        spec's ``sensor_tick`` has passed since the last (every tick at 0); else the last frame
        again, and this tick's images are dropped."""
        if self._last is not None and not self.spec.captures(t, self._last.t):
            return self._last
        spec = self.spec
        rgb_img = images["rgb"]
        rgb = degrade(convert.rgb_of(convert.bgra(rgb_img)), spec.noise_std, spec.blur_px, rng)
        depth = convert.depth_of(convert.bgra(images["depth"]))
        semantic = convert.semantic_of(convert.bgra(images["semantic"]))
        instance = convert.instance_of(convert.bgra(images["instance"]))
        camera_world = np.eye(4)
        camera_world[:3, :3] = convert.rotation_matrix_carla(rgb_img.transform.rotation)
        loc = rgb_img.transform.location
        camera_world[:3, 3] = (loc.x, loc.y, loc.z)
        b = project_boxes(
            targets,
            camera_world,
            self.K,
            spec.width,
            spec.height,
            instance,
            semantic,
            self.min_box_pixels,
        )
        self._last = CameraFrame(
            t=t,
            frame=step,
            rgb=rgb,
            K=self.K,
            pose=self.pose,
            depth=depth,
            semantic=semantic,
            instance=instance,
            boxes=b.xyxy,
            box_class=b.cls,
            box_id=b.id,
            box_truncation=b.truncation,
            box_occlusion=b.occlusion,
            box_visible_px=b.visible_px,
            box_value=b.value,
            box_state=b.state,
        )
        return self._last


class EventSensors:
    """CARLA's collision and lane-invasion sensors on the ego."""

    def __init__(self, world: Any, ego: Any) -> None:
        self._world = world
        self._ego = ego
        self._collisions: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._invasions: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.sensors: list[Any] = []

    def spawn(self) -> None:
        library = self._world.get_blueprint_library()
        for bp_id, q in (
            ("sensor.other.collision", self._collisions),
            ("sensor.other.lane_invasion", self._invasions),
        ):
            sensor = self._world.spawn_actor(
                library.find(bp_id), carla.Transform(), attach_to=self._ego
            )
            self.sensors.append(sensor)
            sensor.listen(q.put)

    def collisions(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Ids and kinds (:func:`convert.actor_kind`) of what the ego hit since the last call."""
        ids: list[int] = []
        kinds: list[int] = []
        while True:
            try:
                ev = self._collisions.get_nowait()
            except queue.Empty:
                break
            other = ev.other_actor
            ids.append(int(other.id) if other is not None else 0)
            kinds.append(convert.actor_kind(str(other.type_id)) if other is not None else 0)
        return np.array(ids, dtype=np.int64), np.array(kinds, dtype=np.int64)

    def lane_invasions(self, t: float, frame: int, x: float, y: float) -> list[Event]:
        """``lane_invasion`` events (informational, not scored) since the last call."""
        out: list[Event] = []
        while True:
            try:
                ev = self._invasions.get_nowait()
            except queue.Empty:
                break
            marks = sorted({str(m.type) for m in ev.crossed_lane_markings})
            out.append(
                Event(
                    "lane_invasion",
                    t,
                    frame,
                    x,
                    y,
                    detail=f"crossed {', '.join(marks) or 'a lane marking'}",
                    value=float(len(ev.crossed_lane_markings)),
                )
            )
        return out
