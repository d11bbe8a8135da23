"""The map adapter (CARLA's map library, converted to our frame) and the route planner."""

import math
from pathlib import Path

import carla
import numpy as np
import pytest

from sim.errors import MapError, RouteError
from sim.map import RoadMap, to_carla, to_ours, yaw_to_ours
from sim.route import plan_route, random_route
from sim.scenario import BUILTIN_MAPS


@pytest.fixture(scope="module")
def town() -> RoadMap:
    return RoadMap.from_file(BUILTIN_MAPS / "town_grid.xodr")


def test_frame_conversion_round_trips_and_flips_y() -> None:
    loc = carla.Location(x=10.0, y=-3.0, z=1.0)
    assert to_ours(loc) == (10.0, 3.0, 1.0)
    back = to_carla(*to_ours(loc))
    assert (back.x, back.y, back.z) == (loc.x, loc.y, loc.z)
    # CARLA's yaw is clockwise in degrees; ours counter-clockwise in radians
    assert yaw_to_ours(90.0) == pytest.approx(-math.pi / 2)
    assert yaw_to_ours(-180.0) == pytest.approx(math.pi)


def test_lanes_are_in_opendrive_coordinates(town: RoadMap) -> None:
    # The middle street runs east at y = 105; right-hand traffic drives east in the lane
    # 1.75 m south of the centre line (OpenDRIVE y north), west in the lane north of it.
    east, s_e = town.nearest_segment(150.0, 103.25, yaw=0.0)
    west, s_w = town.nearest_segment(150.0, 106.75, yaw=math.pi)
    x, y, yaw = town.lane_point(east, s_e)
    assert (x, y) == pytest.approx((150.0, 103.25), abs=0.05)
    assert yaw == pytest.approx(0.0, abs=1e-3)
    x, y, yaw = town.lane_point(west, s_w)
    assert (x, y) == pytest.approx((150.0, 106.75), abs=0.05)
    assert abs(math.remainder(yaw - math.pi, 2 * math.pi)) < 1e-3


def test_town_has_signalised_and_stop_junctions(town: RoadMap) -> None:
    controls: dict[int, set[str]] = {}
    for ap in town.approaches.values():
        controls.setdefault(ap.junction, set()).add(ap.control)
    assert sum(c == {"light"} for c in controls.values()) >= 4
    assert any(c == {"stop"} for c in controls.values())
    # a stop line lies at the end of its lane, where the junction begins, facing the traffic
    for ap in town.approaches.values():
        nxt = town.segments[town.segments[ap.segment].successors[0]]
        assert math.hypot(nxt.xy[0, 0] - ap.stop_x, nxt.xy[0, 1] - ap.stop_y) < 0.1
    limits = {v for seg in town.segments for _, v in seg.speed_signs}
    assert limits == {30.0, 40.0, 50.0}


def test_speed_limit_follows_the_last_sign(town: RoadMap) -> None:
    seg_i, _ = town.nearest_segment(150.0, 103.25, yaw=0.0)
    seg = town.segments[seg_i]
    assert seg.speed_signs, "the middle street has a limit sign after the junction"
    s_sign, value = seg.speed_signs[0]
    limits = town.speed_limits_kmh(seg_i)
    assert np.all(limits[seg.s >= s_sign] == value)


def test_not_opendrive_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.xodr"
    bad.write_text("hello, I am a text file\n")
    with pytest.raises(MapError, match="not OpenDRIVE"):
        RoadMap.from_file(bad)


def test_route_through_waypoints(town: RoadMap) -> None:
    route = plan_route(town, [(20.0, 103.25), (150.0, 103.25)])
    assert route.length_m == pytest.approx(130.0, abs=0.5)
    assert np.allclose(np.diff(route.s), 1.0, atol=1e-6) or route.s[-1] - route.s[-2] <= 1.0
    assert set(route.junction.tolist()) - {-1} == {503}  # straight through one junction
    # the lights junction's stop line: the first junction sample is within a step after it
    first = int(np.argmax(route.junction >= 0))
    assert route.xy[first, 0] == pytest.approx(83.0, abs=1.0)


def test_route_with_a_left_turn_goes_round_the_corner(town: RoadMap) -> None:
    route = plan_route(town, [(150.0, 103.25), (201.75, 150.0)])
    assert route.yaw[0] == pytest.approx(0.0, abs=0.05)
    assert route.yaw[-1] == pytest.approx(math.pi / 2, abs=0.05)
    # no jump between consecutive samples
    assert np.max(np.hypot(*np.diff(route.xy, axis=0).T)) <= 1.0 + 1e-6


def test_unreachable_and_off_road_waypoints(town: RoadMap) -> None:
    with pytest.raises(RouteError, match="not within"):
        plan_route(town, [(20.0, 103.25), (150.0, 150.0)])  # inside a block
    with pytest.raises(RouteError, match="at least two"):
        plan_route(town, [(20.0, 103.25)])


def test_random_route_is_drawn_from_the_seed(town: RoadMap) -> None:
    a = random_route(town, np.random.default_rng(3), 400.0)
    b = random_route(town, np.random.default_rng(3), 400.0)
    c = random_route(town, np.random.default_rng(4), 400.0)
    assert a.length_m >= 400.0
    assert np.array_equal(a.xy, b.xy)
    assert not np.array_equal(a.xy[:10], c.xy[:10])


def test_a_map_exported_by_carla_runs_unchanged(tmp_path: Path) -> None:
    # to_opendrive() is what a server's world.get_map() offers; the same text must load here
    text = (BUILTIN_MAPS / "town_small.xodr").read_text()
    exported = carla.Map("exported", text).to_opendrive()
    path = tmp_path / "Exported.xodr"
    path.write_text(exported)
    m = RoadMap.from_file(path)
    assert len(m.approaches) > 0 and len(m.lights) > 0
