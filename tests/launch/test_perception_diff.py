"""scripts/perception_diff.py: what makes one interval of disagreement."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "perception_diff.py"
spec = importlib.util.spec_from_file_location("perception_diff", SCRIPT)
assert spec is not None and spec.loader is not None
perception_diff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(perception_diff)


def test_an_interval_ends_when_a_value_changes_not_a_distance() -> None:
    what = perception_diff._what
    assert what("perceived red@12m, truth green@12m") == what("perceived red@11m, truth green@9m")
    assert what("missed: truth has one at 23 m") == what("missed: truth has one at 19 m")
    assert what("missed: truth has one at 23 m") != what("phantom at 23 m")
    # town_small_tour seed 1 (2026-12-07): the route's limit went from 30 to 50 inside one
    # interval of a wrong "10", which was printed as "truth 30" throughout
    assert what("perceived 10 km/h, truth 30") != what("perceived 10 km/h, truth 50")
    assert what("perceived 10 km/h, truth 30") != what("perceived 20 km/h, truth 30")
