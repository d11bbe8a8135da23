"""Writes an episode, tick by tick, to MCAP (see docs/recording.md for the channels).

:class:`Recorder` encodes the loop's messages and hands them to a :class:`Sink`: an
:class:`McapSink` (behind a :class:`~sim.recording.derive.DerivingSink`, in this process or in
the writer process of :mod:`sim.recording.pipe`), or a comparison with a recording (closed-loop
replay). The file is chunked and every write goes straight to the operating system, so a writer
that dies leaves every finished chunk readable; a run that ends by an exception or Ctrl-C
finishes the file and records why it ended (the ``drivestack.end`` metadata).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer

from sim.messages import Control, Observation, PerceptionOutput, Plan
from sim.recording import codec, foxglove
from sim.recording.schemas import schema_bytes
from sim.route import Route

log = logging.getLogger(__name__)

FORMAT = "drivestack-recording"
# bump when a reader of the previous version could misread a new file. 2: the route ahead is a
# slice of the route in /world/static (and a replay compares messages byte for byte). 3: a
# camera's image is written on the frame it was taken only; a frame that holds it on (a camera
# with a sensor_tick) has none, where version 2 had one every frame
FORMAT_VERSION = 3
READ_VERSIONS = (2, 3)  # a version-2 file is a version-3 file whose cameras took every frame
META_FORMAT = "drivestack"  # metadata record written right after the header
META_SCENARIO = "drivestack.scenario"
META_CONFIG = "drivestack.config"
META_END = "drivestack.end"

# Topics. World channels get one message per frame (0..steps), stage channels one per tick the
# stack ran (frames 0..steps-1), static ones one at frame 0, /result one at the end. The
# Recorder writes /observation and the stages' messages; a DerivingSink adds /tf/ego, /events,
# /metrics and the two scenes from them (sim/recording/derive.py).
STATIC_TOPICS = ("/scenario", "/config", "/world/static", "/map")
WORLD_TOPICS = ("/tf/ego", "/observation", "/events", "/metrics", "/scene/ground_truth")
STAGE_TOPICS = ("/perception", "/plan", "/control", "/scene/stack")
RESULT_TOPIC = "/result"


RAW_IMAGE = "drivestack.RawImage"  # in flight only: never written to a file
RAW_DEPTH = "drivestack.RawDepth"  # in flight only: written as a foxglove.RawImage (32FC1)
_RAW_HEAD = struct.Struct("<dII")  # t (s), height, width; then RGB bytes or float32 depths


def raw_image(t: float, rgb: np.ndarray) -> bytes:
    h, w = rgb.shape[:2]
    return _RAW_HEAD.pack(t, h, w) + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()


def from_raw_image(data: bytes) -> tuple[float, np.ndarray]:
    t, h, w = _RAW_HEAD.unpack_from(data)
    rgb = np.frombuffer(data, np.uint8, offset=_RAW_HEAD.size).reshape(h, w, 3)
    return t, rgb


def raw_depth(t: float, depth: np.ndarray) -> bytes:
    h, w = depth.shape
    return _RAW_HEAD.pack(t, h, w) + np.ascontiguousarray(depth, dtype="<f4").tobytes()


def from_raw_depth(data: bytes) -> tuple[float, np.ndarray]:
    t, h, w = _RAW_HEAD.unpack_from(data)
    return t, np.frombuffer(data, "<f4", offset=_RAW_HEAD.size).reshape(h, w)


def depth_topic(name: str) -> str:
    """The depth image topic of camera ``name`` (recorded with ``RecorderSettings.depth``)."""
    return f"/camera/{name}/depth"


def camera_topics(name: str) -> tuple[str, str, str]:
    """(image, calibration, transform) topics of camera ``name``."""
    return f"/camera/{name}/image", f"/camera/{name}/calibration", f"/tf/camera/{name}"


@dataclass(frozen=True)
class RecorderSettings:
    """How an episode is written.

    :param image_format: ``jpeg`` (fast: under a millisecond for 320×240, where PNG takes
        several) or ``png`` (lossless: a replayed perceiver sees the exact pixels)
    :param jpeg_quality: 1-100
    :param png_compression: zlib level 0-9 (1 is fast and nearly as small as 9 on renders)
    :param depth: also record each camera's depth image, lossless (``foxglove.RawImage``,
        ``32FC1``, metres): what a learned perceiver places some objects by, so an open-loop
        perception replay sees all it saw live. The file's LZ4 takes most of it back (the
        ground's depth repeats row by row): 100 steps of ``dense_traffic`` with the CNN's two
        cameras, 3.4 MB without, 4.7 MB with
    :param scene_radius_m: ground-truth boxes within this distance of the ego go to the
        ``/scene/ground_truth`` SceneUpdate (all actors are always in ``/observation``)
    :param chunk_size_bytes: uncompressed size of an MCAP chunk; a killed run loses at most the
        chunk being filled
    :param writer: ``process`` (MCAP container work, compression and disk writes in a child
        process, which also finishes the file if this one is killed) or ``inline``
    :param batch_ticks: ticks whose messages are encoded together, after the last of them: the
        encoders then run with warm caches and take a third less of the loop's time than one
        tick at a time. A run that ends by an exception or Ctrl-C writes what is pending; one
        killed outright loses at most these ticks (and what the writer had not yet written)
    """

    image_format: str = "jpeg"
    jpeg_quality: int = 90
    png_compression: int = 1
    depth: bool = False
    scene_radius_m: float = 60.0
    chunk_size_bytes: int = 1 << 20
    writer: str = "process"
    batch_ticks: int = 20


class Sink(Protocol):
    """Where encoded messages go: an MCAP file, or a comparison against one."""

    def write(self, topic: str, schema: str, log_time_ns: int, data: bytes) -> None: ...

    def metadata(self, name: str, data: dict[str, str]) -> None: ...

    def close(self) -> None: ...


class _DirectFile:
    """A write-only file whose every write reaches the OS at once (no Python-side buffer)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._pos = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        """Nothing is buffered here."""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class McapSink:
    """Writes JSON messages to an MCAP file, registering schemas and channels on first use."""

    def __init__(self, path: Path, chunk_size_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self._file = _DirectFile(self.path)
        self._writer = Writer(
            self._file,  # type: ignore[arg-type]
            chunk_size=chunk_size_bytes,
            compression=CompressionType.LZ4,  # several times faster to write than zstd
        )
        self._writer.start(profile="", library="drivestack")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self.message_counts: dict[str, int] = {}
        self._closed = False

    def write(self, topic: str, schema: str, log_time_ns: int, data: bytes) -> None:
        channel = self._channels.get(topic)
        if channel is None:
            sid = self._schemas.get(schema)
            if sid is None:
                sid = self._writer.register_schema(
                    schema, SchemaEncoding.JSONSchema, schema_bytes(schema)
                )
                self._schemas[schema] = sid
            channel = self._writer.register_channel(topic, MessageEncoding.JSON, sid)
            self._channels[topic] = channel
            self.message_counts[topic] = 0
        self._writer.add_message(channel, log_time_ns, data, log_time_ns)
        self.message_counts[topic] += 1

    def metadata(self, name: str, data: dict[str, str]) -> None:
        self._writer.add_metadata(name, data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.finish()
        finally:
            self._file.close()


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _dumps(d: Any) -> bytes:
    if isinstance(d, str):  # already JSON text (the foxglove scene builders)
        return d.encode()
    return _ENCODER.encode(d).encode()


def _ns(t: float) -> int:
    return round(t * 1e9)


class Recorder:
    """Encodes each tick's messages and hands them to a :class:`Sink`.

    Call :meth:`begin` once, then per tick :meth:`observation`, :meth:`perception`,
    :meth:`plan`, :meth:`control` in the loop's order, then :meth:`end` (always, also after an
    error: it writes what is pending and finishes the file). The per-tick calls only queue the
    message (messages are immutable); every ``batch_ticks`` ticks the queue is encoded and
    handed to the sink in the loop's order.
    """

    def __init__(self, sink: Sink, settings: RecorderSettings = RecorderSettings()) -> None:
        self.sink = sink
        self.cfg = settings
        if settings.image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format {settings.image_format!r}: allowed png, jpeg")
        if settings.batch_ticks < 1:
            raise ValueError(f"batch_ticks {settings.batch_ticks}: allowed 1 or more")
        self._static: codec.StaticGT | None = None
        self._lanes: list[np.ndarray] | None = None
        self._signs: list[tuple[float, float, float]] = []
        self._route: Route | None = None
        self._last_obs: Observation | None = None
        self._queue: list[tuple[Callable[[Any], None], Any]] = []
        self._flush_at = 4 * settings.batch_ticks  # four messages a tick
        self.frames = 0  # observations recorded
        self.last_frame = -1
        self.loop_s = 0.0  # wall time spent encoding and handing over (what the loop pays)

    # ---------------------------------------------------------------------------- episode
    def begin(
        self,
        scenario: dict[str, Any],
        config: dict[str, Any],
        lanes: list[np.ndarray] | None = None,
        signs: list[tuple[float, float, float]] | None = None,
    ) -> None:
        """Header metadata (format version, scenario, config) and the static channels; the map
        (``lanes``, ``signs``) is written with the first observation."""
        self.sink.metadata(
            META_FORMAT,
            {
                "format": FORMAT,
                "format_version": str(FORMAT_VERSION),
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        self.sink.metadata(META_SCENARIO, {"json": json.dumps(scenario)})
        self.sink.metadata(META_CONFIG, {"json": json.dumps(config)})
        self.sink.write("/scenario", "drivestack.Scenario", 0, _dumps(scenario))
        self.sink.write("/config", "drivestack.Config", 0, _dumps(config))
        self._lanes = lanes
        self._signs = signs or []

    def begin_route(self, route: Route) -> None:
        """The episode's route, when the backend knows it (before the first observation): it is
        drawn on the map and written once in ``/world/static``, and each observation's route
        ahead is then written as the slice of it that it is."""
        self._route = route

    def end(self, result: dict[str, Any] | None, status: str) -> None:
        """Write what is pending, the result (when there is one) and why the episode ended;
        finish the file."""
        try:
            self.flush()
            if result is not None:
                t = self._last_obs.t if self._last_obs is not None else 0.0
                self.sink.write(RESULT_TOPIC, "drivestack.Result", _ns(t), _dumps(result))
            self.sink.metadata(
                META_END,
                {"status": status, "frames": str(self.frames), "last_frame": str(self.last_frame)},
            )
        finally:
            self.sink.close()

    # ------------------------------------------------------------------------------ ticks
    def observation(self, obs: Observation) -> None:
        self._queue.append((self._observation, obs))
        self._last_obs = obs
        self.frames += 1
        self.last_frame = obs.frame
        if len(self._queue) >= self._flush_at:
            self.flush()

    def perception(self, p: PerceptionOutput) -> None:
        self._queue.append((self._perception, p))

    def plan(self, p: Plan) -> None:
        self._queue.append((self._plan, p))

    def control(self, c: Control) -> None:
        """The tick's last message (the stack's 3D scene is derived from the tick's messages
        when this one is written: sim/recording/derive.py)."""
        self._queue.append((self._control, c))
        if len(self._queue) >= self._flush_at:
            self.flush()

    def flush(self) -> None:
        """Encode the queued messages and hand them to the sink, in order. After an error in
        the sink the rest of the queue is dropped (the sink is then what failed)."""
        queue, self._queue = self._queue, []
        t0 = time.perf_counter()
        for encode, message in queue:
            encode(message)
        self.loop_s += time.perf_counter() - t0

    def _observation(self, obs: Observation) -> None:
        ns = _ns(obs.t)
        write = self.sink.write
        if self._static is None:
            self._static = codec.StaticGT.of(obs, self._route)
            static = codec.encode_static(obs, self._route)
            write("/world/static", "drivestack.WorldStatic", ns, _dumps(static))
            if self._lanes is not None:
                route_xy = self._route.xy[::5] if self._route is not None else None
                scene = foxglove.map_scene(self._lanes, self._signs, route_xy)
                write("/map", "foxglove.SceneUpdate", ns, _dumps(scene))
        text = codec.encode_observation(obs, self._static)
        write("/observation", "drivestack.Observation", ns, text.encode())
        for name, cam in obs.sensors.items():
            if cam.frame != obs.frame:
                continue  # a frame held on from an earlier tick (sensor_tick): written then
            image, calib, tf = camera_topics(name)
            write(
                tf,
                "foxglove.FrameTransform",
                ns,
                _dumps(foxglove.camera_transform(obs.t, name, cam.pose)),
            )
            h, w = cam.rgb.shape[:2]
            write(
                calib,
                "foxglove.CameraCalibration",
                ns,
                _dumps(foxglove.camera_calibration(obs.t, name, cam.K, w, h)),
            )
            # raw pixels: the DerivingSink compresses them (in the writer process, when it
            # runs one) into the foxglove.CompressedImage that the file holds
            write(image, RAW_IMAGE, ns, raw_image(obs.t, cam.rgb))
            if self.cfg.depth and cam.depth is not None:
                write(depth_topic(name), RAW_DEPTH, ns, raw_depth(obs.t, cam.depth))

    def _perception(self, p: PerceptionOutput) -> None:
        text = codec.encode_perception(p)
        self.sink.write("/perception", "drivestack.PerceptionOutput", _ns(p.t), text.encode())

    def _plan(self, p: Plan) -> None:
        self.sink.write("/plan", "drivestack.Plan", _ns(p.t), codec.encode_plan(p).encode())

    def _control(self, c: Control) -> None:
        self.sink.write("/control", "drivestack.Control", _ns(c.t), _dumps(codec.encode_control(c)))

    # ---------------------------------------------------------------------------- helpers


def map_lanes(
    map_path: Path, step: int = 2
) -> tuple[list[np.ndarray], list[tuple[float, float, float]]]:
    """Lane centrelines (every ``step``-th sample) and sign positions of an OpenDRIVE map."""
    from sim.world import load_map

    road = load_map(str(map_path))
    lanes = []
    for seg in road.segments:
        xy = seg.xy
        idx = list(range(0, len(xy), step))
        if idx[-1] != len(xy) - 1:
            idx.append(len(xy) - 1)
        lanes.append(xy[idx])
    signs = [(lm.x, lm.y, lm.z) for lm in road.signs]
    return lanes, signs
