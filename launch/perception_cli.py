"""The ``perception`` command group: ``python -m launch perception <subcommand>``.

Each perception command lives in its own module and registers itself here with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launch.camera_cmds import add_collect_parser
from launch.perception_commands import add_commands


def add_parser(subparsers: Any) -> None:
    """Register ``perception`` and its subcommands on the top-level parser's subparsers."""
    group = subparsers.add_parser("perception", help="perception datasets and models")
    sub = group.add_subparsers(dest="perception_command", required=True)
    add_collect_parser(sub)  # collect: drive scenarios, write a COCO dataset
    add_commands(sub)  # train, eval, make-default-weights (launch/perception_commands.py)
    # further perception subcommands: one add_...(sub) line here, the code in its own module


DEFAULT_SCENARIOS = (
    "town_loop",
    "town_small_tour",
    "red_lights",
    "stop_signs",
    "free_drive_limits",
    "multi_lane_cruise",
)


def collect_default_dataset(out: Path, frames: int, seed: int, episodes: int = 3) -> Path:
    """A dataset of about ``frames`` images from the default scenarios (three randomised
    episodes each, 640×480 camera, a frame every 0.5 s); returns ``annotations.json``."""
    from launch.camera_cmds import collect_dataset, scenario_camera
    from sim.scenario import load_scenario

    scenarios = [load_scenario(n) for n in DEFAULT_SCENARIOS]
    per_episode = max(1, -(-frames // (len(scenarios) * episodes)))
    specs = [scenario_camera(sc) for sc in scenarios]
    collect_dataset(scenarios, specs, out, per_episode, episodes, seed, every=10)
    return out / "annotations.json"
