"""Scenario files: every shipped one validates; bad ones give one line naming file and field."""

from pathlib import Path

import pytest

from sim.errors import ScenarioError
from sim.scenario import builtin_scenarios, load_scenario

GOOD = """
name: tiny
map: town_grid
route:
  waypoints: [[20, 103.25], [150, 103.25]]
"""


def test_shipped_scenarios_validate_and_cover_the_required_situations() -> None:
    names = builtin_scenarios()
    assert len(names) >= 8
    scenarios = [load_scenario(n) for n in names]
    events = {e.type for sc in scenarios for e in sc.events}
    assert events == {"lead_vehicle_brakes", "pedestrian_crossing", "parked_vehicle"}
    assert any(sc.route.random is not None for sc in scenarios)
    assert any(sc.traffic.vehicles >= 40 for sc in scenarios)  # dense traffic


def test_experiment_scenarios_load_by_path_and_stay_out_of_the_built_ins() -> None:
    # Built-in scenarios are the closed loop's routes and the shipped weights' training data.
    folder = Path(__file__).parents[2] / "sim" / "scenarios" / "experiments"
    files = sorted(folder.glob("*.yaml"))
    assert "town_mixed_tour" in [p.stem for p in files]
    for p in files:
        assert load_scenario(str(p)).name == p.stem  # validates, map and all
        assert p.stem not in builtin_scenarios()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD + "traffic: {vehicles: -3}\n", "field 'traffic.vehicles'"),
        (GOOD + "trafic: {vehicles: 3}\n", "field 'trafic': unknown field"),
        (GOOD + "events: [{type: meteor, at_route_m: 3}]\n", "unknown event type"),
        (GOOD + "events: [{type: parked_vehicle}]\n", "field 'events.0.at_route_m'"),
        (GOOD.replace("town_grid", "atlantis"), "unknown map 'atlantis'"),
        (GOOD + "dt: 2\n", "field 'dt'"),
        ("name: x\nmap: town_grid\nroute: {}\n", "exactly one of 'waypoints' or 'random'"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "a scenario is a mapping"),
    ],
)
def test_bad_files_name_the_file_and_the_field(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert needle in message
    assert str(path) in message
    assert "\n" not in message


def test_map_path_relative_to_the_scenario(tmp_path: Path) -> None:
    src = Path(__file__).parents[2] / "sim" / "maps" / "town_small.xodr"
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "mine.xodr").write_text(src.read_text())
    p = _write(tmp_path, GOOD.replace("town_grid", "maps/mine.xodr"))
    assert load_scenario(p).map_path() == tmp_path / "maps" / "mine.xodr"
    missing = _write(tmp_path, GOOD.replace("town_grid", "maps/none.xodr"))
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(missing)


def test_unknown_scenario_name_lists_the_built_in_ones() -> None:
    with pytest.raises(ScenarioError, match=r"built-in scenarios are .*town_loop"):
        load_scenario("no_such_scenario")
