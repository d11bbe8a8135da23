"""Generate the built-in OpenDRIVE maps in ``sim/maps/`` with scenariogeneration.

Run ``python scripts/make_maps.py [--out DIR]``. The output is deterministic: running the
script twice writes byte-identical files, so the generated maps are committed and a diff of
them is a review of the map change.

Conventions
-----------
Frame and units
    OpenDRIVE's inertial frame (x east, y north, heading counter-clockwise from x), metres and
    radians. (CARLA's map library mirrors y; converting is the map adapter's job.)
Traffic
    Right-hand traffic: right lanes (negative ids) drive along +s, left lanes (positive ids)
    against it. Driving lanes are 3.5 m wide. Urban roads have a 2.0 m sidewalk on each outer
    edge, rural roads a 1.0 m shoulder, the divided road a 1.0 m median lane on each side of
    the centre line and a 2.5 m hard shoulder.
Road marks
    White everywhere (German practice): the centre line between opposing directions is broken
    (solid through the tight bends of the country road), lines between lanes of one direction
    are broken, the outer edge of the outermost driving lane is solid, the divided road's
    median edges are solid. Connecting roads inside junctions carry no marks.
Signals
    German catalogue (country "DEU"): 274 speed limit (value in km/h), 206 stop, 205 yield;
    traffic lights are type 1000001 of country "OpenDRIVE", dynamic (CARLA's convention).
    A signal governs the lanes driving towards it: orientation "+" for the right lanes (driving
    +s), "-" for the left lanes (driving -s), and it stands on the right-hand roadside of those
    lanes, past their outer edge. Every signal also names those driving lanes in an explicit
    ``<validity>``, because CARLA's default validity reads the orientation the other way
    round ("+" -> positive lanes).
Junctions
    Every junction is an OpenDRIVE junction made with ``CommonJunctionCreator``: one
    single-lane connecting road per allowed movement (straight, left, right; no U-turns).
    Signalised junctions get a ``<controller>`` listing their lights, referenced from the
    junction, so CARLA groups the lights of one junction (``Map.get_landmark_group``).
    Lattice corners with two streets are a quarter-circle road, not a junction.
Ids
    Roads from 1, junctions from 500, connecting roads from 1000, signals from 1 per map.
    CARLA decides whether a link names a road or a junction by looking the id up among the
    roads, so junction ids must never equal a road id.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from scenariogeneration import xodr

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "sim" / "maps"

LANE_WIDTH_M = 3.5
SIDEWALK_WIDTH_M = 2.0
SHOULDER_WIDTH_M = 1.0
HARD_SHOULDER_WIDTH_M = 2.5
MEDIAN_WIDTH_M = 1.0
MARK_WIDTH_M = 0.15
DASH_LENGTH_M = 3.0
DASH_GAP_M = 6.0

JUNCTION_HALF_SIZE_M = 12.0
"""Distance from a lattice node to the end of each street there; also the corner-arc radius."""

FIRST_JUNCTION_ID = 500
FIRST_CONNECTING_ROAD_ID = 1000
CONNECTING_ROAD_IDS_PER_JUNCTION = 20

SPIRAL_CURVATURE_EPSILON = 1e-6
"""Curvatures (1/m) closer than this count as equal when cleaning up junction geometry."""

HEADER_DATE = "2025-01-01T00:00:00"
GEO_REFERENCE = (
    "+proj=tmerc +lat_0=49.0 +lon_0=8.4 +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
)

MarkKind = Literal["solid", "broken", "none"]
Node = tuple[int, int]
Control = Literal["light", "stop", "yield"]


# --- cross sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LaneSpec:
    """One lane of a cross section: its type, width and the mark on its outer edge."""

    lane_type: xodr.LaneType
    width_m: float
    outer_mark: MarkKind


@dataclass(frozen=True)
class CrossSection:
    """A symmetric cross section, described for one side from the centre line outwards."""

    lanes: tuple[LaneSpec, ...]
    sign_offset_m: float
    """|t| of roadside signs: past the outer edge of the outermost driving lane."""

    @property
    def driving_lane_numbers(self) -> tuple[int, ...]:
        """|lane id| of the driving lanes on one side."""
        return tuple(
            i for i, lane in enumerate(self.lanes, 1) if lane.lane_type == xodr.LaneType.driving
        )


URBAN = CrossSection(
    lanes=(
        LaneSpec(xodr.LaneType.driving, LANE_WIDTH_M, "solid"),
        LaneSpec(xodr.LaneType.sidewalk, SIDEWALK_WIDTH_M, "none"),
    ),
    sign_offset_m=LANE_WIDTH_M + 1.0,
)
RURAL = CrossSection(
    lanes=(
        LaneSpec(xodr.LaneType.driving, LANE_WIDTH_M, "solid"),
        LaneSpec(xodr.LaneType.shoulder, SHOULDER_WIDTH_M, "none"),
    ),
    sign_offset_m=LANE_WIDTH_M + SHOULDER_WIDTH_M + 0.75,
)
DIVIDED_3_LANES = CrossSection(
    lanes=(
        LaneSpec(xodr.LaneType.median, MEDIAN_WIDTH_M, "solid"),
        LaneSpec(xodr.LaneType.driving, LANE_WIDTH_M, "broken"),
        LaneSpec(xodr.LaneType.driving, LANE_WIDTH_M, "broken"),
        LaneSpec(xodr.LaneType.driving, LANE_WIDTH_M, "solid"),
        LaneSpec(xodr.LaneType.shoulder, HARD_SHOULDER_WIDTH_M, "none"),
    ),
    sign_offset_m=MEDIAN_WIDTH_M + 3 * LANE_WIDTH_M + HARD_SHOULDER_WIDTH_M + 0.75,
)


# --- signals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignalKind:
    """Catalogue entry and physical size of a sign or light."""

    type: str
    country: str
    dynamic: bool
    z_offset_m: float
    height_m: float
    width_m: float


SPEED_LIMIT = SignalKind("274", "DEU", dynamic=False, z_offset_m=2.0, height_m=0.6, width_m=0.6)
STOP = SignalKind("206", "DEU", dynamic=False, z_offset_m=2.0, height_m=0.6, width_m=0.6)
YIELD = SignalKind("205", "DEU", dynamic=False, z_offset_m=2.0, height_m=0.6, width_m=0.6)
TRAFFIC_LIGHT = SignalKind(
    "1000001", "OpenDRIVE", dynamic=True, z_offset_m=2.0, height_m=1.0, width_m=0.35
)
CONTROL_SIGNALS: dict[Control, SignalKind] = {"light": TRAFFIC_LIGHT, "stop": STOP, "yield": YIELD}

LIGHT_SETBACK_M = 3.0
"""Distance of a traffic light before the junction entry."""
SIGN_SETBACK_M = 2.0
"""Distance of a stop or yield sign before the junction entry."""
LIMIT_AFTER_EXIT_M = 6.0
"""Distance of a speed-limit sign after the junction (or corner) exit."""


@dataclass
class BuiltMap:
    """A generated map: the OpenDRIVE tree plus what scenariogeneration cannot express."""

    odr: xodr.OpenDrive
    controllers: dict[int, list[str]] = field(default_factory=dict)
    """Junction id -> ids of the traffic lights one controller switches together."""


def _signal(
    kind: SignalKind,
    signal_id: int,
    section: CrossSection,
    s: float,
    along_s: bool,
    value: float | None = None,
) -> xodr.Signal:
    """A signal governing the driving lanes that travel along +s (``along_s``) or -s."""
    side = -1 if along_s else 1  # right-hand roadside of those lanes: right of +s, left of -s
    lane_ids = [side * n for n in section.driving_lane_numbers]
    signal = xodr.Signal(
        s=round(s, 3),
        t=side * section.sign_offset_m,
        country=kind.country,
        Type=kind.type,
        subtype="-1",
        id=str(signal_id),
        dynamic=xodr.Dynamic.yes if kind.dynamic else xodr.Dynamic.no,
        value=value,
        unit="km/h" if value is not None else None,
        zOffset=kind.z_offset_m,
        orientation=xodr.Orientation.positive if along_s else xodr.Orientation.negative,
        height=kind.height_m,
        width=kind.width_m,
    )
    signal.add_validity(min(lane_ids), max(lane_ids))
    return signal


def _attach(road: xodr.Road, signal: xodr.Signal) -> None:
    """Add ``signal`` to ``road`` keeping its id.

    ``Road.add_signal`` registers ids in a process-wide table and renumbers ids it has seen
    before, which would make ids depend on which maps were built earlier in the process.
    """
    road.signals.append(signal)


# --- roads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pose:
    """Position (m) and heading (rad) in the OpenDRIVE inertial frame."""

    x: float
    y: float
    heading: float


def _road_mark(kind: MarkKind, s_offset: float = 0.0) -> xodr.RoadMark:
    if kind == "none":
        return xodr.RoadMark(xodr.RoadMarkType.none, soffset=s_offset)
    if kind == "solid":
        return xodr.RoadMark(
            xodr.RoadMarkType.solid,
            MARK_WIDTH_M,
            soffset=s_offset,
            color=xodr.RoadMarkColor.white,
        )
    return xodr.RoadMark(
        xodr.RoadMarkType.broken,
        MARK_WIDTH_M,
        length=DASH_LENGTH_M,
        space=DASH_GAP_M,
        soffset=s_offset,
        color=xodr.RoadMarkColor.white,
    )


def _lanes(section: CrossSection, centre_marks: Sequence[tuple[float, MarkKind]]) -> xodr.Lanes:
    """One lane section of ``section`` mirrored on both sides; centre marks as (s, kind)."""
    centre = xodr.Lane(xodr.LaneType.none)
    for s, kind in centre_marks:
        centre.add_roadmark(_road_mark(kind, s))
    lane_section = xodr.LaneSection(0, centre)
    for spec in section.lanes:
        for add in (lane_section.add_left_lane, lane_section.add_right_lane):
            lane = xodr.Lane(spec.lane_type, a=spec.width_m)
            lane.add_roadmark(_road_mark(spec.outer_mark))
            add(lane)
    lanes = xodr.Lanes()
    lanes.add_lanesection(lane_section)
    return lanes


def _road(
    road_id: int,
    start: Pose,
    geometries: Sequence[xodr.Line | xodr.Arc | xodr.Spiral],
    section: CrossSection,
    centre_marks: Sequence[tuple[float, MarkKind]] = ((0.0, "broken"),),
) -> xodr.Road:
    planview = xodr.PlanView(start.x, start.y, start.heading)
    for geometry in geometries:
        planview.add_geometry(geometry)
    return xodr.Road(road_id, planview, _lanes(section, centre_marks))


def _curve(
    radius_m: float, arc_m: float, spiral_m: float, left: bool
) -> list[xodr.Line | xodr.Arc | xodr.Spiral]:
    """Clothoid - arc - clothoid bend; positive curvature turns left."""
    curvature = (1.0 if left else -1.0) / radius_m
    return [
        xodr.Spiral(0.0, curvature, length=spiral_m),
        xodr.Arc(curvature, length=arc_m),
        xodr.Spiral(curvature, 0.0, length=spiral_m),
    ]


def _length(geometries: Sequence[xodr.Line | xodr.Arc | xodr.Spiral]) -> float:
    return float(sum(g.length for g in geometries))


def _open_road(
    name: str,
    section: CrossSection,
    geometries: Sequence[xodr.Line | xodr.Arc | xodr.Spiral],
    limits_forward: Sequence[tuple[float, int]],
    limits_backward: Sequence[tuple[float, int]],
    centre_marks: Sequence[tuple[float, MarkKind]] = ((0.0, "broken"),),
) -> BuiltMap:
    """A single road with speed limits given as (s, km/h) for each direction of travel."""
    odr = _new_opendrive(name)
    road = _road(1, Pose(0.0, 0.0, 0.0), geometries, section, centre_marks)
    ids = itertools.count(1)
    for s, kmh in limits_forward:
        _attach(road, _signal(SPEED_LIMIT, next(ids), section, s, along_s=True, value=kmh))
    for s, kmh in limits_backward:
        _attach(road, _signal(SPEED_LIMIT, next(ids), section, s, along_s=False, value=kmh))
    odr.add_road(road)
    odr.adjust_roads_and_lanes()
    return BuiltMap(odr)


def _new_opendrive(name: str) -> xodr.OpenDrive:
    return xodr.OpenDrive(name, geo_reference=GEO_REFERENCE)


# --- lattice towns -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Street:
    """A straight road between two neighbouring lattice nodes, running from ``start``."""

    road: xodr.Road
    start: Node
    end: Node
    start_pose: Pose
    length_m: float


@dataclass(frozen=True)
class Approach:
    """One street end at a node."""

    street: Street
    at_end: bool
    """True when the street ends at the node (its right lanes drive into it)."""

    @property
    def road_id(self) -> int:
        return int(self.street.road.id)

    @property
    def horizontal(self) -> bool:
        return self.street.start[1] == self.street.end[1]

    @property
    def point(self) -> tuple[float, float]:
        pose, length = self.street.start_pose, self.street.length_m if self.at_end else 0.0
        return (
            pose.x + length * math.cos(pose.heading),
            pose.y + length * math.sin(pose.heading),
        )

    @property
    def heading_in(self) -> float:
        """Heading pointing into the node."""
        heading = self.street.start_pose.heading
        return heading if self.at_end else _wrap(heading + math.pi)

    @property
    def incoming_lane(self) -> int:
        return -1 if self.at_end else 1

    @property
    def outgoing_lane(self) -> int:
        return -self.incoming_lane

    @property
    def contact(self) -> xodr.ContactPoint:
        return xodr.ContactPoint.end if self.at_end else xodr.ContactPoint.start

    def link_to_road(self, road_id: int, contact: xodr.ContactPoint) -> None:
        """Link this street end to the ``contact`` end of another road."""
        road = self.street.road
        add_link = road.add_successor if self.at_end else road.add_predecessor
        add_link(xodr.ElementType.road, road_id, contact)


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


@dataclass(frozen=True)
class Lattice:
    """A rectangular lattice of nodes at ``xs`` x ``ys`` joined by straight streets."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def nodes(self) -> list[Node]:
        return [(i, j) for j in range(len(self.ys)) for i in range(len(self.xs))]

    def position(self, node: Node) -> tuple[float, float]:
        return self.xs[node[0]], self.ys[node[1]]

    def edges(self) -> list[tuple[Node, Node]]:
        """Neighbouring node pairs, each running east or north."""
        pairs = []
        for i, j in self.nodes():
            if i + 1 < len(self.xs):
                pairs.append(((i, j), (i + 1, j)))
            if j + 1 < len(self.ys):
                pairs.append(((i, j), (i, j + 1)))
        return pairs

    def on_boundary(self, a: Node, b: Node) -> bool:
        """Whether the street a-b lies on the outer ring."""
        return (a[0] == b[0] and a[0] in (0, len(self.xs) - 1)) or (
            a[1] == b[1] and a[1] in (0, len(self.ys) - 1)
        )

    def on_x_boundary(self, node: Node) -> bool:
        return node[0] in (0, len(self.xs) - 1)

    def degree(self, node: Node) -> int:
        """Number of streets meeting at ``node``: 2 corner, 3 T-junction, 4 crossing."""
        return sum(node in edge for edge in self.edges())


SpeedLimitRule = Callable[[Node, Node], int]
ControlRule = Callable[[Node, Approach], Control | None]


def _street(road_id: int, lattice: Lattice, a: Node, b: Node) -> Street:
    (xa, ya), (xb, yb) = lattice.position(a), lattice.position(b)
    heading = math.atan2(yb - ya, xb - xa)
    length = math.hypot(xb - xa, yb - ya) - 2 * JUNCTION_HALF_SIZE_M
    start = Pose(
        xa + JUNCTION_HALF_SIZE_M * math.cos(heading),
        ya + JUNCTION_HALF_SIZE_M * math.sin(heading),
        heading,
    )
    road = _road(road_id, start, [xodr.Line(length)], URBAN)
    return Street(road, a, b, start, length)


def _corner(road_id: int, into: Approach, out_of: Approach) -> xodr.Road:
    """Quarter-circle road from the end of one street to the start of the other."""
    turn = _wrap(_wrap(out_of.heading_in + math.pi) - into.heading_in)
    arc = xodr.Arc(math.copysign(1.0 / JUNCTION_HALF_SIZE_M, turn), angle=abs(turn))
    road = _road(road_id, Pose(*into.point, into.heading_in), [arc], URBAN)
    road.add_predecessor(xodr.ElementType.road, into.road_id, into.contact)
    road.add_successor(xodr.ElementType.road, out_of.road_id, out_of.contact)
    into.link_to_road(road_id, xodr.ContactPoint.start)
    out_of.link_to_road(road_id, xodr.ContactPoint.end)
    return road


def _junction(junction_id: int, approaches: Sequence[Approach]) -> xodr.CommonJunctionCreator:
    """A junction with one connecting road per movement between different approaches."""
    first_road = FIRST_CONNECTING_ROAD_ID + CONNECTING_ROAD_IDS_PER_JUNCTION * (
        junction_id - FIRST_JUNCTION_ID
    )
    creator = xodr.CommonJunctionCreator(junction_id, f"junction_{junction_id}", first_road)
    for approach in approaches:
        creator.add_incoming_road_cartesian_geometry(
            approach.street.road,
            *approach.point,
            approach.heading_in,
            "successor" if approach.at_end else "predecessor",
        )
    for a, b in itertools.permutations(approaches, 2):
        creator.add_connection(a.road_id, b.road_id, a.incoming_lane, b.outgoing_lane)
    for road in creator.get_connecting_roads():
        _remove_marks(road)
    return creator


def _remove_marks(road: xodr.Road) -> None:
    for section in road.lanes.lanesections:
        for lane in (section.centerlane, *section.leftlanes, *section.rightlanes):
            lane.roadmark = [_road_mark("none")]


def _control_signal(signal_id: int, approach: Approach, control: Control) -> xodr.Signal:
    """Light or sign a little before the junction, for the lane driving into it."""
    setback = LIGHT_SETBACK_M if control == "light" else SIGN_SETBACK_M
    s = approach.street.length_m - setback if approach.at_end else setback
    return _signal(CONTROL_SIGNALS[control], signal_id, URBAN, s, along_s=approach.at_end)


def _speed_limit_signals(ids: Iterator[int], street: Street, kmh: int) -> list[xodr.Signal]:
    """One limit sign per direction, just after the street begins in that direction."""
    s_backward = street.length_m - LIMIT_AFTER_EXIT_M
    return [
        _signal(SPEED_LIMIT, next(ids), URBAN, LIMIT_AFTER_EXIT_M, along_s=True, value=kmh),
        _signal(SPEED_LIMIT, next(ids), URBAN, s_backward, along_s=False, value=kmh),
    ]


def _town(
    name: str, lattice: Lattice, speed_limit: SpeedLimitRule, control: ControlRule
) -> BuiltMap:
    """A lattice town: streets between nodes, corner arcs, T and 4-way junctions."""
    odr = _new_opendrive(name)
    built = BuiltMap(odr)
    road_ids = itertools.count(1)
    signal_ids = itertools.count(1)

    streets = [_street(next(road_ids), lattice, a, b) for a, b in lattice.edges()]
    approaches: dict[Node, list[Approach]] = {node: [] for node in lattice.nodes()}
    for street in streets:
        odr.add_road(street.road)
        approaches[street.start].append(Approach(street, at_end=False))
        approaches[street.end].append(Approach(street, at_end=True))
        for signal in _speed_limit_signals(
            signal_ids, street, speed_limit(street.start, street.end)
        ):
            _attach(street.road, signal)

    junction_ids = itertools.count(FIRST_JUNCTION_ID)
    for node in lattice.nodes():
        here = approaches[node]
        if len(here) == 2:
            odr.add_road(_corner(next(road_ids), *here))
            continue
        junction_id = next(junction_ids)
        creator = _junction(junction_id, here)
        for approach in here:
            kind = control(node, approach)
            if kind is None:
                continue
            signal = _control_signal(next(signal_ids), approach, kind)
            _attach(approach.street.road, signal)
            if kind == "light":
                built.controllers.setdefault(junction_id, []).append(str(signal.id))
        odr.add_junction_creator(creator)

    odr.adjust_roads_and_lanes()
    return built


# --- the maps ----------------------------------------------------------------------------------


def country_road() -> BuiltMap:
    """About 1.8 km of two-lane rural road: bends of radius 60-300 m, limits 50/80/60/30/50."""
    geometries = [
        xodr.Line(150.0),
        *_curve(300.0, arc_m=150.0, spiral_m=40.0, left=True),
        xodr.Line(250.0),
        *_curve(200.0, arc_m=120.0, spiral_m=50.0, left=False),
        xodr.Line(150.0),
        *_curve(120.0, arc_m=100.0, spiral_m=40.0, left=True),
        xodr.Line(80.0),
        *_curve(60.0, arc_m=80.0, spiral_m=30.0, left=False),
        xodr.Line(100.0),
        *_curve(250.0, arc_m=60.0, spiral_m=40.0, left=True),
        xodr.Line(200.0),
    ]
    length = _length(geometries)
    # No overtaking (solid centre line) through the two tight bends, s = 1000..1400.
    centre_marks: list[tuple[float, MarkKind]] = [
        (0.0, "broken"),
        (990.0, "solid"),
        (1410.0, "broken"),
    ]
    return _open_road(
        "country_road",
        RURAL,
        geometries,
        limits_forward=[(20.0, 50), (400.0, 80), (960.0, 60), (1220.0, 30), (1420.0, 50)],
        limits_backward=[(length - 20.0, 50), (1430.0, 30), (1200.0, 60), (960.0, 80), (140.0, 50)],
        centre_marks=centre_marks,
    )


def multi_lane() -> BuiltMap:
    """2 km of divided road, three lanes each way, bends of R >= 300 m, 60-100 km/h."""
    geometries = [
        xodr.Line(300.0),
        *_curve(400.0, arc_m=200.0, spiral_m=80.0, left=True),
        xodr.Line(250.0),
        *_curve(300.0, arc_m=160.0, spiral_m=80.0, left=False),
        xodr.Line(300.0),
        *_curve(500.0, arc_m=150.0, spiral_m=60.0, left=True),
        xodr.Line(200.0),
    ]
    length = _length(geometries)
    return _open_road(
        "multi_lane",
        DIVIDED_3_LANES,
        geometries,
        limits_forward=[(30.0, 100), (850.0, 80), (1700.0, 60)],
        limits_backward=[(length - 30.0, 60), (1500.0, 80), (900.0, 100)],
        centre_marks=[(0.0, "none")],  # the centre line runs inside the median
    )


def _ring_30_inner_50_east_west_40_north_south(lattice: Lattice) -> SpeedLimitRule:
    def speed_limit(a: Node, b: Node) -> int:
        if lattice.on_boundary(a, b):
            return 30
        return 50 if a[1] == b[1] else 40

    return speed_limit


def _lights_and_yields_on_the_side_edges(lattice: Lattice) -> ControlRule:
    """Lights at the 4-way junctions; at the T-junctions on the west and east edges the ring
    road has priority and the street from inside yields; all-way stops at the other ones."""

    def control(node: Node, approach: Approach) -> Control | None:
        if lattice.degree(node) == 4:
            return "light"
        if not lattice.on_x_boundary(node):
            return "stop"
        return "yield" if approach.horizontal else None

    return control


def town_grid() -> BuiltMap:
    """4x4 lattice: corner arcs, 8 all-way-stop T-junctions, 4 signalised 4-way junctions.

    Limits: 30 on the outer ring, 50 on inner east-west streets, 40 on inner north-south ones.
    """
    lattice = Lattice(xs=(0.0, 95.0, 200.0, 300.0), ys=(0.0, 105.0, 200.0, 290.0))

    def control(node: Node, approach: Approach) -> Control:
        return "light" if lattice.degree(node) == 4 else "stop"

    return _town("town_grid", lattice, _ring_30_inner_50_east_west_40_north_south(lattice), control)


def town_small() -> BuiltMap:
    """3x3 lattice with blocks of 70-130 m, for evaluation on a map unseen in training.

    The centre 4-way junction is signalised; the north and south T-junctions are all-way
    stops; at the west and east T-junctions the ring road has priority and the street from
    the centre yields. Limits: 30 on the ring, 50 on the streets through the centre.
    """
    lattice = Lattice(xs=(0.0, 75.0, 200.0), ys=(0.0, 130.0, 220.0))

    def speed_limit(a: Node, b: Node) -> int:
        return 30 if lattice.on_boundary(a, b) else 50

    return _town("town_small", lattice, speed_limit, _lights_and_yields_on_the_side_edges(lattice))


def town_mixed() -> BuiltMap:
    """4x3 lattice with blocks of 60-110 m and every control the towns have: a second town to
    train the detectors on beside ``town_grid``, driven by the experiment scenario
    ``sim/scenarios/experiments/town_mixed_tour.yaml`` (docs/perception.md, "A second training
    town"; not in the shipped weights' data).

    The two 4-way junctions are signalised, with yields and stops as in ``town_small``; limits
    as in ``town_grid``: 30 on the ring, 50 on the inner east-west street, 40 on the
    north-south ones.
    """
    lattice = Lattice(xs=(0.0, 60.0, 150.0, 260.0), ys=(0.0, 100.0, 170.0))
    return _town(
        "town_mixed",
        lattice,
        _ring_30_inner_50_east_west_40_north_south(lattice),
        _lights_and_yields_on_the_side_edges(lattice),
    )


MAPS: dict[str, Callable[[], BuiltMap]] = {
    "country_road": country_road,
    "town_grid": town_grid,
    "multi_lane": multi_lane,
    "town_small": town_small,
    "town_mixed": town_mixed,
}


# --- output ------------------------------------------------------------------------------------


def to_xml(built: BuiltMap) -> bytes:
    """Serialise deterministically, adding what scenariogeneration does not write."""
    root = built.odr.get_element()
    header = root.find("header")
    assert header is not None
    header.set("date", HEADER_DATE)
    for signal in root.iter("signal"):
        if signal.get("type") == TRAFFIC_LIGHT.type:
            signal.set("country", TRAFFIC_LIGHT.country)  # scenariogeneration upper-cases it
    _add_controllers(root, built.controllers)
    for geometry in root.iter("geometry"):
        _replace_degenerate_spiral(geometry)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _add_controllers(root: ET.Element, controllers: dict[int, list[str]]) -> None:
    """One ``<controller>`` per signalised junction, referenced from that junction."""
    if not controllers:
        return
    junctions = {int(j.get("id", "-1")): j for j in root.iter("junction")}
    position = next(i for i, child in enumerate(root) if child.tag == "junction")
    for controller_id, (junction_id, signal_ids) in enumerate(sorted(controllers.items()), 1):
        controller = ET.Element(
            "controller",
            {"id": str(controller_id), "name": f"controller_{junction_id}", "sequence": "0"},
        )
        for signal_id in signal_ids:
            ET.SubElement(controller, "control", {"signalId": signal_id, "type": "0"})
        root.insert(position, controller)
        position += 1
        ET.SubElement(junctions[junction_id], "controller", {"id": str(controller_id), "type": "0"})


def _replace_degenerate_spiral(geometry: ET.Element) -> None:
    """Write a spiral of constant curvature as the arc (or line) it is.

    The junction creator's clothoid fit makes the middle piece of every turn, and all three
    pieces of a straight connection, a spiral whose curvature does not change. CARLA evaluates
    spirals through the rate of change of curvature and places such a spiral's points wildly
    off the curve.
    """
    spiral = geometry.find("spiral")
    if spiral is None:
        return
    start, end = float(spiral.get("curvStart", "0")), float(spiral.get("curvEnd", "0"))
    if abs(end - start) > SPIRAL_CURVATURE_EPSILON:
        return
    geometry.remove(spiral)
    curvature = (start + end) / 2
    if abs(curvature) <= SPIRAL_CURVATURE_EPSILON:
        ET.SubElement(geometry, "line")
    else:
        ET.SubElement(geometry, "arc", {"curvature": repr(curvature)})


def write_maps(out_dir: Path, names: Sequence[str] = tuple(MAPS)) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out_dir / f"{name}.xodr"
        path.write_bytes(to_xml(MAPS[name]()))
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    for path in write_maps(args.out):
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    print(f"done in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
