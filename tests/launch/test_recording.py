"""Recording to MCAP: channels and schemas as read by the mcap library, exact round trips,
camera images, and files left by runs that were interrupted or killed."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from launch.record import record_episode
from launch.stack import StackConfig, build_stack, make_world
from sim.messages import Observation
from sim.recording import Recorder, RecorderSettings, camera_topics, codec, read_recording
from sim.recording.derive import Deriver
from sim.recording.writer import (
    _ENCODER,
    FORMAT_VERSION,
    RESULT_TOPIC,
    STAGE_TOPICS,
    STATIC_TOPICS,
    WORLD_TOPICS,
    depth_topic,
)
from sim.route import Route
from sim.scenario import load_scenario
from tests.launch.recording_helpers import CAMERA_SCENARIO, ROOT, cli, record

STEPS = 40

SCHEMAS = {
    "/tf/ego": "foxglove.FrameTransform",
    "/scene/ground_truth": "foxglove.SceneUpdate",
    "/scene/stack": "foxglove.SceneUpdate",
    "/map": "foxglove.SceneUpdate",
    "/observation": "drivestack.Observation",
    "/perception": "drivestack.PerceptionOutput",
    "/plan": "drivestack.Plan",
    "/control": "drivestack.Control",
    "/events": "drivestack.Events",
    "/metrics": "drivestack.Metrics",
    "/scenario": "drivestack.Scenario",
    "/config": "drivestack.Config",
    RESULT_TOPIC: "drivestack.Result",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``run town_loop --record`` through the command line, as a user would."""
    out = tmp_path_factory.mktemp("rec")
    path = out / "town_loop.mcap"
    proc = cli(
        "run",
        "town_loop",
        "--max-steps",
        str(STEPS),
        "--out",
        str(out),
        "-q",
        "--record",
        str(path),
    )
    assert proc.returncode == 0, proc.stderr
    assert str(path) in proc.stdout
    return path


def test_one_message_per_channel_per_tick_with_the_named_schemas(recorded: Path) -> None:
    with recorded.open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        counts = {
            ch.topic: summary.statistics.channel_message_counts[ch.id]
            for ch in summary.channels.values()
        }
        schemas = {ch.topic: summary.schemas[ch.schema_id].name for ch in summary.channels.values()}
        encodings = {ch.message_encoding for ch in summary.channels.values()}
        schema_encodings = {s.encoding for s in summary.schemas.values()}
        frames: dict[str, list[int]] = {}
        for _, channel, message in reader.iter_messages(log_time_order=False):
            d = json.loads(message.data)  # every message is JSON
            if channel.topic in ("/observation", "/control", "/metrics"):
                frames.setdefault(channel.topic, []).append(d["frame"])
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
    for topic in WORLD_TOPICS:
        assert counts[topic] == STEPS + 1, topic  # frames 0..STEPS
    for topic in STAGE_TOPICS:
        assert counts[topic] == STEPS, topic  # the stack ran at frames 0..STEPS-1
    for topic in (*STATIC_TOPICS, RESULT_TOPIC):
        assert counts[topic] == 1, topic
    for topic, name in SCHEMAS.items():
        assert schemas[topic] == name
    assert frames["/observation"] == list(range(STEPS + 1))
    assert frames["/control"] == list(range(STEPS))
    assert encodings == {"json"} and schema_encodings == {"jsonschema"}
    assert meta["drivestack"]["format_version"] == str(FORMAT_VERSION)
    assert meta["drivestack.end"]["status"] == f"Stopped after --max-steps {STEPS}"


def test_foxglove_messages_have_the_fields_foxglove_reads(recorded: Path) -> None:
    rec = read_recording(recorded)
    tf = rec.json("/tf/ego")[5]
    obs = rec.json("/observation")[5]
    assert (tf["parent_frame_id"], tf["child_frame_id"]) == ("map", "ego")
    assert tf["translation"]["x"] == obs["ego"]["x"]
    assert tf["rotation"]["w"] == pytest.approx(np.cos(obs["ego"]["yaw"] / 2))
    scene = rec.json("/scene/ground_truth")[5]
    (entity,) = scene["entities"]
    assert entity["frame_id"] == "map" and entity["cubes"]
    cube = entity["cubes"][0]
    assert set(cube) == {"pose", "size", "color"}
    stack = rec.json("/scene/stack")[5]
    assert {e["id"] for e in stack["entities"]} == {"detections", "plan"}
    assert len(rec.json("/map")[0]["entities"][0]["lines"]) > 10  # lane centrelines


def test_decoded_messages_equal_the_recorded_ones_exactly(recorded: Path) -> None:
    """Re-encoding what was read back gives the recorded bytes: nothing was rounded."""
    rec = read_recording(recorded)
    static = rec.static
    observations = list(rec.observations())
    assert len(observations) == STEPS + 1
    for obs, raw in zip(observations, rec.messages["/observation"], strict=True):
        assert codec.encode_observation(obs, static).encode() == raw
    for p, raw in zip(rec.perceptions(), rec.messages["/perception"], strict=True):
        assert codec.encode_perception(p).encode() == raw
    for plan, raw in zip(rec.plans(), rec.messages["/plan"], strict=True):
        assert codec.encode_plan(plan).encode() == raw
    last = observations[-1]
    assert last.ego.x == json.loads(rec.messages["/observation"][-1])["ego"]["x"]
    assert last.ground_truth.lights[0].state in range(5)


def test_camera_frames_become_compressed_images(tmp_path: Path) -> None:
    scenario = tmp_path / "camera_small.yaml"
    scenario.write_text(CAMERA_SCENARIO)
    path = tmp_path / "cam.mcap"
    steps = record(path, str(scenario), steps=6, settings=RecorderSettings(image_format="png"))
    rec = read_recording(path)
    image, calib, tf = camera_topics("front")
    assert rec.cameras == ["front"]
    for topic in (image, calib, tf):
        assert rec.count(topic) == steps + 1
    assert rec.schemas[image] == "foxglove.CompressedImage"
    assert rec.schemas[calib] == "foxglove.CameraCalibration"
    msg = rec.json(image)[0]
    assert msg["format"] == "png" and msg["frame_id"] == "camera_front"
    cal = rec.json(calib)[0]
    assert (cal["width"], cal["height"]) == (160, 120) and len(cal["P"]) == 12
    obs = list(rec.observations())
    cam = obs[3].sensors["front"]
    assert cam.rgb.shape == (120, 160, 3) and cam.rgb.dtype == np.uint8
    assert cam.rgb.std() > 0  # a real picture, not the black placeholder
    assert cam.boxes is not None and cam.box_class is not None


def test_a_camera_with_a_sensor_tick_writes_each_image_once_and_reads_back_held(
    tmp_path: Path,
) -> None:
    # 0.1 s between captures on a 0.05 s tick: taken at frames 0, 2, 4, 6 and held between
    scenario = tmp_path / "camera_small.yaml"
    scenario.write_text(CAMERA_SCENARIO.replace("height: 120}", "height: 120, sensor_tick: 0.1}"))
    path = tmp_path / "cam.mcap"
    steps = record(path, str(scenario), steps=6, settings=RecorderSettings(image_format="png"))
    rec = read_recording(path)
    image, calib, tf = camera_topics("front")
    for topic in (image, calib, tf):
        assert rec.count(topic) == 4
    obs = list(rec.observations())
    assert len(obs) == steps + 1 == 7
    taken = [o.sensors["front"].frame for o in obs]
    assert taken == [0, 0, 2, 2, 4, 4, 6]
    pictures = [p for p in rec.images("front") if p is not None]
    for o in obs:
        cam = o.sensors["front"]
        assert cam.t == pytest.approx(cam.frame * 0.05)
        assert cam.rgb.std() > 0
        np.testing.assert_array_equal(cam.rgb, pictures[cam.frame // 2])
    assert not np.array_equal(pictures[0], pictures[3])  # the ego moved


def test_depth_is_recorded_when_asked_as_a_raw_32fc1_image_equal_to_the_rendered_one(
    tmp_path: Path,
) -> None:
    # taken at frames 0, 2, 4, 6 and held between, as the images are
    scenario = tmp_path / "camera_small.yaml"
    scenario.write_text(CAMERA_SCENARIO.replace("height: 120}", "height: 120, sensor_tick: 0.1}"))
    live: dict[int, np.ndarray] = {}

    def keep(obs: Observation) -> None:
        depth = obs.sensors["front"].depth
        assert depth is not None
        live[obs.frame] = depth.copy()

    cfg = StackConfig()
    paths = {depth: tmp_path / f"depth_{depth}.mcap" for depth in (True, False)}
    for depth, path in paths.items():
        settings = RecorderSettings(image_format="png", depth=depth)
        world, stack, sc = make_world(cfg.backend), build_stack(cfg), load_scenario(str(scenario))
        record_episode(path, world, stack, cfg, sc, 0, 6, keep, settings)
    rec = read_recording(paths[True])
    topic = depth_topic("front")
    assert rec.schemas[topic] == "foxglove.RawImage" and rec.count(topic) == 4
    msg = rec.json(topic)[0]
    assert (msg["encoding"], msg["width"], msg["height"], msg["step"]) == ("32FC1", 160, 120, 640)
    assert msg["frame_id"] == "camera_front"
    frames = list(rec.observations())
    for obs in frames[1:]:  # the stack's callback saw frames 1..6
        got = obs.sensors["front"].depth
        assert got is not None and _same_bits(got, live[obs.frame])
    without = read_recording(paths[False])
    assert topic not in without.messages
    assert all(o.sensors["front"].depth is None for o in without.observations())
    # the command line's flag: captures at frames 0 and 2 of 3
    path = tmp_path / "cli.mcap"
    out = str(tmp_path / "out")
    proc = cli("run", str(scenario), "--max-steps", "2", "--out", out, "-q", "--record", str(path))
    proc_depth = cli(
        "run", str(scenario), "--max-steps", "2", "--out", out, "-q", "--record",
        str(tmp_path / "cli_depth.mcap"), "--record-depth",
    )  # fmt: skip
    assert proc.returncode == proc_depth.returncode == 0, proc.stderr + proc_depth.stderr
    assert read_recording(path).count(topic) == 0
    assert read_recording(tmp_path / "cli_depth.mcap").count(topic) == 2


def test_without_opencv_images_are_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    scenario = tmp_path / "camera_small.yaml"
    scenario.write_text(CAMERA_SCENARIO)
    world = make_world("embedded")
    world.reset(load_scenario(str(scenario)), 0)  # render once with OpenCV present
    monkeypatch.setitem(sys.modules, "cv2", None)  # from here on, ``import cv2`` fails
    path = tmp_path / "nocv.mcap"
    cfg = StackConfig()
    with caplog.at_level(logging.WARNING):
        record_episode(
            path,
            world,
            build_stack(cfg),
            cfg,
            load_scenario(str(scenario)),
            0,
            3,
            settings=RecorderSettings(writer="inline"),  # the warning is this process's
        )
    assert "camera images are not recorded" in caplog.text
    monkeypatch.delitem(sys.modules, "cv2")
    rec = read_recording(path)
    image, calib, _ = camera_topics("front")
    assert rec.count(image) == 0 and rec.count(calib) == 4  # labels and calibration stay


def test_an_interrupted_run_finishes_its_file_and_says_where(tmp_path: Path) -> None:
    class Interrupting:
        def __init__(self, inner: object, at: int) -> None:
            self.inner, self.at, self.calls = inner, at, 0

        def reset(self) -> None:
            self.inner.reset()  # type: ignore[attr-defined]

        def update(self, plan: object, state: object) -> object:
            self.calls += 1
            if self.calls > self.at:
                raise KeyboardInterrupt
            return self.inner.update(plan, state)  # type: ignore[attr-defined]

    cfg = StackConfig()
    stack = build_stack(cfg)
    stack.controller = Interrupting(stack.controller, 25)  # type: ignore[assignment]
    path = tmp_path / "int.mcap"
    with pytest.raises(KeyboardInterrupt):
        record_episode(path, make_world("embedded"), stack, cfg, load_scenario("town_loop"), 0)
    rec = read_recording(path)
    assert rec.complete
    assert rec.status == "interrupted at frame 25"
    assert rec.count("/control") == 25 and rec.count("/observation") == 26
    assert rec.result is not None and rec.result["status"] == "interrupted at frame 25"


KILLED = """
import os, signal, sys
from pathlib import Path
from launch.record import record_episode
from launch.stack import StackConfig, build_stack, make_world
from sim.recording import RecorderSettings
from sim.scenario import load_scenario

def step(obs):
    if obs.frame == 150:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind

cfg = StackConfig()
settings = RecorderSettings(chunk_size_bytes=65536, writer=sys.argv[2])
record_episode(Path(sys.argv[1]), make_world("embedded"), build_stack(cfg), cfg,
               load_scenario("town_loop"), 0, None, step, settings)
"""


def _killed(path: Path, writer: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(path), writer],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -9


def test_a_killed_run_leaves_every_complete_chunk_readable(tmp_path: Path) -> None:
    """Writing in the loop's process: the chunk being filled dies with it."""
    path = tmp_path / "killed.mcap"
    _killed(path, "inline")
    rec = read_recording(path)
    assert not rec.complete
    assert rec.status.startswith("truncated: the file is not finished")
    n = rec.count("/observation")
    assert 20 < n <= 150  # the chunks written before the kill, not the one being filled
    frames = [json.loads(m)["frame"] for m in rec.messages["/observation"]]
    assert frames == list(range(n))
    said = int(rec.status.split("up to frame ")[1].split(",")[0])
    assert said in (frames[-1] - 1, frames[-1])  # the last frame whose metrics were kept
    assert rec.scenario["name"] == "town_loop" and rec.config["seed"] == 0


def test_a_killed_run_with_a_writer_process_leaves_a_finished_file(tmp_path: Path) -> None:
    """The writer process outlives the loop's and finishes the file with all it was sent."""
    path = tmp_path / "killed.mcap"
    _killed(path, "process")
    rec = read_recording(path)
    assert rec.complete and rec.end is None
    assert rec.status.startswith("ended without an end status after frame")
    frames = [json.loads(m)["frame"] for m in rec.messages["/observation"]]
    assert frames == list(range(len(frames))) and len(frames) > 20


def test_an_unknown_image_format_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed png, jpeg"):
        Recorder(McapSinkStub(), RecorderSettings(image_format="gif"))


class McapSinkStub:
    def write(self, topic: str, schema: str, log_time_ns: int, data: bytes) -> None: ...

    def metadata(self, name: str, data: dict[str, str]) -> None: ...

    def close(self) -> None: ...


def test_bench_record_prints_overheads_and_size(tmp_path: Path) -> None:
    proc = cli("bench", "record", "--steps", "30", "--repeats", "2", "--out", str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    lines = {line.split("  ")[0]: line for line in proc.stdout.splitlines()}
    assert "2 alternating pairs" in proc.stdout
    for row in ("overhead", "in the recorder", "writer process", "recording size"):
        assert row in lines, proc.stdout
    in_recorder = float(lines["in the recorder"].split()[3])
    assert in_recorder > 0.0  # the recorder's own time in the loop is measured
    assert "MB per minute" in lines["recording size"]


def test_bench_record_refuses_zero_repeats() -> None:
    proc = cli("bench", "record", "--repeats", "0")
    assert proc.returncode == 2
    assert "--repeats: expected a positive integer, got 0" in proc.stderr


def _live_episode(
    path: Path, steps: int, settings: RecorderSettings
) -> tuple[dict[int, Observation], Route]:
    """Record ``steps`` steps of town_loop; return the observations the stack was given (by
    frame) and the episode's route."""
    seen: dict[int, Observation] = {}
    cfg = StackConfig()
    world = make_world(cfg.backend)
    record_episode(
        path,
        world,
        build_stack(cfg),
        cfg,
        load_scenario("town_loop"),
        0,
        steps,
        lambda obs: seen.__setitem__(obs.frame, obs),
        settings,
    )
    return seen, world.route  # type: ignore[attr-defined]  # the embedded world has one


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_the_route_is_written_once_and_each_route_ahead_as_a_slice_of_it(tmp_path: Path) -> None:
    path = tmp_path / "slices.mcap"
    live, _ = _live_episode(path, 30, RecorderSettings(writer="inline"))
    rec = read_recording(path)
    assert "route" in rec.json("/world/static")[0]
    routes = [d["route"] for d in rec.json("/observation")]
    assert all("index" in r and "floats" not in r for r in routes)  # two numbers, not points
    assert [r["index"] for r in routes] == sorted(r["index"] for r in routes)
    decoded = list(rec.observations())
    assert len(live) == 30
    for got in decoded[1:]:  # the stack's callback saw frames 1..30
        obs = live[got.frame]
        for name in ("xy", "yaw", "speed_limit_mps", "lane_width_m", "left_lane", "junction"):
            assert _same_bits(getattr(obs.route, name), getattr(got.route, name)), name
        assert (obs.route.s0_m, obs.route.remaining_m) == (got.route.s0_m, got.route.remaining_m)


def test_a_route_ahead_that_is_not_a_slice_of_the_route_is_written_whole(tmp_path: Path) -> None:
    """Copied (or edited) arrays are not the route's: they are written as they are, and the
    derived metrics do not depend on the form."""
    path = tmp_path / "whole.mcap"
    live, route = _live_episode(path, 3, RecorderSettings(writer="inline"))
    obs = live[3]
    static = codec.StaticGT.of(obs, route)
    r = obs.route
    copied = dataclasses.replace(
        obs, route=dataclasses.replace(r, speed_limit_mps=r.speed_limit_mps.copy())
    )
    assert "index" in json.loads(codec.encode_observation(obs, static))["route"]
    text = codec.encode_observation(copied, static)
    assert "floats" in json.loads(text)["route"]
    back = codec.decode_observation(json.loads(text), static)
    assert _same_bits(back.route.xy, r.xy)
    assert _same_bits(back.route.speed_limit_mps, r.speed_limit_mps)

    def metrics(text: str) -> bytes:
        deriver = Deriver()
        static_json = _ENCODER.encode(codec.encode_static(obs, static.route)).encode()
        deriver.derive("/world/static", 0, static_json)
        out = deriver.derive("/observation", 0, text.encode())
        return next(data for topic, _, _, data in out if topic == "/metrics")

    assert metrics(codec.encode_observation(obs, static)) == metrics(text)


def test_encoding_in_batches_writes_the_same_bytes(tmp_path: Path) -> None:
    one, batched = tmp_path / "one.mcap", tmp_path / "batched.mcap"
    _live_episode(one, 45, RecorderSettings(writer="inline", batch_ticks=1))
    _live_episode(batched, 45, RecorderSettings(writer="inline", batch_ticks=20))
    a, b = read_recording(one), read_recording(batched)
    assert set(a.messages) == set(b.messages)
    for topic, messages in a.messages.items():
        if topic != "/config":  # which records batch_ticks
            assert messages == b.messages[topic], topic


def test_a_batch_of_no_ticks_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_ticks 0: allowed 1 or more"):
        Recorder(McapSinkStub(), RecorderSettings(batch_ticks=0))
