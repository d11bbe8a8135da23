"""Render the camera frames shown in docs/camera.md: one per built-in map, one from a CARLA
export (``python scripts/camera_gallery.py``; deterministic).

For each map the default stack drives a scenario, and the frame is taken at the first tick where
a sign of the wanted type faces the ego a few metres ahead, so its face is readable. The CARLA
frame is rendered from ``town_small`` round-tripped through ``carla.Map.to_opendrive()`` (what
a server's ``world.get_map().to_opendrive()`` returns): no CARLA town file ships with the repo.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import carla
import cv2

from launch.stack import StackConfig, build_stack
from sim.camera import Camera, camera_spec
from sim.messages import Observation, SignType
from sim.scenario import BUILTIN_MAPS, Scenario, load_scenario
from sim.world import EmbeddedWorld

OUT = Path(__file__).resolve().parent.parent / "docs" / "img"

# (file stem, scenario, seed, wanted sign type, its distance ahead: near, far in m)
SHOTS = (
    ("camera_town_grid", "town_loop", 0, SignType.STOP, 6.5, 9.0),
    ("camera_town_small", "town_small_tour", 3, SignType.YIELD, 6.5, 9.0),
    ("camera_country_road", "free_drive_limits", 0, SignType.SPEED_LIMIT, 6.5, 9.0),
    ("camera_multi_lane", "multi_lane_cruise", 0, SignType.SPEED_LIMIT, 9.0, 13.0),
)


def sign_ahead(obs: Observation, kind: SignType, near: float, far: float) -> bool:
    """A sign of ``kind`` faces the ego between ``near`` and ``far`` metres ahead, in view."""
    ego = obs.ego
    for sg in obs.ground_truth.signs:
        if sg.type != kind:
            continue
        dx, dy = sg.x - ego.x, sg.y - ego.y
        ahead = dx * math.cos(ego.yaw) + dy * math.sin(ego.yaw)
        side = -dx * math.sin(ego.yaw) + dy * math.cos(ego.yaw)
        facing = math.cos(sg.yaw - ego.yaw) < -0.8
        if near <= ahead <= far and abs(side) < 0.95 * ahead and facing:
            return True
    return False


def shoot(
    scenario: Scenario, seed: int, kind: SignType, near: float, far: float, path: Path
) -> None:
    world = EmbeddedWorld()
    stack = build_stack(StackConfig())
    obs = world.reset(scenario, seed)
    stack.reset()
    cam = Camera(camera_spec(width=640, height=480), world.map, scenario.weather)
    for _ in range(6000):
        if world.done or (obs.frame > 20 and sign_ahead(obs, kind, near, far)):
            break
        perception = stack.perceiver.update(obs)
        plan = stack.planner.update(perception, obs.route, obs.ego)
        obs = world.step(stack.controller.update(plan, obs.ego))
    frame = cam.render(obs)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(path), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    print(
        f"wrote {path} (t = {obs.t:.1f} s, {0 if frame.boxes is None else len(frame.boxes)} boxes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for stem, name, seed, kind, near, far in SHOTS:
        shoot(load_scenario(name), seed, kind, near, far, args.out / f"{stem}.png")
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "TownSmallExport.xodr"
        text = (BUILTIN_MAPS / "town_small.xodr").read_text()
        exported.write_text(carla.Map("export", text).to_opendrive())
        base = load_scenario("town_small_tour").model_dump()
        scenario = Scenario.model_validate(
            base
            | {
                "name": "carla_export",
                "map": str(exported),
                "weather": {"sun_altitude_angle": 12.0, "cloudiness": 40.0},
            }
        )
        shoot(scenario, 5, SignType.SPEED_LIMIT, 6.5, 9.0, args.out / "camera_carla_export.png")


if __name__ == "__main__":
    main()
