"""The gallery: views of signs and heads from where a driver meets them, drawn anew each view, and
views of road users."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from launch import gallery
from launch.cli import main
from launch.gallery import (
    Subject,
    episode_views,
    gallery_observation,
    road_user_pose,
    view_pose,
)
from launch.stack import EpisodeRun, Stack, run_episode
from perception.models.stn_classifier import StnClassifierConfig
from sim.backend import World
from sim.errors import DrivestackError
from sim.messages import ActorKind, DetectionClass, LightState, Observation, SignGT, SignType
from sim.scenario import CameraSpec, Scenario, load_scenario
from sim.world import EmbeddedWorld

FRONT_M = 4.8 - 0.95  # front bumper ahead of the rear axle


def _first_obs(name: str = "red_lights") -> Observation:
    return EmbeddedWorld().reset(load_scenario(name), 0)


def _faces(sign: SignGT, x: float, y: float, yaw: float) -> bool:
    """The sign's face looks at a camera at ``(x, y)`` heading ``yaw`` from 3–30 m ahead."""
    head = math.remainder(sign.yaw + math.pi - yaw, math.tau)
    along = math.cos(sign.yaw) * (x - sign.x) + math.sin(sign.yaw) * (y - sign.y)
    return abs(head) <= math.radians(6.01) and 2.9 <= along <= 30.1


def test_views_face_a_head_before_its_line_or_a_sign_beside_the_lane() -> None:
    obs = _first_obs()
    rng = np.random.default_rng(0)
    lights, signs = 0, 0
    for _ in range(200):
        pose = view_pose(obs, rng)
        assert pose is not None
        x, y, yaw = pose
        near_line = min(
            obs.ground_truth.lights, key=lambda lt: math.hypot(lt.stop_x - x, lt.stop_y - y)
        )
        c, s = math.cos(near_line.stop_yaw), math.sin(near_line.stop_yaw)
        ahead = c * (near_line.stop_x - x) + s * (near_line.stop_y - y)
        across = -s * (near_line.stop_x - x) + c * (near_line.stop_y - y)
        if FRONT_M + 1.0 - 1e-6 <= ahead <= FRONT_M + 25.0 + 1e-6 and abs(across) <= 0.8 + 1e-6:
            lights += 1  # on the approach lane, the bumper 1–25 m before the line
            assert abs(math.remainder(yaw - near_line.stop_yaw, math.tau)) <= math.radians(6.01)
            continue

        # otherwise a sign faces the camera from 3–30 m ahead
        assert any(_faces(sg, x, y, yaw) for sg in obs.ground_truth.signs)
        signs += 1
    assert 70 <= lights <= 130 and lights + signs == 200  # half the views go to heads


def test_a_view_draws_states_types_and_values_anew_and_refuses_to_stand_in_a_car() -> None:
    obs = _first_obs("dense_traffic")
    rng = np.random.default_rng(1)
    pose = view_pose(obs, rng)
    assert pose is not None
    states, types, values = set(), set(), set()
    for _ in range(30):
        seen = gallery_observation(obs, pose, rng)
        assert seen is not None and (seen.ego.x, seen.ego.y, seen.ego.yaw) == pose
        states |= {lt.state for lt in seen.ground_truth.lights}
        types |= {sg.type for sg in seen.ground_truth.signs}
        values |= {sg.value for sg in seen.ground_truth.signs if sg.type == SignType.SPEED_LIMIT}
        # the map's places stay: only what the faces show changes
        assert [(sg.x, sg.y) for sg in seen.ground_truth.signs] == [
            (sg.x, sg.y) for sg in obs.ground_truth.signs
        ]
    assert states == set(LightState) - {LightState.UNKNOWN}
    assert types == set(SignType)
    assert values <= {float(v) for v in StnClassifierConfig().speed_values_kmh}
    assert len(values) >= 10
    a = obs.ground_truth.actors
    assert gallery_observation(obs, (float(a.x[0]) + 1.0, float(a.y[0]), 0.0), rng) is None


def test_collect_gallery_writes_a_dataset_of_close_heads_and_signs(tmp_path: Path) -> None:
    args = ["perception", "collect", "--gallery", "--scenario", "red_lights", "--episodes", "2"]
    args += ["--frames", "6", "--seed", "3", "--width", "320", "--height", "240"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert len(data["images"]) == 12
    assert {im["split"] for im in data["images"]} <= {"train", "val", "test"}
    kinds = {a["category_id"] for a in data["annotations"]}
    assert kinds & {int(DetectionClass.TRAFFIC_LIGHT), int(DetectionClass.SPEED_LIMIT_SIGN)}


@pytest.mark.parametrize("subject", ["signs", "road-users"])
def test_a_gallery_drive_ends_with_its_last_view(
    subject: Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks: list[int] = []

    def counted(
        world: World,
        stack: Stack,
        sc: Scenario,
        seed: int,
        max_steps: int,
        on_step: Callable[[Observation], bool | None],
    ) -> EpisodeRun:
        def step(obs: Observation) -> bool | None:
            ticks.append(obs.frame)
            return on_step(obs)

        return run_episode(world, stack, sc, seed, max_steps, step)

    monkeypatch.setattr(gallery, "run_episode", counted)
    spec = CameraSpec(name="front", width=160, height=120, fov_deg=90.0)
    views = episode_views(load_scenario("red_lights"), spec, 0, 3, 10, subject=subject)
    assert len(views) == 3
    assert ticks[-1] == views[-1][1].frame  # not the 3 × 3 × 10 ticks it may drive at most


def test_road_user_views_face_a_pedestrian_or_vehicle_from_the_egos_side() -> None:
    obs = _first_obs("dense_traffic")
    a = obs.ground_truth.actors
    people = set(np.flatnonzero(a.kind == ActorKind.PEDESTRIAN).tolist())
    assert people and len(people) < len(a)
    rng = np.random.default_rng(2)
    faced = []
    for _ in range(300):
        pose = road_user_pose(obs, rng)
        assert pose is not None
        x, y, yaw = pose
        # the road user the view was made for: 4-25 m away, within 15° of straight ahead, and
        # the view on the side of it the ego is on (within 40°)
        fits = []
        for i in range(len(a)):
            d = math.hypot(a.x[i] - x, a.y[i] - y)
            aim = math.remainder(math.atan2(a.y[i] - y, a.x[i] - x) - yaw, math.tau)
            side = math.remainder(
                math.atan2(y - a.y[i], x - a.x[i])
                - math.atan2(obs.ego.y - a.y[i], obs.ego.x - a.x[i]),
                math.tau,
            )
            near = 4.0 - 1e-6 <= d <= 25.0 + 1e-6
            if near and abs(aim) <= math.radians(15.01) and abs(side) <= math.radians(40.01):
                fits.append(i)
        assert fits
        faced.append(any(i in people for i in fits))
    # 70 % of the views go to a pedestrian where the episode has one (a few more by chance: a
    # view of a car may face a pedestrian too)
    assert 0.62 <= sum(faced) / len(faced) <= 0.85


def test_a_road_user_view_needs_a_road_user_and_a_known_subject() -> None:
    obs = _first_obs("free_drive_limits")
    empty = obs.ground_truth.actors
    keep = np.zeros(len(empty), dtype=bool)
    none = type(empty)(**{f: getattr(empty, f)[keep] for f in empty.__dataclass_fields__})
    bare = dataclasses.replace(obs, ground_truth=dataclasses.replace(obs.ground_truth, actors=none))
    assert road_user_pose(bare, np.random.default_rng(0)) is None
    spec = CameraSpec(name="front", width=320, height=240, fov_deg=90.0)
    with pytest.raises(
        DrivestackError, match="gallery subject 'people'; allowed: signs, road-users"
    ):
        episode_views(load_scenario("red_lights"), spec, 0, 1, 10, subject="people")  # type: ignore[arg-type]


def test_collect_refuses_an_unknown_gallery_subject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["perception", "collect", "--gallery", "people", "--scenario", "red_lights"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--gallery: invalid choice: 'people' (choose from" in capsys.readouterr().err


def test_collect_road_user_views_annotates_pedestrians(tmp_path: Path) -> None:
    args = ["perception", "collect", "--gallery", "road-users", "--scenario", "dense_traffic"]
    args += ["--episodes", "1", "--frames", "6", "--seed", "3", "--width", "320", "--height", "240"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert len(data["images"]) == 6
    peds = [a for a in data["annotations"] if a["category_id"] == int(DetectionClass.PEDESTRIAN)]
    assert len({a["image_id"] for a in peds}) >= 3  # most views face a pedestrian, near
    assert max(a["bbox"][3] for a in peds) >= 20.0
