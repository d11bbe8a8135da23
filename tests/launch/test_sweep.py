"""Sweeps: scenarios × seeds as Ray tasks on a local Ray, a failing task reported, the others
kept; the same in process without Ray."""

from __future__ import annotations

import json
from pathlib import Path

from launch.evaluate import format_table
from launch.stack import StackConfig
from launch.sweep import SweepSettings, sweep
from sim.recording import read_recording
from tests.launch.recording_helpers import cli

SCENARIOS = ("town_loop", "stop_signs", "red_lights", "free_drive_limits")

# A parked car 5 km along a route of ~100 m: the world refuses it when the episode starts,
# inside the worker, after every file has been checked.
FAILING = """\
name: failing_at_start
map: town_grid
route:
  random: {min_length_m: 100}
events:
  - {type: parked_vehicle, at_route_m: 5000}
"""


def test_ray_sweep_of_4_scenarios_by_3_seeds_on_2_workers(tmp_path: Path) -> None:
    bad = tmp_path / "failing_at_start.yaml"
    bad.write_text(FAILING)
    out = tmp_path / "sweep"
    proc = cli(
        "evaluate", "--scenarios", *SCENARIOS, str(bad), "--seeds", "0..2", "--workers", "2",
        "--max-steps", "30", "--record", "--report", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # one scenario failed: the sweep says so
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_routes"] == 12 and summary["workers"] == 2
    done = {(e["scenario"], e["seed"]) for e in summary["episodes"]}
    assert done == {(s, seed) for s in SCENARIOS for seed in range(3)}
    assert {(f["scenario"], f["seed"]) for f in summary["failures"]} == {
        ("failing_at_start", seed) for seed in range(3)
    }
    assert all("beyond the route's length" in f["error"] for f in summary["failures"])
    assert "FAILED failing_at_start seed 0" in proc.stdout
    for s in SCENARIOS:
        for seed in range(3):
            d = out / f"{s}__seed{seed}"
            assert json.loads((d / "result.json").read_text())["steps"] == 30
            rec = read_recording(d / "recording.mcap")
            assert rec.complete and rec.count("/control") == 30 and rec.config["seed"] == seed
    assert (out / "report" / "report.html").is_file()


def test_in_process_sweep_keeps_the_others_when_one_fails(tmp_path: Path) -> None:
    bad = tmp_path / "failing_at_start.yaml"
    bad.write_text(FAILING)
    ev, failures = sweep(
        ["stop_signs", str(bad)], [0, 1], StackConfig(), tmp_path, SweepSettings(max_steps=10)
    )
    assert [(r.scenario, r.seed) for r in ev.results] == [("stop_signs", 0), ("stop_signs", 1)]
    assert len(failures) == 2 and failures[0]["error"].startswith("ScenarioError")
    assert json.loads((tmp_path / "summary.json").read_text())["n_routes"] == 2
    table = format_table(ev)  # an episode cut by --max-steps is not called "Failed"
    assert table.count("Stopped after --max-steps 10") == 2 and "Failed" not in table
