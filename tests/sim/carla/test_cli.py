"""``python -m launch run ... --backend carla``: no server, and a server that fails mid-episode."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import launch.cli as cli
from sim.carla_backend.client import CarlaConnection
from sim.carla_backend.world import CarlaSettings, CarlaWorld
from tests.sim.carla.fake_carla import FakeServer

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:  # nothing listens on it once closed
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_server_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "launch", "run", "town_loop", "--backend", "carla"]
    cmd += ["--port", str(port), "--carla-timeout", "1", "-q", "--out", str(tmp_path)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: no CARLA server answered at localhost:{port} within 1 s")
    assert "start CARLA 0.9.16" in lines[0] and "CarlaUE4.sh -RenderOffScreen" in lines[0]
    assert proc.stdout == ""
    assert not (tmp_path / "result.json").exists()
    assert wall < 60.0  # the 1 s timeout plus the interpreter's start


def test_a_server_fault_keeps_the_result_so_far(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = FakeServer()
    server.hang_at_frame = server.frame + 30  # a few ticks into the episode
    made: list[CarlaWorld] = []

    def fake_world(backend: str, connection: CarlaConnection | None = None) -> CarlaWorld:
        assert backend == "carla" and connection is not None
        assert (connection.host, connection.port, connection.tm_port) == ("h", 2001, 8001)
        made.append(CarlaWorld(CarlaSettings(connection=connection), server.factory))
        return made[-1]

    monkeypatch.setattr(cli, "make_world", fake_world)
    args = ["run", "stop_signs", "--backend", "carla", "--host", "h", "--port", "2001"]
    args += ["--tm-port", "8001", "--carla-timeout", "0.5", "-q", "--out", str(tmp_path)]
    args += ["--record", str(tmp_path / "episode.mcap")]
    rc = cli.main(args)
    err = capsys.readouterr().err
    assert rc == 2
    assert "did not answer within 0.5 s while ticking frame" in err
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "Failed - Simulation crashed"
    assert result["steps"] > 0 and result["route_completion"] > 0
    assert "did not answer" in result["error"]
    assert result["stack"]["backend"] == "carla"
    assert made[0].done
    # the recording is finished and readable up to the fault
    from sim.recording.reader import read_recording

    rec = read_recording(tmp_path / "episode.mcap")
    assert rec.complete and "failed at frame" in rec.status
    assert rec.count("/observation") == result["steps"] + 1  # frames 0..last before the fault


def test_bad_carla_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["run", "town_loop", "--port", "70000"])
    assert exc.value.code == 2
    assert "a port is 1..65535, got 70000" in capsys.readouterr().err
