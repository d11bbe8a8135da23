"""Replay: closed loop is bit-identical on every shipped scenario and names the first frame
where a change makes it diverge; open loop reproduces unchanged stages exactly; bad input gets
one line and exit status 2."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from launch.replay import closed_loop, first_difference, open_loop
from launch.stack import StackConfig
from sim.recording import McapSink, read_recording
from sim.recording import writer as writer_module
from sim.scenario import builtin_scenarios
from tests.launch.recording_helpers import cli, record

STEPS = 40


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "town_loop.mcap"
    record(path, "town_loop", steps=120)
    return path


@pytest.mark.parametrize("scenario", builtin_scenarios())
def test_closed_loop_replay_of_every_shipped_scenario_is_bit_identical(
    scenario: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{scenario}.mcap"
    record(path, scenario, steps=STEPS, seed=3)
    report = closed_loop(read_recording(path), StackConfig(), {}, None)
    assert report.identical, report.summary
    assert report.frames == STEPS + 1
    assert report.messages_compared > 9 * STEPS


def test_closed_loop_command_says_bit_identical(recorded: Path) -> None:
    proc = cli("replay", str(recorded), "--mode", "closed-loop", "--max-steps", "60")
    assert proc.returncode == 0, proc.stderr
    assert "bit-identical" in proc.stdout and "first 60 steps of 120" in proc.stdout


def test_a_changed_setting_diverges_at_a_named_frame(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "div.json"
    proc = cli(
        "replay",
        str(recorded),
        "--mode",
        "closed-loop",
        "--set",
        "planning.s0=2.0",
        "--out",
        str(out),
    )
    assert proc.returncode == 1, proc.stderr
    assert "diverged at frame" in proc.stdout
    d = json.loads(out.read_text())["divergence"]
    topics = [x["topic"] for x in d["differences"]]
    assert topics[0] == "/plan"  # the planner changed first; the world follows a tick later
    assert d["frame"] > 0
    # one frame earlier everything still matched
    assert "/tf/ego" not in topics


def test_open_loop_of_unchanged_stages_reproduces_the_recording(recorded: Path) -> None:
    r = open_loop(read_recording(recorded), StackConfig(), {}, "all", None)
    assert r["frames"] == 120
    assert r["perception"]["frames_differing"] == 0
    assert r["perception"]["bev_map"]["recorded"] == r["perception"]["bev_map"]["replayed"]
    assert r["planning"]["path_max_m_difference"]["max"] == 0.0
    assert r["planning"]["speed_now_mps_difference"]["frames_differing"] == 0
    assert r["control"]["accel_mps2_difference"]["max"] == 0.0
    assert r["control"]["steer_rad_difference"]["max"] == 0.0


def test_open_loop_with_a_new_setting_reports_per_stage_differences(recorded: Path) -> None:
    proc = cli("replay", str(recorded), "--rerun", "all", "--set", "control.kp=3.0")
    assert proc.returncode == 0, proc.stderr
    r = open_loop(read_recording(recorded), StackConfig(), {"control": {"kp": 3.0}}, "all", None)
    assert r["perception"]["frames_differing"] == 0
    assert r["planning"]["path_max_m_difference"]["max"] == 0.0
    assert r["control"]["accel_mps2_difference"]["frames_differing"] > 0
    assert "frames with a different control" in proc.stdout


def test_open_loop_of_one_stage_only_reports_that_stage(recorded: Path) -> None:
    r = open_loop(read_recording(recorded), StackConfig(), {}, "planning", 30)
    assert r["frames"] == 30 and r["rerun"] == ["planning"]
    assert "perception" not in r and "control" not in r


def test_ground_truth_detections_score_full_map(tmp_path: Path) -> None:
    path = tmp_path / "dense.mcap"
    record(path, "dense_traffic", steps=60)
    r = open_loop(read_recording(path), StackConfig(), {}, "perception", None)
    bev = r["perception"]["bev_map"]
    assert bev["per_class_replayed"]["vehicle"] == pytest.approx(1.0)
    # a perceiver that sees only half as far misses the far vehicles: recall, hence AP, drops
    r = open_loop(
        read_recording(path), StackConfig(), {"perception": {"range_m": 25.0}}, "perception", None
    )
    assert r["perception"]["bev_map"]["per_class_replayed"]["vehicle"] < 1.0
    assert r["perception"]["frames_differing"] > 0


def test_first_difference_names_the_field() -> None:
    a = {"ego": {"x": 1.0, "y": 2.0}, "events": []}
    b = {"ego": {"x": 1.0, "y": 2.5}, "events": []}
    assert first_difference(a, b) == "ego.y: recorded 2.0, replayed 2.5"


# ------------------------------------------------------------------------------- bad input
def test_a_file_that_is_not_mcap_is_refused_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mcap"
    bad.write_text("just some text\n")
    proc = cli("replay", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "not an MCAP file" in proc.stderr


def test_a_recording_of_an_incompatible_version_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "future.mcap"
    monkeypatch.setattr(writer_module, "FORMAT_VERSION", 99)
    record(path, "town_loop", steps=5)
    monkeypatch.undo()
    for command in (("replay", str(path)), ("report", str(path), "--out", str(tmp_path / "r"))):
        proc = cli(*command)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0
        assert "format version 99 is newer than the versions this drivestack reads (2 and 3)" in (
            proc.stderr
        )


def test_an_mcap_file_from_elsewhere_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.mcap"
    sink = McapSink(path)
    sink.write("/chatter", "drivestack.Control", 0, b"{}")
    sink.close()
    proc = cli("replay", str(path))
    assert proc.returncode == 2
    assert "not a drivestack recording" in proc.stderr


def test_a_truncated_recording_is_read_up_to_its_last_complete_chunk(tmp_path: Path) -> None:
    full = tmp_path / "full.mcap"
    settings = writer_module.RecorderSettings(chunk_size_bytes=32768)
    record(full, "town_loop", steps=200, settings=settings)
    data = full.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    rec = read_recording(cut)
    assert not rec.complete and "truncated" in rec.status
    assert 0 < rec.count("/control") < 200
    proc = cli("replay", str(cut), "--mode", "closed-loop")
    assert proc.returncode == 0, proc.stderr
    assert "truncated" in proc.stderr and proc.stderr.count("\n") == 1
    assert "bit-identical" in proc.stdout and "last complete chunk" in proc.stdout
    stub = tmp_path / "stub.mcap"
    stub.write_bytes(data[:20])  # the magic and a few bytes of the header
    proc = cli("replay", str(stub))
    assert proc.returncode == 2
    assert "cut before its first record" in proc.stderr


def test_a_bad_setting_is_refused_in_one_line(recorded: Path) -> None:
    proc = cli("replay", str(recorded), "--set", "planning.warp_speed=9")
    assert proc.returncode == 2
    assert "planning.warp_speed: no such setting" in proc.stderr
    proc = cli("replay", str(recorded), "--set", "steering=1")
    assert proc.returncode == 2
    assert "expected STAGE.FIELD=VALUE" in proc.stderr


def test_a_learned_perceivers_recording_from_before_its_second_camera_replays(
    tmp_path: Path,
) -> None:
    # A recording made with learned perception before the classifier had a camera of its own
    # (2026-12-06) holds one camera and no read_scale: replayed, the perceiver reads that
    # camera's frame for its crops, as it did; --set can change a learned perceiver's settings.
    from launch.record import build_configured_stack, record_episode
    from launch.replay import _recorded_settings
    from launch.stack import build_stack, make_world
    from perception.perceiver import LearnedPerceiver
    from sim.scenario import load_scenario

    cfg = StackConfig(perception="cnn")
    path = tmp_path / "cnn.mcap"
    stack = build_stack(cfg)
    record_episode(path, make_world(cfg.backend), stack, cfg, load_scenario("red_lights"), 0, 4)
    rec = read_recording(path)
    assert rec.config["settings"]["perception"]["read_scale"] == 2
    assert _recorded_settings(rec, cfg)["perception"]["read_scale"] == 2
    old = rec.config["settings"]["perception"].pop("read_scale")
    assert old == 2 and _recorded_settings(rec, cfg)["perception"]["read_scale"] == 1
    replayed = build_configured_stack(cfg, _recorded_settings(rec, cfg)).perceiver
    assert isinstance(replayed, LearnedPerceiver) and replayed.read_camera == "front"
    assert [c.name for c in replayed.camera_specs] == ["front"]
    obs = next(iter(rec.observations()))
    del obs.sensors["front_read"]  # as a one-camera recording holds
    assert replayed.update(obs).t == obs.t
    changed = build_configured_stack(cfg, None, {"perception": {"score_threshold": "0.5"}})
    assert isinstance(changed.perceiver, LearnedPerceiver)
    assert changed.perceiver.cfg.score_threshold == 0.5


def test_an_open_loop_replay_of_learned_perception_from_exact_pixels_reproduces_it(
    tmp_path: Path,
) -> None:
    # Recorded with lossless images, the perceiver's frames come back exactly (each camera's
    # image once, on the frame it was taken; held between): re-run, it gives the recorded
    # outputs. Its latency, the run's timing, is no output (every detection tick's differs).
    from launch.record import record_episode
    from launch.stack import build_stack, make_world
    from sim.recording import RecorderSettings
    from sim.scenario import load_scenario

    cfg = StackConfig(perception="cnn")
    path = tmp_path / "cnn.mcap"
    png = RecorderSettings(image_format="png")
    world, stack, scenario = (
        make_world(cfg.backend),
        build_stack(cfg),
        load_scenario("lead_vehicle_brakes"),
    )
    record_episode(path, world, stack, cfg, scenario, 0, 20, settings=png)
    rec = read_recording(path)
    assert rec.count("/camera/front_read/image") == 11  # frames 0, 2, ..., 20
    r = open_loop(rec, cfg, {}, "perception", None)
    assert r["frames"] == 20 and r["perception"]["frames_differing"] == 0
    assert r["perception"]["objects_per_frame"]["replayed"] > 0


def test_an_open_loop_replay_of_learned_perception_needs_the_recorded_depth(
    tmp_path: Path,
) -> None:
    # red_lights seed 0: in its last 10 of 100 frames the live perceiver places a light by the
    # depth image (the shipped CNN of 2026-12-06 morning from the 54th). Recorded with it, a
    # re-run gives the recorded outputs on every frame; the same recording read without its
    # depth channels does not, and the report says what it lacks.
    from launch.record import record_episode
    from launch.replay import format_open_loop
    from launch.stack import build_stack, make_world
    from sim.recording import RecorderSettings
    from sim.scenario import load_scenario

    cfg = StackConfig(perception="cnn")
    path = tmp_path / "cnn.mcap"
    settings = RecorderSettings(image_format="png", depth=True)
    world, stack = make_world(cfg.backend), build_stack(cfg)
    record_episode(path, world, stack, cfg, load_scenario("red_lights"), 0, 100, settings=settings)
    rec = read_recording(path)
    assert rec.count("/camera/front/depth") == rec.count("/camera/front/image") == 51
    r = open_loop(rec, cfg, {}, "perception", None)
    assert r["frames"] == 100 and r["perception"]["frames_differing"] == 0
    assert r["perception"]["camera_inputs"] == {"images": "png", "depth": True}
    for name in ("front", "front_read"):
        del rec.messages[f"/camera/{name}/depth"]
    r = open_loop(rec, cfg, {}, "perception", None)
    assert r["perception"]["frames_differing"] > 0
    assert "png images, no depth (--record-images png --record-depth" in format_open_loop(r)


def test_image_map_ignores_boxes_too_small_or_hidden_to_score(recorded: Path) -> None:
    # As `perception eval` (COCO's crowd regions): a car 2 px tall or 90 % hidden is not
    # scored, and a detection on it is neither a hit nor a false positive (both outscore the
    # detection of the one car scored: as false positives they would take its AP to 1/3).
    from launch.replay import OpenLoopSettings, _APAccumulator, _image_frame
    from sim.messages import ActorKind, CameraFrame, DetectedObject, PerceptionOutput

    boxes = [(100, 100, 140, 120), (10, 50, 16, 52), (200, 90, 230, 110)]  # seen, small, hidden
    cam = CameraFrame(
        t=0.0,
        frame=0,
        rgb=np.zeros((240, 320, 3), np.uint8),
        K=np.eye(3),
        pose=np.eye(4),
        boxes=np.array(boxes, np.float64),
        box_class=np.array([1, 1, 1]),
        box_occlusion=np.array([0.0, 0.0, 0.9]),
    )

    def det(box: tuple[float, float, float, float], score: float) -> DetectedObject:
        return DetectedObject(0, ActorKind.VEHICLE, 10, 0, 0, 0, 4.6, 1.9, score, box)

    objects = (
        det((100, 100, 140, 121), 0.9),
        det((10, 50, 16, 52), 0.95),
        det((201, 90, 230, 110), 0.97),
    )
    p = PerceptionOutput(0.0, 0, objects, (), (), None)
    obs = next(iter(read_recording(recorded).observations()))  # its camera replaced below
    obs = dataclasses.replace(obs, t=0.0, frame=0, sensors={"front": cam})
    scored, everything = _APAccumulator(), _APAccumulator()
    assert _image_frame(scored, obs, p, OpenLoopSettings())
    assert scored.truth == {1: 1, 2: 0} and scored.hits[1] == [True]
    assert scored.mean_ap()[0] == pytest.approx(1.0)
    keep_all = OpenLoopSettings(image_min_height_px=0.0, image_hidden=1.0)
    assert _image_frame(everything, obs, p, keep_all)
    assert everything.truth == {1: 3, 2: 0} and everything.hits[1] == [True, True, True]


def test_a_replay_keeps_the_recorded_weights_unless_perception_is_replaced() -> None:
    from types import SimpleNamespace

    from launch.replay import _stack_config

    stack = StackConfig(perception="cnn", detector="a/cnn.safetensors").to_dict()
    rec: Any = SimpleNamespace(config={"stack": stack}, path="r.mcap")

    def args(**kw: str) -> Any:
        base = {"perception": None, "planner": None, "controller": None}
        return SimpleNamespace(**(base | {"detector": "", "classifier": ""} | kw))

    assert _stack_config(rec, args()).detector == "a/cnn.safetensors"
    named = _stack_config(rec, args(detector="b.safetensors")).detector
    assert named == str(Path("b.safetensors").resolve())  # as run and evaluate keep it
    other = _stack_config(rec, args(perception="transformer"))
    assert other.perception == "transformer" and other.detector == ""
    old: Any = SimpleNamespace(config={"stack": {"backend": "embedded", "perception": "cnn"}})
    assert _stack_config(old, args()) == StackConfig(perception="cnn")  # recorded before
