"""Reports: report.json, report.html with its plots, and the episode video."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from launch.report import make_report
from sim.recording import RecorderSettings
from tests.launch.recording_helpers import CAMERA_SCENARIO, cli, record


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "town_loop.mcap"
    record(path, "town_loop", steps=150)
    return path


def test_episode_report_has_plots_video_and_numbers(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    proc = cli("report", str(recorded), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    r = json.loads((out / "report.json").read_text())
    assert r["kind"] == "episode" and r["scenario"] == "town_loop"
    assert r["result"]["status"] == "Stopped after --max-steps 150"
    assert r["stats"]["distance_m"] > 5.0
    assert r["stats"]["max_accel_mps2"] <= r["limits"]["max_accel_mps2"]
    for name in ("speed.png", "cross_track.png", "actuation.png", "events.png", "score.png"):
        assert name in r["figures"] and (out / name).stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert all(f"src='{name}'" in page for name in r["figures"])
    assert "episode.mp4" in page
    video = cv2.VideoCapture(str(out / "episode.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 151  # one frame per observation
    ok, frame = video.read()
    assert ok and frame.shape == (480, 480, 3)  # no camera recorded: the bird's-eye view only


def test_camera_and_birds_eye_view_side_by_side(tmp_path: Path) -> None:
    scenario = tmp_path / "camera_small.yaml"
    scenario.write_text(CAMERA_SCENARIO)
    path = tmp_path / "cam.mcap"
    record(path, str(scenario), steps=5, settings=RecorderSettings(image_format="jpeg"))
    out = tmp_path / "rep"
    make_report(path, out)
    video = cv2.VideoCapture(str(out / "episode.mp4"))
    ok, frame = video.read()
    assert ok and frame.shape == (480, 640 + 480, 3)  # 160×120 camera scaled to 480 rows


def test_a_run_directory_with_a_recording_is_reported(recorded: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(recorded, run / "recording.mcap")
    r = make_report(run, tmp_path / "rep", video=False)
    assert r["recording"] == str(run / "recording.mcap")
    assert not (tmp_path / "rep" / "episode.mp4").exists()


def test_a_truncated_recording_is_reported_with_a_warning(recorded: Path, tmp_path: Path) -> None:
    data = recorded.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    out = tmp_path / "rep"
    proc = cli("report", str(cut), "--out", str(out), "--no-video")
    assert proc.returncode == 0, proc.stderr
    assert "truncated" in proc.stderr
    r = json.loads((out / "report.json").read_text())
    assert not r["recording_complete"] and r["result"] is None
    assert "truncated" in (out / "report.html").read_text()


def test_nothing_to_report_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = cli("report", str(tmp_path), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 2
    assert "no summary.json and no .mcap recording" in proc.stderr
    proc = cli("report", str(tmp_path / "missing.mcap"), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
