"""The built-in OpenDRIVE maps in sim/maps/ as CARLA's map library reads them.

They must load, carry the signals the simulator obeys (speed limits, stop and yield signs,
traffic lights governing the lanes that enter a junction), connect without gaps, leave no
dead ends in the towns, and be exactly what scripts/make_maps.py generates.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import carla
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MAPS_DIR = REPO_ROOT / "sim" / "maps"
MAKE_MAPS = REPO_ROOT / "scripts" / "make_maps.py"

MAP_NAMES = ("country_road", "town_grid", "multi_lane", "town_small", "town_mixed")
TOWNS = ("town_grid", "town_small", "town_mixed")
OPEN_ROADS = ("country_road", "multi_lane")

SPEED_LIMIT, STOP, YIELD, TRAFFIC_LIGHT = "274", "206", "205", "1000001"
CONTROL_TYPES = (TRAFFIC_LIGHT, STOP, YIELD)
EXPECTED_TYPES = {
    "country_road": {SPEED_LIMIT},
    "town_grid": {SPEED_LIMIT, STOP, TRAFFIC_LIGHT},
    "multi_lane": {SPEED_LIMIT},
    "town_small": {SPEED_LIMIT, STOP, YIELD, TRAFFIC_LIGHT},
    "town_mixed": {SPEED_LIMIT, STOP, YIELD, TRAFFIC_LIGHT},
}
EXPECTED_LIMITS_KMH = {
    "country_road": {30, 50, 60, 80},
    "town_grid": {30, 40, 50},
    "multi_lane": {60, 80, 100},
    "town_small": {30, 50},
    "town_mixed": {30, 40, 50},
}
MAX_SIGNAL_TO_JUNCTION_M = 25.0
MAX_GAP_M = 0.5

LaneKey = tuple[int, int]
"""(road id, lane id)"""


@functools.cache
def load(name: str) -> carla.Map:
    return carla.Map(name, (MAPS_DIR / f"{name}.xodr").read_text())


@functools.cache
def driving_waypoints(name: str) -> list[carla.Waypoint]:
    return [
        wp for wp in load(name).generate_waypoints(2.0) if wp.lane_type == carla.LaneType.Driving
    ]


def governed_waypoints(town: carla.Map, landmark: carla.Landmark) -> list[carla.Waypoint]:
    """Waypoints at the landmark's s on every lane its validity names."""
    waypoints = []
    for from_lane, to_lane in landmark.get_lane_validities():
        for lane_id in range(from_lane, to_lane + 1):
            wp = town.get_waypoint_xodr(landmark.road_id, lane_id, landmark.s)
            if lane_id != 0 and wp is not None:
                waypoints.append(wp)
    return waypoints


def found_on_lane(wp: carla.Waypoint, landmark: carla.Landmark) -> carla.Landmark:
    """The landmark as a vehicle driving on wp's lane finds it (with its waypoint set)."""
    upstream = wp.previous(10.0)[0]
    found = [
        lm for lm in upstream.get_landmarks_of_type(20.0, landmark.type) if lm.id == landmark.id
    ]
    assert found, f"landmark {landmark.id} not seen from lane {wp.road_id}/{wp.lane_id}"
    return found[0]


def distance_to_junction(wp: carla.Waypoint, limit_m: float) -> float | None:
    travelled = 0.0
    while travelled <= limit_m:
        if wp.is_junction:
            return travelled
        following = wp.next(1.0)
        if not following:
            return None
        wp, travelled = following[0], travelled + 1.0
    return None


def junction_ahead(wp: carla.Waypoint) -> int:
    for _ in range(int(MAX_SIGNAL_TO_JUNCTION_M) + 1):
        if wp.is_junction:
            return int(wp.junction_id)
        wp = wp.next(1.0)[0]
    raise AssertionError(f"no junction ahead of {wp.road_id}/{wp.lane_id}")


def incoming_lanes(town: carla.Map) -> dict[int, set[LaneKey]]:
    """Junction id -> (road, lane) of every driving lane that enters it."""
    lanes: dict[int, set[LaneKey]] = defaultdict(set)
    for wp in driving_waypoints(town.name):
        if not wp.is_junction:
            continue
        junction = wp.get_junction()
        for entry, _ in junction.get_waypoints(carla.LaneType.Driving):
            for before in entry.previous(0.5):
                lanes[int(junction.id)].add((before.road_id, before.lane_id))
    return lanes


def governed_lanes_by_junction(town: carla.Map, signal_type: str) -> dict[int, set[LaneKey]]:
    lanes: dict[int, set[LaneKey]] = defaultdict(set)
    for landmark in town.get_all_landmarks_of_type(signal_type):
        for wp in governed_waypoints(town, landmark):
            lanes[junction_ahead(wp)].add((wp.road_id, wp.lane_id))
    return lanes


def lane_end(wp: carla.Waypoint) -> carla.Waypoint:
    ahead = wp.next_until_lane_end(1.0)
    return ahead[-1] if ahead else wp


def test_every_map_is_present() -> None:
    assert {path.stem for path in MAPS_DIR.glob("*.xodr")} == set(MAP_NAMES)


@pytest.mark.parametrize("name", MAP_NAMES)
def test_map_loads_with_waypoints(name: str) -> None:
    assert driving_waypoints(name)


@pytest.mark.parametrize("name", MAP_NAMES)
def test_landmark_types_and_speed_limits(name: str) -> None:
    landmarks = load(name).get_all_landmarks()
    assert {lm.type for lm in landmarks} == EXPECTED_TYPES[name]
    limits = {round(lm.value) for lm in landmarks if lm.type == SPEED_LIMIT}
    assert limits == EXPECTED_LIMITS_KMH[name]
    assert all(lm.unit == "km/h" for lm in landmarks if lm.type == SPEED_LIMIT)


@pytest.mark.parametrize("name", OPEN_ROADS)
def test_open_roads_are_long_with_limits_both_ways(name: str) -> None:
    assert max(wp.s for wp in driving_waypoints(name)) >= 1500.0
    limits = load(name).get_all_landmarks_of_type(SPEED_LIMIT)
    for orientation in (carla.LandmarkOrientation.Positive, carla.LandmarkOrientation.Negative):
        values = {lm.value for lm in limits if lm.orientation == orientation}
        assert len(values) >= 3, orientation


@pytest.mark.parametrize("name", MAP_NAMES)
def test_every_landmark_governs_a_driving_lane_in_its_direction(name: str) -> None:
    town = load(name)
    for landmark in town.get_all_landmarks():
        waypoints = governed_waypoints(town, landmark)
        assert waypoints, f"landmark {landmark.id} governs no lane"
        for wp in waypoints:
            assert wp.lane_type == carla.LaneType.Driving
            along_s = landmark.orientation == carla.LandmarkOrientation.Positive
            assert (wp.lane_id < 0) == along_s, f"landmark {landmark.id} faces the wrong way"


@pytest.mark.parametrize("name", MAP_NAMES)
def test_signs_stand_on_the_right_roadside(name: str) -> None:
    town = load(name)
    for landmark in town.get_all_landmarks():
        location = landmark.transform.location
        on_road = town.get_waypoint(
            location, project_to_road=False, lane_type=carla.LaneType.Driving
        )
        assert on_road is None, f"landmark {landmark.id} stands on a driving lane"
        for wp in governed_waypoints(town, landmark):
            offset = location - wp.transform.location
            right = wp.transform.get_right_vector()
            assert offset.x * right.x + offset.y * right.y > wp.lane_width / 2


@pytest.mark.parametrize("name", TOWNS)
def test_lights_and_signs_govern_lanes_entering_a_junction(name: str) -> None:
    town = load(name)
    for signal_type in CONTROL_TYPES:
        for landmark in town.get_all_landmarks_of_type(signal_type):
            for wp in governed_waypoints(town, landmark):
                found = found_on_lane(wp, landmark)
                assert found.waypoint.lane_type == carla.LaneType.Driving
                assert (found.waypoint.road_id, found.waypoint.lane_id) == (wp.road_id, wp.lane_id)
                distance = distance_to_junction(found.waypoint, MAX_SIGNAL_TO_JUNCTION_M)
                assert distance is not None, f"{signal_type} {landmark.id} is not before a junction"


@pytest.mark.parametrize(
    ("name", "signalised"), [("town_grid", 4), ("town_small", 1), ("town_mixed", 2)]
)
def test_signalised_junctions_have_a_light_on_every_incoming_lane(
    name: str, signalised: int
) -> None:
    town = load(name)
    lit = governed_lanes_by_junction(town, TRAFFIC_LIGHT)
    assert len(lit) == signalised
    entering = incoming_lanes(town)
    for junction_id, lanes in lit.items():
        assert lanes == entering[junction_id]


@pytest.mark.parametrize("name", TOWNS)
def test_lights_of_a_junction_form_one_group(name: str) -> None:
    town = load(name)
    for light in town.get_all_landmarks_of_type(TRAFFIC_LIGHT):
        junction = junction_ahead(governed_waypoints(town, light)[0])
        group = town.get_landmark_group(light)
        assert light.id in {lm.id for lm in group}
        for other in group:
            assert junction_ahead(governed_waypoints(town, other)[0]) == junction


def test_town_grid_t_junctions_are_all_way_stops() -> None:
    town = load("town_grid")
    stops = governed_lanes_by_junction(town, STOP)
    t_junctions = {j: lanes for j, lanes in incoming_lanes(town).items() if len(lanes) == 3}
    assert len(t_junctions) == 8
    assert stops == t_junctions


@pytest.mark.parametrize("name", TOWNS)
def test_towns_have_no_dead_ends(name: str) -> None:
    topology = load(name).get_topology()
    starts = {(a.road_id, a.lane_id) for a, _ in topology}
    assert starts == {(wp.road_id, wp.lane_id) for wp in driving_waypoints(name)}
    for segment in topology:
        for wp in segment:
            assert lane_end(wp).next(1.0), f"dead end on {wp.road_id}/{wp.lane_id}"


@pytest.mark.parametrize("name", TOWNS)
def test_connected_lanes_meet_without_gaps(name: str) -> None:
    for entry, successor in load(name).get_topology():
        end = lane_end(entry).transform.location
        assert end.distance(successor.transform.location) < MAX_GAP_M
    for wp in driving_waypoints(name):
        for following in wp.next(1.0):
            step = wp.transform.location.distance(following.transform.location)
            assert abs(step - 1.0) < MAX_GAP_M, f"jump on {wp.road_id}/{wp.lane_id} at {wp.s}"


def test_road_marks() -> None:
    town_lane = load("town_grid").get_waypoint_xodr(1, -1, 20.0)
    assert town_lane.left_lane_marking.type == carla.LaneMarkingType.Broken
    assert town_lane.left_lane_marking.color == carla.LaneMarkingColor.White
    assert town_lane.right_lane_marking.type == carla.LaneMarkingType.Solid
    inner, middle = (load("multi_lane").get_waypoint_xodr(1, lane, 20.0) for lane in (-2, -3))
    assert inner.left_lane_marking.type == carla.LaneMarkingType.Solid
    assert middle.left_lane_marking.type == carla.LaneMarkingType.Broken


def test_generation_is_deterministic(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(MAKE_MAPS), "--out", str(tmp_path)], check=True)
    for name in MAP_NAMES:
        generated = (tmp_path / f"{name}.xodr").read_bytes()
        assert generated == (MAPS_DIR / f"{name}.xodr").read_bytes(), name
