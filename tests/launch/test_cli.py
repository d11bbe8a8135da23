"""The command line as a person uses it: real subprocesses, real files, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_writes_result_json(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli("run", "stop_signs", "--seed", "3", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    for key in (
        "scenario",
        "seed",
        "driving_score",
        "route_completion",
        "infraction_penalty",
        "infractions",
        "steps",
        "sim_time_s",
        "wall_time_s",
        "trajectory_sha256",
    ):
        assert key in result
    assert result["scenario"] == "stop_signs" and result["seed"] == 3
    assert "driving score" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["stack"]["planner"] == "rules"


def test_max_steps_stops_early_and_says_so(tmp_path: Path) -> None:
    proc = _cli("run", "town_loop", "--max-steps", "40", "--out", str(tmp_path), "-q")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["steps"] == 40
    assert result["status"].startswith("Stopped after --max-steps")


def test_scenarios_lists_the_built_in_ones() -> None:
    proc = _cli("scenarios")
    assert proc.returncode == 0
    assert "town_loop" in proc.stdout and "town_grid" in proc.stdout


def test_bench_sim_prints_steps_per_second() -> None:
    proc = _cli("bench", "sim", "--steps", "100")
    assert proc.returncode == 0, proc.stderr
    assert "world steps per second" in proc.stdout


BAD_SCENARIOS = {
    "malformed": (
        "name: x\nmap: town_grid\nroute: {waypoints: [[1, 2]]}\n",
        "field 'route.waypoints'",
    ),
    "unknown-map": (
        "name: x\nmap: moon\nroute: {random: {min_length_m: 100}}\n",
        "unknown map 'moon'",
    ),
    "not-opendrive": (
        "name: x\nmap: fake.xodr\nroute: {random: {min_length_m: 100}}\n",
        "not OpenDRIVE",
    ),
    # the country road is one lane each way with dead ends: going back along a lane is impossible
    "unplannable-route": (
        "name: x\nmap: country_road\nroute: {waypoints: [[150, -1.75], [20, -1.75]]}\n",
        "no drivable route",
    ),
    "off-road-waypoint": (
        "name: x\nmap: town_grid\nroute: {waypoints: [[150, 150], [20, 103.25]]}\n",
        "not within 6 m of a driving lane",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    text, needle = BAD_SCENARIOS[case]
    (tmp_path / "fake.xodr").write_text("<html>not a map</html>")
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(text)
    proc = _cli("run", str(scenario), "--out", str(tmp_path / "out"), "-q")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert needle in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr  # one line, no traceback
    assert not (tmp_path / "out" / "result.json").exists()


def test_unwritable_out_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = _cli("run", "stop_signs", "--out", str(blocker / "sub"), "-q")
    assert proc.returncode == 2
    assert "cannot write" in proc.stderr


def test_evaluate_writes_a_summary_and_every_episode(tmp_path: Path) -> None:
    proc = _cli("evaluate", "--scenarios", "stop_signs", "--seeds", "0..1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_routes"] == 2 and summary["seeds"] == [0, 1]
    assert (tmp_path / "stop_signs__seed1" / "result.json").exists()
    assert "mean ± 95 % interval over 2 routes" in proc.stdout


def test_evaluate_rejects_bad_seeds(tmp_path: Path) -> None:
    proc = _cli("evaluate", "--seeds", "5..2", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--seeds '5..2'" in proc.stderr


def test_learned_perception_runs_on_the_weights_named(tmp_path: Path) -> None:
    """``--detector``/``--classifier`` name other weights than the shipped ones; the stack
    records them, and the camera takes the detector's input size."""
    from launch.stack import StackConfig, build_stack
    from perception.export import save_model
    from perception.models.cnn_detector import CnnDetector, CnnDetectorConfig

    det = tmp_path / "cnn640.safetensors"
    save_model(CnnDetector(CnnDetectorConfig(input_hw=(480, 640), stride=8, space_to_depth=2)), det)
    stack = build_stack(StackConfig(perception="cnn", detector=str(det)))
    specs = stack.perceiver.camera_specs  # type: ignore[attr-defined]
    assert [(c.name, c.width, c.height) for c in specs] == [("front", 640, 480)]
    shipped = ROOT / "perception" / "weights"
    out = tmp_path / "run"
    proc = _cli("run", "red_lights", "--perception", "cnn", "--max-steps", "3", "-q",
                "--detector", str(shipped / "cnn.safetensors"),
                "--classifier", str(shipped / "stn.safetensors"), "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())["stack"]
    assert config["detector"].endswith("cnn.safetensors")
    assert config["classifier"].endswith("stn.safetensors")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--detector", "perception/weights/transformer.safetensors"], "holds a transformer model"),
        (["--detector", "nowhere.safetensors"], "nowhere.safetensors: no such weights file"),
        (["--classifier", "perception/weights/cnn.safetensors"], "expected stn"),
        (["--perception", "ground-truth", "--detector", "x"], "--perception is 'ground-truth'"),
    ],
    ids=["other-kind", "missing", "not-a-classifier", "ground-truth"],
)
def test_weights_that_cannot_serve_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    perception = [] if "--perception" in args else ["--perception", "cnn"]
    proc = _cli("run", "red_lights", *perception, *args, "--out", str(tmp_path / "o"), "-q")
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
    assert needle in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "o" / "result.json").exists()


def test_stack_config_from_flags_keeps_the_policy_as_given() -> None:
    from types import SimpleNamespace

    from launch.stack import StackConfig

    args = SimpleNamespace(
        backend="embedded", perception="cnn", planner="rl", controller="pid",
        policy="constant:1,0", detector="perception/weights/cnn.safetensors", classifier="",
    )  # fmt: skip
    cfg = StackConfig.from_args(args)
    assert cfg.policy == "constant:1,0" and cfg.classifier == ""
    assert cfg.detector == str((Path.cwd() / "perception/weights/cnn.safetensors").resolve())
