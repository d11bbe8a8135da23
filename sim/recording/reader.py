"""Reads a recording back: every complete chunk, whether or not the file was finished.

The file is read front to back (the summary at its end is not needed), so a recording whose
writer was killed yields everything up to its last complete chunk, and :attr:`Recording.status`
says where it stops. Bad input raises :class:`RecordingError` with one line.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mcap.exceptions import EndOfFile, McapError
from mcap.records import Channel, Footer, Message, Metadata, Schema
from mcap.stream_reader import StreamReader

from sim.errors import DrivestackError
from sim.messages import Control, Observation, PerceptionOutput, Plan
from sim.recording import codec
from sim.recording.writer import (
    FORMAT,
    FORMAT_VERSION,
    META_CONFIG,
    META_END,
    META_FORMAT,
    META_SCENARIO,
    READ_VERSIONS,
    camera_topics,
    depth_topic,
)

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"


class RecordingError(DrivestackError):
    """A recording that cannot be read (not MCAP, not ours, an incompatible version, empty)."""


@dataclass
class Recording:
    """A recording's header information and its messages' raw JSON, per topic, in order.

    :param complete: the file ends with its footer (the writer finished it)
    :param status: how the episode ended (``drivestack.end``), or where a truncated file stops
    """

    path: Path
    format_version: int
    created_utc: str
    scenario: dict[str, Any]
    config: dict[str, Any]
    messages: dict[str, list[bytes]]
    schemas: dict[str, str]
    complete: bool
    status: str
    end: dict[str, str] | None = None
    _static: codec.StaticGT | None = field(default=None, repr=False)

    # ----------------------------------------------------------------------------- access
    def json(self, topic: str) -> list[dict[str, Any]]:
        """Decoded JSON messages of ``topic`` (empty if the topic is absent)."""
        return [json.loads(b) for b in self.messages.get(topic, [])]

    def count(self, topic: str) -> int:
        return len(self.messages.get(topic, []))

    @property
    def cameras(self) -> list[str]:
        names = []
        for topic in self.messages:
            parts = topic.split("/")
            if len(parts) == 4 and parts[1] == "camera" and parts[3] == "image":
                names.append(parts[2])
        return sorted(names)

    @property
    def result(self) -> dict[str, Any] | None:
        found = self.json("/result")
        return found[-1] if found else None

    @property
    def static(self) -> codec.StaticGT:
        if self._static is None:
            found = self.json("/world/static")
            if not found:
                raise RecordingError(f"{self.path}: no /world/static message: nothing to replay")
            self._static = codec.StaticGT.decode(found[0])
        return self._static

    def images(self, camera: str) -> Iterator[np.ndarray | None]:
        """Decoded RGB images ``(H, W, 3)`` of ``camera`` in frame order."""
        import base64

        try:
            import cv2
        except ImportError:
            log.warning("OpenCV (cv2) is not installed: camera images cannot be decoded")
            for _ in self.messages.get(camera_topics(camera)[0], []):
                yield None
            return
        for raw in self.messages.get(camera_topics(camera)[0], []):
            data = base64.b64decode(json.loads(raw)["data"])
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            yield None if bgr is None else np.ascontiguousarray(bgr[..., ::-1])

    def depths(self, camera: str) -> Iterator[np.ndarray]:
        """Depth images ``(H, W)`` float32 m of ``camera`` in frame order (none unless the run
        recorded them: ``RecorderSettings.depth``)."""
        for raw in self.messages.get(depth_topic(camera), []):
            m = json.loads(raw)
            if m["encoding"] != "32FC1":
                raise RecordingError(
                    f"{self.path}: {depth_topic(camera)} has encoding {m['encoding']!r}; "
                    "this drivestack reads 32FC1"
                )
            data = base64.b64decode(m["data"])
            yield np.frombuffer(data, "<f4").reshape(m["height"], m["width"]).copy()

    def has_depth(self, camera: str) -> bool:
        return self.count(depth_topic(camera)) > 0

    def observations(self, with_images: bool = True) -> Iterator[Observation]:
        """The recorded observations (frames 0..last), camera pixels (and depth, where recorded)
        included when asked. A camera's image is written once, on the tick it was taken; a tick
        that holds the frame on (a camera with a ``sensor_tick``) gets that image again."""
        static = self.static
        cams = self.cameras if with_images else []
        image_iters = {c: self.images(c) for c in cams}
        depth_iters = {c: self.depths(c) for c in cams if self.has_depth(c)}
        # a camera's frame index, image, depth
        last: dict[str, tuple[int, np.ndarray | None, np.ndarray | None]] = {}
        for raw in self.messages.get("/observation", []):
            d = json.loads(raw)
            images, depths = {}, {}
            for cam, it in image_iters.items():
                meta = d.get("sensors", {}).get(cam)
                if meta is None:
                    continue
                if cam not in last or last[cam][0] != meta["frame"]:
                    depth = next(depth_iters[cam], None) if cam in depth_iters else None
                    last[cam] = (meta["frame"], next(it, None), depth)
                images[cam] = last[cam][1]
                depths[cam] = last[cam][2]
            yield codec.decode_observation(d, static, images, depths)

    def perceptions(self) -> list[PerceptionOutput]:
        return [codec.decode_perception(d) for d in self.json("/perception")]

    def plans(self) -> list[Plan]:
        return [codec.decode_plan(d) for d in self.json("/plan")]

    def controls(self) -> list[Control]:
        return [codec.decode_control(d) for d in self.json("/control")]


def read_recording(path: Path | str) -> Recording:
    """Read every complete chunk of ``path``; raise :class:`RecordingError` on bad input."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such recording file")
    with path.open("rb") as f:
        head = f.read(len(MCAP_MAGIC))
        if head != MCAP_MAGIC:
            raise RecordingError(
                f"{path}: not an MCAP file (it does not start with the MCAP magic bytes)"
            )
        f.seek(0)
        return _read(path, f)


def _read(path: Path, f: Any) -> Recording:
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    messages: dict[str, list[bytes]] = {}
    metadata: dict[str, dict[str, str]] = {}
    complete = False
    damage = ""
    try:
        for record in StreamReader(f, validate_crcs=True).records:
            if isinstance(record, Message):
                topic = channels[record.channel_id][0]
                messages.setdefault(topic, []).append(record.data)
            elif isinstance(record, Channel):
                channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
            elif isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Metadata):
                metadata[record.name] = dict(record.metadata)
            elif isinstance(record, Footer):
                complete = True
    except EndOfFile:
        damage = "it ends in the middle of a record"
    except (McapError, struct.error, ValueError, KeyError, EOFError) as exc:
        damage = type(exc).__name__ if not str(exc) else str(exc).splitlines()[0]
    except Exception as exc:  # zstandard raises its own error type on a cut chunk
        damage = f"{type(exc).__name__}: {exc}"

    fmt = metadata.get(META_FORMAT)
    if fmt is None or fmt.get("format") != FORMAT:
        if damage and not metadata:
            raise RecordingError(f"{path}: an MCAP file cut before its first record ({damage})")
        raise RecordingError(
            f"{path}: an MCAP file, but not a drivestack recording (no '{META_FORMAT}' metadata)"
        )
    try:
        version = int(fmt.get("format_version", ""))
    except ValueError:
        raise RecordingError(
            f"{path}: unreadable format_version {fmt.get('format_version')!r}"
        ) from None
    if version not in READ_VERSIONS:
        newer = "newer" if version > FORMAT_VERSION else "older"
        reads = " and ".join(str(v) for v in READ_VERSIONS)
        raise RecordingError(
            f"{path}: recording format version {version} is {newer} than the versions this "
            f"drivestack reads ({reads}); replay it with a matching drivestack, or "
            "record it again"
        )
    if META_SCENARIO not in metadata or META_CONFIG not in metadata:
        raise RecordingError(f"{path}: the recording has no scenario or configuration metadata")

    end = metadata.get(META_END)
    frames = [json.loads(b)["frame"] for b in messages.get("/metrics", [])[-1:]]
    last = frames[0] if frames else None
    if complete and end is not None:
        status = end.get("status", "")
    elif complete:
        status = (
            f"ended without an end status after frame {last}: the run stopped without closing "
            "its recording (killed?); everything up to there was kept"
        )
    else:
        where = f"frame {last}" if last is not None else "before its first frame"
        status = (
            f"truncated: the file is not finished ({damage or 'no footer'}); read "
            f"{sum(len(v) for v in messages.values())} messages up to {where}, the last "
            "complete chunk"
        )
        log.info("%s: %s", path, status)  # callers show it: the CLI prints one warning
    return Recording(
        path=path,
        format_version=version,
        created_utc=fmt.get("created_utc", ""),
        scenario=json.loads(metadata[META_SCENARIO]["json"]),
        config=json.loads(metadata[META_CONFIG]["json"]),
        messages=messages,
        schemas={topic: schema for topic, schema in channels.values()},
        complete=complete,
        status=status,
        end=end,
    )
