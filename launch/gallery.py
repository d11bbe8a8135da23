"""Views of signs, lights and road users from where a driver meets them: the close-up and rare
views a drive hardly collects.

A drive collects few such frames: at 320×240 most signs and heads are a few pixels wide, a sign
is in view for a second or two, the stack stops 1.5 m before a red line with its head already
out of the image, and the maps print only a few speed values and no yield sign on the training
maps. Here the world drives an episode as ``perception collect`` does, and every ``every``-th
tick the camera is put, instead of on the ego, in front of one sign or light head of the map:

- a light head (half the views): in its approach lane, the front bumper 1–25 m before its stop
  line (the head from a few pixels to the edge of the image, or just out of it), up to ±0.8 m
  across the lane and ±6° in heading;
- a sign: 3–30 m in front of its face, 2–6 m to the side of it as a lane beside the kerb is.

In each view every head shows a random state (red, yellow, green, off: 30/20/40/10 %) and every
sign a random type and value (a speed limit, 70 %, of any value the classifier names; stop or
yield, 15 % each). The traffic, pedestrians, weather and camera jitter are the episode's, so
the views carry the same occluders and light as the drives. Boxes and annotations come from the
camera as in every dataset (perception/dataset.py), so a view also annotates the vehicles and
pedestrians in it.

    python -m launch perception collect --gallery --scenario town_small_tour --episodes 3 \
        --frames 40 --seed 200 --width 320 --height 240 --out runs/pdata/heldout_gallery

``make-default-weights`` trains on such views of the training maps beside the drives.

The second subject, road users (``--gallery road-users``), faces a pedestrian (70 % of the views
where the episode has one) or a vehicle from 4–25 m, from the side of it the ego is on (±40°),
within ±15° of looking straight at it; heads and signs keep the episode's faces. A drive meets few
pedestrians near enough to see (the drives' training split of 2026-12-02 held 44), and the
detector trained on it boxed a pedestrian crossing at dusk by its torso alone: placed on the
ground under that box, 50 m away instead of 18 m (``pedestrian_crossing``, every seed). These
views train the detectors only: the classifier's data stays the signs and heads.

    python -m launch perception collect --gallery road-users --scenario pedestrian_crossing \
        --episodes 3 --frames 40 --seed 300 --width 320 --height 240 --out runs/pdata/road_users
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Literal

import numpy as np

from launch.camera_cmds import EpisodeFrames, randomised, scaled
from launch.stack import StackConfig, build_stack, make_world, run_episode
from perception.models.stn_classifier import StnClassifierConfig
from sim.camera import Camera
from sim.errors import DrivestackError
from sim.messages import (
    ActorKind,
    LightState,
    Observation,
    SignType,
    VehicleParams,
    VehicleState,
)
from sim.scenario import CameraSpec, Scenario
from sim.world import load_map

LIGHT_STATE_P = {
    LightState.RED: 0.3,
    LightState.YELLOW: 0.2,
    LightState.GREEN: 0.4,
    LightState.OFF: 0.1,
}
SIGN_TYPE_P = {SignType.SPEED_LIMIT: 0.7, SignType.STOP: 0.15, SignType.YIELD: 0.15}
LIGHT_VIEW_P = 0.5  # maps hold several signs per head: half the views go to heads
CLEAR_OF_ACTORS_M = 3.0  # no view from inside another road user
PEDESTRIAN_VIEW_P = 0.7  # a road-user view faces a pedestrian, where there is one, this often
ROAD_USER_RANGE_M = (4.0, 25.0)  # from the road user
ROAD_USER_SIDE_DEG = 40.0  # off the line from it to the ego
ROAD_USER_AIM_DEG = 15.0  # off looking straight at it (a 90° image)

Subject = Literal["signs", "road-users"]
SUBJECTS: tuple[Subject, ...] = ("signs", "road-users")


def view_pose(obs: Observation, rng: np.random.Generator) -> tuple[float, float, float] | None:
    """A map pose ``(x, y, yaw)`` of the ego in front of a random sign or light of ``obs``."""
    gt = obs.ground_truth
    n_l, n_s = len(gt.lights), len(gt.signs)
    if n_l + n_s == 0:
        return None
    front = VehicleParams().length_m - VehicleParams().rear_overhang_m
    if n_l and (not n_s or rng.random() < LIGHT_VIEW_P):
        lt = gt.lights[int(rng.integers(n_l))]
        yaw = lt.stop_yaw
        back = float(rng.uniform(1.0, 25.0)) + front  # rear axle behind the stop line
        side = float(rng.uniform(-0.8, 0.8))
        x = lt.stop_x - back * math.cos(yaw) - side * math.sin(yaw)
        y = lt.stop_y - back * math.sin(yaw) + side * math.cos(yaw)
    else:
        sg = gt.signs[int(rng.integers(n_s))]
        yaw = sg.yaw + math.pi  # drive towards the face
        ahead = float(rng.uniform(3.0, 30.0))
        left = float(rng.uniform(2.0, 6.0))
        x = sg.x + ahead * math.cos(sg.yaw) - left * math.sin(yaw)
        y = sg.y + ahead * math.sin(sg.yaw) + left * math.cos(yaw)
    return x, y, yaw + math.radians(float(rng.uniform(-6.0, 6.0)))


def road_user_pose(obs: Observation, rng: np.random.Generator) -> tuple[float, float, float] | None:
    """A map pose ``(x, y, yaw)`` of the ego facing a random pedestrian (or vehicle) of ``obs``
    from 4–25 m, on the side of it the ego is on; None where ``obs`` has no road user."""
    a = obs.ground_truth.actors
    if not len(a):
        return None
    people = np.flatnonzero(a.kind == ActorKind.PEDESTRIAN)
    pool = people if len(people) and rng.random() < PEDESTRIAN_VIEW_P else np.arange(len(a))
    i = int(pool[int(rng.integers(len(pool)))])
    side = math.radians(float(rng.uniform(-ROAD_USER_SIDE_DEG, ROAD_USER_SIDE_DEG)))
    away = math.atan2(obs.ego.y - a.y[i], obs.ego.x - a.x[i]) + side
    d = float(rng.uniform(*ROAD_USER_RANGE_M))
    x, y = float(a.x[i]) + d * math.cos(away), float(a.y[i]) + d * math.sin(away)
    aim = math.radians(float(rng.uniform(-ROAD_USER_AIM_DEG, ROAD_USER_AIM_DEG)))
    return x, y, away + math.pi + aim


def seen_from(obs: Observation, pose: tuple[float, float, float]) -> Observation | None:
    """``obs`` with the ego standing at ``pose``; None where it would stand inside a road user."""
    x, y, yaw = pose
    a = obs.ground_truth.actors
    if len(a) and float(np.min(np.hypot(a.x - x, a.y - y))) < CLEAR_OF_ACTORS_M:
        return None
    return dataclasses.replace(obs, ego=VehicleState(obs.t, obs.frame, x, y, yaw, 0.0))


def gallery_observation(
    obs: Observation, pose: tuple[float, float, float], rng: np.random.Generator
) -> Observation | None:
    """``obs`` seen from ``pose``, every head and sign drawn anew; None where the camera would
    stand inside another road user."""
    seen = seen_from(obs, pose)
    if seen is None:
        return None
    states = list(LIGHT_STATE_P)
    state_p = list(LIGHT_STATE_P.values())
    types = list(SIGN_TYPE_P)
    type_p = list(SIGN_TYPE_P.values())
    values = StnClassifierConfig().speed_values_kmh
    lights = tuple(
        dataclasses.replace(lt, state=states[int(rng.choice(len(states), p=state_p))])
        for lt in obs.ground_truth.lights
    )
    signs = []
    for sg in obs.ground_truth.signs:
        kind = types[int(rng.choice(len(types), p=type_p))]
        value = (
            float(values[int(rng.integers(len(values)))]) if kind == SignType.SPEED_LIMIT else 0.0
        )
        signs.append(dataclasses.replace(sg, type=kind, value=value))
    gt = dataclasses.replace(obs.ground_truth, lights=lights, signs=tuple(signs))
    return dataclasses.replace(seen, ground_truth=gt)


def episode_views(
    scenario: Scenario,
    spec: CameraSpec,
    seed: int,
    views: int,
    every: int,
    scales: tuple[int, ...] = (1,),
    subject: Subject = "signs",
) -> EpisodeFrames:
    """Up to ``views`` gallery views of one randomised episode, one every ``every`` ticks, each
    rendered at each of ``scales`` times the camera's size and with the observation it shows
    (the episode's, seen from the view's pose): a ``source`` for ``camera_cmds.collect_dataset``.
    ``subject`` says what they face: signs and light heads (drawn anew each view) or road
    users."""
    if subject not in SUBJECTS:
        raise DrivestackError(f"gallery subject {subject!r}; allowed: {', '.join(SUBJECTS)}")
    stream = 7 if subject == "signs" else 11
    rng = np.random.default_rng([seed, zlib.crc32(scenario.name.encode()), stream])
    sc, spec_e = randomised(scenario, spec, rng)
    road_map = load_map(str(sc.map_path()))
    cams = [Camera(scaled(spec_e, k), road_map, sc.weather) for k in scales]
    out: EpisodeFrames = []

    def view(obs: Observation) -> bool:
        if obs.frame % every == 0:
            if subject == "signs":
                pose = view_pose(obs, rng)
                seen = gallery_observation(obs, pose, rng) if pose is not None else None
            else:
                pose = road_user_pose(obs, rng)
                seen = seen_from(obs, pose) if pose is not None else None
            if seen is not None:
                out.append((tuple(cam.render(seen) for cam in cams), seen))
        return len(out) >= views  # the drive ends with its last view

    world = make_world("embedded")
    try:  # a view may be refused (inside another car): drive up to three times as long
        run_episode(world, build_stack(StackConfig()), sc, seed, 3 * views * every, view)
    finally:
        world.close()
    return out
