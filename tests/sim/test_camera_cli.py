"""``render`` end to end, and bad camera input through the CLI: one line on stderr, exit 2."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from launch.cli import main

SENSORS = """
name: tilted
map: town_small
route:
  random: {{min_length_m: 300}}
sensors:
  - {{name: front, width: 160, height: 120, pitch_deg: {pitch}}}
"""


def test_render_writes_pngs_and_a_video_with_boxes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "render"
    args = ["render", "town_small_tour", "--frames", "3", "--every", "5", "--out", str(out)]
    rc = main([*args, "--width", "160", "--height", "120"])
    assert rc == 0
    pngs = sorted(out.glob("frame_*.png"))
    assert [p.name for p in pngs] == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    img = cv2.imread(str(pngs[0]))
    assert img is not None and img.shape == (120, 160, 3)
    video = cv2.VideoCapture(str(out / "video.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert "rendered 3 frames" in capsys.readouterr().out


def _fails_with(args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_camera_that_looks_at_nothing_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "tilted.yaml"
    scenario.write_text(SENSORS.format(pitch=-60))
    out = str(tmp_path / "out")
    _fails_with(["render", str(scenario), "--out", out], "looks at nothing", capsys)
    _fails_with(["run", str(scenario), "--out", out], "looks at nothing", capsys)


@pytest.mark.parametrize("flag", ["--width", "--height"])
def test_resolution_zero_is_refused(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    needle = f"camera field '{flag[2:]}': Input should be greater than 0 (got 0)"
    _fails_with(["render", "town_small_tour", flag, "0", "--out", out], needle, capsys)
    collect = ["perception", "collect", "--scenario", "town_small_tour", flag, "0"]
    _fails_with([*collect, "--out", out], needle, capsys)


def test_resolution_zero_in_a_scenario_file_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "zero.yaml"
    scenario.write_text(SENSORS.format(pitch=5).replace("width: 160", "width: 0"))
    needle = "field 'sensors.0.width': Input should be greater than 0"
    _fails_with(["render", str(scenario), "--out", str(tmp_path / "o")], needle, capsys)


def test_an_unwritable_output_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = str(blocker / "frames")  # a folder cannot be made inside a file, even by root
    _fails_with(["render", "town_small_tour", "--out", out], "cannot write there", capsys)
    collect = ["perception", "collect", "--scenario", "town_small_tour", "--out", out]
    _fails_with(collect, "cannot write there", capsys)
