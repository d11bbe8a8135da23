"""The shipped weights load, and learned perception brings its camera into a scenario."""

from __future__ import annotations

import pytest
import torch

from launch.stack import StackConfig, build_stack, with_camera
from perception.perceiver import WEIGHTS_DIR, LearnedPerceiver
from sim.scenario import load_scenario

torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_shipped_weights_build_the_stack_and_its_camera(kind: str) -> None:
    for name in (kind, "stn"):
        size = (WEIGHTS_DIR / f"{name}.safetensors").stat().st_size
        assert size < 10 * 2**20  # each shipped file under 10 MB
    stack = build_stack(StackConfig(perception=kind))
    assert isinstance(stack.perceiver, LearnedPerceiver)
    scenario = load_scenario("town_loop")
    assert scenario.sensors == []
    cam = with_camera(scenario, stack.perceiver).sensors
    assert [(c.name, c.width, c.height, c.fov_deg) for c in cam] == [("front", 320, 240, 90.0)]
    # a scenario that already has the camera keeps its own
    assert with_camera(with_camera(scenario, stack.perceiver), stack.perceiver).sensors == cam
