"""Shared helpers of the recording, replay, report and sweep tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from launch.record import record_episode
from launch.stack import StackConfig, build_stack, make_world
from sim.recording import RecorderSettings
from sim.scenario import load_scenario

ROOT = Path(__file__).parents[2]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def record(
    path: Path,
    scenario: str = "town_loop",
    steps: int | None = 40,
    seed: int = 0,
    settings: RecorderSettings | None = None,
) -> int:
    """Record ``steps`` steps of ``scenario`` to ``path``; return the steps run."""
    cfg = StackConfig()
    run = record_episode(
        path,
        make_world(cfg.backend),
        build_stack(cfg),
        cfg,
        load_scenario(scenario),
        seed,
        steps,
        settings=settings,
    )
    return run.result.steps


CAMERA_SCENARIO = """\
name: camera_small
map: town_grid
route:
  waypoints: [[20, 103.25], [150, 103.25]]
traffic:
  vehicles: 4
  pedestrians: 0
sensors:
  - {type: camera, name: front, width: 160, height: 120}
"""
