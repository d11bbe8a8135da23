"""OpenDRIVE maps read through CARLA's client-side map library, in our right-handed frame.

``carla.Map(name, xodr_text)`` parses the file without a server and answers waypoint queries in
CARLA's left-handed frame (y to the right, yaw in degrees clockwise). This module is the one place
that converts: ``(x, y, yaw) = (x_c, -y_c, -radians(yaw_c))``, which is the OpenDRIVE inertial
frame (x east, y north). Everything outside sees only our frame.

The lane graph follows CARLA's ``GlobalRoutePlanner``: one segment per lane of a road section
(``get_topology()``), sampled every ``sample_step_m`` metres, with an edge to every lane its end
continues into. Approaches are the segments that end at a junction; each has a stop line at its
end and, if the map says so, a traffic light or a stop/yield sign governing it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import carla
import numpy as np

from sim.errors import MapError
from sim.messages import FloatArray, SignType

log = logging.getLogger(__name__)

LaneKey = tuple[int, int, int]  # (road_id, section_id, lane_id) as CARLA numbers them

TRAFFIC_LIGHT_TYPE = "1000001"
DEFAULT_SPEED_LIMIT_KMH = 50.0  # where no sign has been passed: the urban limit in most of Europe
KMH = 1.0 / 3.6  # km/h to m/s


def to_ours(loc: carla.Location) -> tuple[float, float, float]:
    """CARLA location (left-handed) to our map frame (x, y, z)."""
    return loc.x, -loc.y, loc.z


def yaw_to_ours(yaw_deg: float) -> float:
    """CARLA yaw (degrees, clockwise seen from above) to ours (rad, counter-clockwise, (-π, π])."""
    return math.remainder(-math.radians(yaw_deg), 2.0 * math.pi)


def to_carla(x: float, y: float, z: float = 0.0) -> carla.Location:
    """Our map-frame point to a CARLA location."""
    return carla.Location(x=float(x), y=float(-y), z=float(z))


@dataclass
class Segment:
    """One lane of one road section, sampled along its driving direction (map frame).

    :param xy: samples ``(N, 2)`` (m); ``s`` their distance from the segment start ``(N,)`` (m)
    :param yaw: heading of the lane at each sample ``(N,)`` (rad)
    """

    index: int
    key: LaneKey
    xy: FloatArray
    yaw: FloatArray
    s: FloatArray
    width_m: float
    junction: int  # junction id, -1 if the segment is not inside a junction
    left_lane: int  # +1 same-direction driving lane on the left, -1 opposite, 0 none
    successors: list[int] = field(default_factory=list)
    predecessors: list[int] = field(default_factory=list)
    speed_signs: list[tuple[float, float]] = field(default_factory=list)  # (s along, km/h)

    @property
    def length(self) -> float:
        return float(self.s[-1])


@dataclass(frozen=True)
class Landmark:
    """A sign or traffic light from the map, with the stop line it governs if any (map frame)."""

    id: int
    type: str  # OpenDRIVE type: "274", "206", "205", "1000001"
    value: float
    x: float
    y: float
    z: float
    yaw: float  # direction its face looks at
    segment: int  # the segment of a lane it governs
    s_on_segment: float


@dataclass(frozen=True)
class Approach:
    """A lane entering a junction: where to stop, and what controls it."""

    segment: int
    junction: int
    stop_x: float
    stop_y: float
    stop_yaw: float
    control: str  # "light", "stop", "yield" or "none"
    landmark: int  # id of the governing light or sign, -1 if none


class RoadMap:
    """An OpenDRIVE map: lane graph, junctions, approaches, signs, lights and lane queries."""

    def __init__(self, name: str, xodr: str, sample_step_m: float = 1.0) -> None:
        if "<OpenDRIVE" not in xodr[:4096]:
            raise MapError(f"map '{name}' is not OpenDRIVE: no <OpenDRIVE> element at its start")
        try:
            self.carla_map = carla.Map(name, xodr)
        except RuntimeError as exc:  # CARLA's parser raises on malformed XML
            raise MapError(f"map '{name}' could not be parsed as OpenDRIVE: {exc}") from exc
        self.name = name
        self.xodr = xodr
        self._lane_at_last: tuple[float, float, carla.Waypoint | None] | None = None
        self.step = sample_step_m
        self.segments: list[Segment] = []
        self._by_key: dict[LaneKey, int] = {}
        self._build_segments()
        if not self.segments:
            raise MapError(f"map '{name}' has no driving lanes")
        self.landmarks: list[Landmark] = []
        self._build_landmarks()
        self.approaches: dict[int, Approach] = {}
        self._build_approaches()
        self._all_xy = np.concatenate([seg.xy for seg in self.segments])  # (P, 2)
        self._all_seg = np.concatenate(
            [np.full(len(seg.xy), seg.index) for seg in self.segments]
        )  # (P,)

    @classmethod
    def from_file(cls, path: Path, sample_step_m: float = 1.0) -> RoadMap:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MapError(f"cannot read map file {path}: {exc}") from exc
        return cls(path.stem, text, sample_step_m)

    # ----------------------------------------------------------------------------------- graph
    def _build_segments(self) -> None:
        last_wps: list[carla.Waypoint] = []
        # get_topology() omits lanes of roads that link to nothing, so list lanes from
        # generated waypoints too, and walk each back to where it starts.
        driving = carla.LaneType.Driving
        starts: dict[LaneKey, carla.Waypoint] = {}
        for entry, _ in self.carla_map.get_topology():
            starts.setdefault((entry.road_id, entry.section_id, entry.lane_id), entry)
        for wp in self.carla_map.generate_waypoints(2.0):
            key = (wp.road_id, wp.section_id, wp.lane_id)
            if key not in starts:
                starts[key] = _walk_lane(wp, self.step, forward=False)[-1]
        for key in sorted(starts):
            entry = starts[key]
            if entry.lane_type != driving:
                continue
            wps = _walk_lane(entry, self.step, forward=True)
            pts = np.array([to_ours(w.transform.location)[:2] for w in wps])  # (N, 2)
            keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-3])
            pts = pts[keep]
            if len(pts) < 2:
                continue
            yaw = np.array([yaw_to_ours(w.transform.rotation.yaw) for w in wps])[keep]
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
            seg = Segment(
                index=len(self.segments),
                key=key,
                xy=pts,
                yaw=yaw,
                s=s,
                width_m=float(entry.lane_width),
                junction=entry.junction_id if entry.is_junction else -1,
                left_lane=_left_lane_kind(entry),
            )
            self._by_key[key] = seg.index
            self.segments.append(seg)
            last_wps.append(wps[-1])
        # Edges: where each lane's last waypoint continues to.
        for seg, last in zip(self.segments, last_wps, strict=True):
            for nxt in last.next(self.step):
                j = self._by_key.get((nxt.road_id, nxt.section_id, nxt.lane_id))
                if j is not None and j != seg.index and j not in seg.successors:
                    seg.successors.append(j)
                    self.segments[j].predecessors.append(seg.index)

    def segment(self, key: LaneKey) -> Segment | None:
        i = self._by_key.get(key)
        return None if i is None else self.segments[i]

    # ------------------------------------------------------------------------------- landmarks
    def _build_landmarks(self) -> None:
        """One :class:`Landmark` per (signal, governed lane): CARLA leaves ``waypoint`` empty for
        map-wide queries, so the lanes come from the signal's road, s and orientation."""
        both = carla.LandmarkOrientation.Both
        for lm in self.carla_map.get_all_landmarks():
            lane_ids: list[int] = []
            if lm.orientation in (carla.LandmarkOrientation.Positive, both):
                lane_ids += [-k for k in range(1, 10)]  # right lanes drive along +s
            if lm.orientation in (carla.LandmarkOrientation.Negative, both):
                lane_ids += list(range(1, 10))
            lx, ly, lz = to_ours(lm.transform.location)
            value = float(lm.value) if lm.value is not None else 0.0
            if lm.type == str(int(SignType.SPEED_LIMIT)) and lm.unit.lower() == "mph":
                value *= 1.609344
            for lane_id in lane_ids:
                wp = self.carla_map.get_waypoint_xodr(lm.road_id, lane_id, lm.s)
                if wp is None or wp.lane_type != carla.LaneType.Driving:
                    continue
                seg_i = self._by_key.get((wp.road_id, wp.section_id, wp.lane_id))
                if seg_i is None:
                    continue
                seg = self.segments[seg_i]
                s_on = project_s(seg, np.array(to_ours(wp.transform.location)[:2]))
                lane_yaw = float(np.interp(s_on, seg.s, np.unwrap(seg.yaw)))
                face = math.remainder(lane_yaw + math.pi, 2 * math.pi)  # looks at its traffic
                self.landmarks.append(
                    Landmark(int(lm.id), str(lm.type), value, lx, ly, lz, face, seg_i, s_on)
                )
                if lm.type == str(int(SignType.SPEED_LIMIT)):
                    seg.speed_signs.append((s_on, value))
        for seg in self.segments:
            seg.speed_signs.sort()

    def landmarks_of_type(self, kind: str) -> list[Landmark]:
        return [lm for lm in self.landmarks if lm.type == kind]

    @cached_property
    def signs(self) -> list[Landmark]:
        """Speed-limit, stop and yield signs, one per physical sign (not per governed lane)."""
        types = {str(int(t)) for t in SignType}
        out: dict[int, Landmark] = {}
        for lm in self.landmarks:
            if lm.type in types:
                out.setdefault(lm.id, lm)
        return list(out.values())

    # ------------------------------------------------------------------------------ approaches
    def _build_approaches(self) -> None:
        controls: dict[int, tuple[str, int]] = {}
        kinds = {TRAFFIC_LIGHT_TYPE: "light", "206": "stop", "205": "yield"}
        for lm in self.landmarks:
            kind = kinds.get(lm.type)
            if kind is None:
                continue
            seg_i = self._approach_from(
                lm.segment, max_ahead_m=40.0 + self.segments[lm.segment].length - lm.s_on_segment
            )
            if seg_i is not None and seg_i not in controls:
                controls[seg_i] = (kind, lm.id)
        for seg in self.segments:
            if seg.junction >= 0:
                continue
            nxt_junctions = {self.segments[j].junction for j in seg.successors}
            nxt_junctions.discard(-1)
            if not nxt_junctions:
                continue
            control, landmark = controls.get(seg.index, ("none", -1))
            self.approaches[seg.index] = Approach(
                segment=seg.index,
                junction=min(nxt_junctions),
                stop_x=float(seg.xy[-1, 0]),
                stop_y=float(seg.xy[-1, 1]),
                stop_yaw=float(seg.yaw[-1]),
                control=control,
                landmark=landmark,
            )

    def _approach_from(self, seg_i: int, max_ahead_m: float) -> int | None:
        """The first segment at or after ``seg_i`` that ends at a junction, within reach."""
        travelled = 0.0
        i = seg_i
        for _ in range(8):
            seg = self.segments[i]
            if seg.junction >= 0:
                return None
            if any(self.segments[j].junction >= 0 for j in seg.successors):
                return i
            travelled += seg.length
            if travelled > max_ahead_m or not seg.successors:
                return None
            i = seg.successors[0]
        return None

    @cached_property
    def lights(self) -> list[tuple[Landmark, Approach]]:
        """Traffic lights and the approach each governs, one entry per governed approach."""
        by_id: dict[int, Landmark] = {}
        for lm in self.landmarks_of_type(TRAFFIC_LIGHT_TYPE):
            by_id.setdefault(lm.id, lm)
        out = []
        for ap in self.approaches.values():
            if ap.control == "light":
                out.append((by_id[ap.landmark], ap))
        out.sort(key=lambda p: (p[1].junction, p[0].id, p[1].segment))
        return out

    # ---------------------------------------------------------------------------- speed limits
    def speed_limit_at_entry_kmh(self, seg_i: int) -> float:
        """The limit in force where segment ``seg_i`` begins: the last sign on the way there."""
        return self._limit_at_entry(seg_i, depth=0)

    def _limit_at_entry(self, seg_i: int, depth: int) -> float:
        cache = self.__dict__.setdefault("_limit_cache", {})
        if seg_i in cache:
            return float(cache[seg_i])
        cache[seg_i] = DEFAULT_SPEED_LIMIT_KMH  # guards cycles while recursing
        value = DEFAULT_SPEED_LIMIT_KMH
        seg = self.segments[seg_i]
        if seg.predecessors and depth < 50:
            pred = self.segments[min(seg.predecessors)]
            value = (
                pred.speed_signs[-1][1]
                if pred.speed_signs
                else self._limit_at_entry(pred.index, depth + 1)
            )
        cache[seg_i] = value
        return value

    def speed_limits_kmh(self, seg_i: int) -> FloatArray:
        """The limit at every sample of segment ``seg_i`` ``(N,)`` (km/h)."""
        seg = self.segments[seg_i]
        out = np.full(len(seg.s), self.speed_limit_at_entry_kmh(seg_i))
        for s_on, value in seg.speed_signs:
            out[seg.s >= s_on] = value
        return out

    # ------------------------------------------------------------------------------- queries
    def nearest_segment(self, x: float, y: float, yaw: float | None = None) -> tuple[int, float]:
        """The driving-lane segment nearest to a point, and the point's distance along it.

        With ``yaw`` given, lanes whose direction differs by more than 90° are skipped.
        """
        d2 = np.sum((self._all_xy - (x, y)) ** 2, axis=1)
        order = np.argsort(d2)[:64]
        for p in order:
            seg = self.segments[int(self._all_seg[p])]
            if yaw is not None:
                s_on = project_s(seg, np.array([x, y]))
                lane_yaw = float(np.interp(s_on, seg.s, np.unwrap(seg.yaw)))
                if abs(math.remainder(lane_yaw - yaw, 2 * math.pi)) > math.pi / 2:
                    continue
            return seg.index, float(project_s(seg, np.array([x, y])))
        raise MapError(f"no driving lane near ({x:.1f}, {y:.1f}) in map '{self.name}'")

    def driving_lane_at(self, x: float, y: float) -> carla.Waypoint | None:
        """The driving-lane waypoint under a point, or None when the point is off driving lanes.

        The last answer is kept: the world asks about the same ego position more than once a
        tick, and a standing ego asks about one position tick after tick.
        """
        last = self._lane_at_last
        if last is not None and last[0] == x and last[1] == y:
            return last[2]
        wp = self.carla_map.get_waypoint(
            to_carla(x, y), project_to_road=False, lane_type=carla.LaneType.Driving
        )
        self._lane_at_last = (x, y, wp)  # one assignment: safe for maps shared by threads
        return wp

    def lane_point(
        self, seg_i: int, s_on: float, offset_m: float = 0.0
    ) -> tuple[float, float, float]:
        """Point ``s_on`` along segment ``seg_i``, ``offset_m`` to its left: (x, y, yaw)."""
        seg = self.segments[seg_i]
        x = float(np.interp(s_on, seg.s, seg.xy[:, 0]))
        y = float(np.interp(s_on, seg.s, seg.xy[:, 1]))
        yaw = float(np.interp(s_on, seg.s, np.unwrap(seg.yaw)))
        return x - math.sin(yaw) * offset_m, y + math.cos(yaw) * offset_m, yaw

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of all lane centrelines (m)."""
        lo, hi = self._all_xy.min(axis=0), self._all_xy.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    @cached_property
    def junction_ids(self) -> list[int]:
        return sorted({seg.junction for seg in self.segments if seg.junction >= 0})


def _walk_lane(wp: carla.Waypoint, step: float, forward: bool) -> list[carla.Waypoint]:
    """Waypoints from ``wp`` to the end (or start) of its lane, ``step`` apart, ending exactly at
    the lane's end. (CARLA's ``next_until_lane_end`` fails on lanes that lead nowhere.)"""
    key = (wp.road_id, wp.section_id, wp.lane_id)
    out = [wp]
    d = step
    while d > 0.01:
        nxt = [
            w
            for w in (out[-1].next(d) if forward else out[-1].previous(d))
            if (w.road_id, w.section_id, w.lane_id) == key
        ]
        if nxt:
            out.append(nxt[0])
        else:
            d /= 2.0  # close in on the lane's end
        if len(out) > 100_000:
            break
    return out


def _left_lane_kind(wp: carla.Waypoint) -> int:
    left = wp.get_left_lane()
    if left is None or left.lane_type != carla.LaneType.Driving:
        return 0
    return 1 if (left.lane_id > 0) == (wp.lane_id > 0) else -1


def project_s(seg: Segment, p: FloatArray) -> float:
    """Distance along ``seg`` of the projection of point ``p`` (m), clamped to the segment."""
    a, b = seg.xy[:-1], seg.xy[1:]
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, axis=1) / np.maximum(np.sum(ab * ab, axis=1), 1e-12), 0, 1)
    d2 = np.sum((a + t[:, None] * ab - p) ** 2, axis=1)
    i = int(np.argmin(d2))
    return float(seg.s[i] + t[i] * (seg.s[i + 1] - seg.s[i]))
