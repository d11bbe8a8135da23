"""Channels derived from the recorded stage messages: poses, events, metrics, 3D scenes.

``/tf/ego``, ``/events``, ``/metrics``, ``/scene/ground_truth`` and ``/scene/stack`` are pure
functions of ``/world/static``, ``/observation``, ``/perception`` and ``/plan`` as written, so
they are computed from the written JSON by a :class:`DerivingSink` wherever the messages go:
in the writer process (off the loop's core), in this process, or in a closed-loop comparison,
always giving the same bytes.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from sim.metrics import PENALTY_COEFFICIENTS
from sim.recording import foxglove
from sim.recording.codec import decode_ego, decode_route, decode_route_ahead, num, unpack
from sim.recording.writer import (
    RAW_DEPTH,
    RAW_IMAGE,
    RecorderSettings,
    from_raw_depth,
    from_raw_image,
)
from sim.route import Route

log = logging.getLogger(__name__)
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _dumps(d: Any) -> bytes:
    return _ENCODER.encode(d).encode()


class Deriver:
    """Turns each primary message into the derived messages it implies (stateful: metrics
    count events, scenes cache what never changes)."""

    def __init__(self, scene_radius_m: float = 60.0) -> None:
        self._scene = foxglove.GroundTruthScene(scene_radius_m)
        self._lights = np.zeros((0, 5))
        self._counts: dict[str, int] = {}
        self._counts_json = "{}"
        self._penalty = 1.0
        self._perception: dict[str, Any] | None = None
        self._plan: dict[str, Any] | None = None
        self._route: Route | None = None

    def derive(self, topic: str, ns: int, data: bytes) -> list[tuple[str, str, int, bytes]]:
        if topic == "/observation":
            return self._observation(ns, json.loads(data))
        if topic == "/perception":
            self._perception = json.loads(data)
        elif topic == "/plan":
            self._plan = json.loads(data)
        elif topic == "/control":
            return self._stack(ns)
        elif topic == "/world/static":
            static = json.loads(data)
            self._route = decode_route(static["route"]) if "route" in static else None
            lights = static["lights"]
            self._lights = np.array(
                [[g["id"], g["x"], g["y"], g["z"], g["yaw"]] for g in lights], dtype=np.float64
            ).reshape(-1, 5)
        return []

    def _observation(self, ns: int, d: dict[str, Any]) -> list[tuple[str, str, int, bytes]]:
        t, e = d["t"], d["ego"]
        out = [
            (
                "/tf/ego",
                "foxglove.FrameTransform",
                ns,
                foxglove.ego_transform(t, e["x"], e["y"], e["yaw"]).encode(),
            )
        ]
        events = d["events"]
        text = _ENCODER.encode({"t": t, "frame": d["frame"], "events": events})
        out.append(("/events", "drivestack.Events", ns, text.encode()))
        out.append(("/metrics", "drivestack.Metrics", ns, self._metrics(d).encode()))
        af = unpack(d["actors"]["floats"]).reshape(-1, 7)
        ai = unpack(d["actors"]["ints"]).reshape(-1, 2)
        actors = {
            "x": af[:, 0],
            "y": af[:, 1],
            "yaw": af[:, 2],
            "length": af[:, 4],
            "width": af[:, 5],
            "height": af[:, 6],
            "id": ai[:, 0],
            "kind": ai[:, 1],
        }
        lights, states = self._lights, d["lights"].get("state")
        if states is None:  # the light set changed: the message carries it whole
            full = d["lights"]["full"]
            lights = np.array(
                [[g["id"], g["x"], g["y"], g["z"], g["yaw"]] for g in full], dtype=np.float64
            ).reshape(-1, 5)
            states = [g["state"] for g in full]
        scene = self._scene(t, (e["x"], e["y"]), actors, lights, states)
        out.append(("/scene/ground_truth", "foxglove.SceneUpdate", ns, scene.encode()))
        return out

    def _metrics(self, d: dict[str, Any]) -> str:
        """What the report plots, from the observation alone (no simulator internals)."""
        for ev in d["events"]:
            kind = ev["type"]
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self._penalty *= PENALTY_COEFFICIENTS.get(kind, 1.0)
            self._counts_json = _ENCODER.encode(self._counts)
        r, e = d["route"], d["ego"]
        ahead = decode_route_ahead(r, self._route, decode_ego(e))
        if len(ahead.yaw):
            # route point 0 is the ego's projection on the centreline, in the ego frame
            limit = num(ahead.speed_limit_mps[0])
            cross_track, heading_err = num(-ahead.xy[0, 1]), num(-ahead.yaw[0])
        else:
            limit, cross_track, heading_err = "null", "0.0", "0.0"
        s0, total = r["s0_m"], r["s0_m"] + r["remaining_m"]
        pct = 100.0 * s0 / total if total > 0 else 0.0
        return (
            f'{{"t":{num(d["t"])},"frame":{d["frame"]},"speed_mps":{num(e["speed"])},'
            f'"speed_limit_mps":{limit},"cross_track_m":{cross_track},'
            f'"heading_error_rad":{heading_err},"accel_mps2":{num(e["accel"])},'
            f'"steer_rad":{num(e["steer"])},"route_progress_m":{num(s0)},'
            f'"route_progress_pct":{num(pct)},"event_counts":{self._counts_json},'
            f'"infraction_penalty":{num(self._penalty)}}}'
        )

    def _stack(self, ns: int) -> list[tuple[str, str, int, bytes]]:
        p, plan = self._perception, self._plan
        self._perception = self._plan = None
        if p is None:
            return []
        o = p["objects"]
        floats = unpack(o["floats"]).reshape(-1, 7)  # x, y, yaw, speed, length, width, score
        kinds = unpack(o["ints"]).reshape(-1, 2)[:, 1].tolist()
        objects = floats[:, [0, 1, 2, 4, 5]]
        if plan is not None:
            path = unpack(plan["path"]).reshape(-1, 2)
            ox, oy, oyaw = plan["origin"]
            scene = foxglove.stack_scene(p["t"], objects, kinds, plan["t"], path, (ox, oy, oyaw))
        else:
            scene = foxglove.stack_scene(p["t"], objects, kinds, None, None, None)
        return [("/scene/stack", "foxglove.SceneUpdate", ns, scene.encode())]


class ImageEncoder:
    """Raw camera pixels to PNG or JPEG bytes with OpenCV; without OpenCV, images are skipped
    with one warning."""

    def __init__(self, image_format: str, jpeg_quality: int, png_compression: int) -> None:
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format {image_format!r}: allowed png, jpeg")
        self.format = image_format
        self.jpeg_quality = jpeg_quality
        self.png_compression = png_compression
        self._cv2: Any = None
        self._ok = True

    def __call__(self, rgb: np.ndarray) -> bytes | None:
        if not self._ok:
            return None
        if self._cv2 is None:
            try:
                import cv2
            except ImportError:
                log.warning("OpenCV (cv2) is not installed: camera images are not recorded")
                self._ok = False
                return None
            self._cv2 = cv2
        cv2 = self._cv2
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        if self.format == "png":
            params = [
                cv2.IMWRITE_PNG_COMPRESSION,
                self.png_compression,
                cv2.IMWRITE_PNG_FILTER,  # one filter, not libpng's per-row search: 2x faster
                cv2.IMWRITE_PNG_FILTER_SUB,
            ]
            ok, buf = cv2.imencode(".png", bgr, params)
        else:
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            log.warning("could not encode a camera image; it is not recorded")
            return None
        return bytes(buf.tobytes())


class DerivingSink:
    """A sink that passes every message on, adds the messages derived from it, compresses raw
    camera images (``RecorderSettings`` says how) and writes raw depth images as they are."""

    def __init__(self, inner: Any, settings: RecorderSettings | None = None) -> None:
        settings = settings or RecorderSettings()
        self.inner = inner
        self.deriver = Deriver(settings.scene_radius_m)
        self.images = ImageEncoder(
            settings.image_format, settings.jpeg_quality, settings.png_compression
        )

    def write(self, topic: str, schema: str, log_time_ns: int, data: bytes) -> None:
        if schema == RAW_IMAGE:
            t, rgb = from_raw_image(data)
            encoded = self.images(rgb)
            if encoded is not None:
                name = topic.split("/")[2]
                msg = foxglove.compressed_image(t, name, encoded, self.images.format)
                self.inner.write(topic, "foxglove.CompressedImage", log_time_ns, _dumps(msg))
            return
        if schema == RAW_DEPTH:
            t, depth = from_raw_depth(data)
            msg = foxglove.depth_image(t, topic.split("/")[2], depth)
            self.inner.write(topic, "foxglove.RawImage", log_time_ns, _dumps(msg))
            return
        self.inner.write(topic, schema, log_time_ns, data)
        for derived in self.deriver.derive(topic, log_time_ns, data):
            self.inner.write(*derived)

    def metadata(self, name: str, data: dict[str, str]) -> None:
        self.inner.metadata(name, data)

    def close(self) -> None:
        self.inner.close()
