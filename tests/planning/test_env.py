"""drivestack/Route-v0: the checkers of gymnasium and SB3, determinism, and the reward's parts."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from planning.encoding import OBS_SIZE, ActionSettings, EnvelopeSettings, obs_offset
from planning.env import ENV_ID, REWARD_PARTS, EnvSettings, RouteEnv, sample_scenario
from planning.noise import NO_NOISE
from sim.errors import DrivestackError
from sim.messages import LightState
from sim.scenario import load_scenario


def test_gymnasium_check_env_passes() -> None:
    env = gym.make(ENV_ID).unwrapped
    gym_check_env(env, skip_render_check=True)


def test_sb3_check_env_passes() -> None:
    with_warnings = RouteEnv()
    sb3_check_env(with_warnings, warn=True)


def _rollout(seed: int, steps: int) -> list[tuple[Any, ...]]:
    env = RouteEnv()
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(123)  # the actions, the same for both rollouts
    out: list[tuple[Any, ...]] = [(obs.tobytes(),)]
    for _ in range(steps):
        action = rng.uniform(-1.0, 1.0, 3).astype(np.float32) * np.array(
            [1.0, 0.2, 1.0], dtype=np.float32
        )
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs.tobytes(), reward, terminated, truncated, info["events"]))
        if terminated or truncated:
            obs, _ = env.reset()
    out.append((env.world.result().trajectory_sha256,))
    return out


def test_two_seeded_rollouts_are_equal() -> None:
    a, b = _rollout(7, 150), _rollout(7, 150)
    assert a == b
    assert _rollout(8, 20) != a[:22]  # another seed is another episode


def test_observation_shape_and_bounds() -> None:
    env = RouteEnv()
    obs, info = env.reset(seed=3)
    assert obs.shape == (OBS_SIZE,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert info["map"] in {m.name for m in EnvSettings().maps}


def test_reward_is_the_sum_of_its_named_parts() -> None:
    env = RouteEnv()
    env.reset(seed=11)
    seen: set[str] = set()
    for k in range(400):
        action = np.array([0.9 if k % 50 < 40 else -1.0, 0.0, -1.0], dtype=np.float32)
        _, reward, terminated, truncated, info = env.step(action)
        parts = info["reward_parts"]
        assert set(parts) == set(REWARD_PARTS)
        assert reward == pytest.approx(sum(parts.values()), abs=1e-9)
        seen |= {name for name, v in parts.items() if v != 0.0}
        if terminated or truncated:
            env.reset()
    assert {"progress", "discomfort"} <= seen


def _full_speed_at_a_parked_car(envelope: bool) -> tuple[dict[str, float] | None, bool, float]:
    """Drive at the limit on the centreline towards a parked car: the reward parts of the
    collision step (None without one), whether the car was passed, the least speed (m/s)."""
    action = ActionSettings(envelope=EnvelopeSettings(enabled=envelope))
    env = RouteEnv(EnvSettings(action=action))
    for seed in range(200):
        env.reset(seed=seed)
        if any(ev.type == "parked_vehicle" for ev in env.scenario.events):
            break
    parked_at = next(ev for ev in env.scenario.events if ev.type == "parked_vehicle").at_route_m
    slowest = np.inf
    for _ in range(3000):
        _, _, terminated, truncated, info = env.step(np.array([1.0, 0.0, -1.0], dtype=np.float32))
        if "collisions_vehicle" in info["events"]:
            assert terminated
            return info["reward_parts"], False, slowest
        if env.world.monitor.progress_m > 40.0:
            slowest = min(slowest, env._obs.ego.speed if env._obs else np.inf)
        if terminated or truncated or env.world.monitor.progress_m > parked_at + 10.0:
            break
    return None, env.world.monitor.progress_m > parked_at + 10.0, slowest


def test_collision_costs_the_leaderboard_coefficient_and_terminates() -> None:
    # without the envelope, a parked car in the lane and full speed ahead: a vehicle collision
    # (coefficient 0.6)
    parts_hit, _, _ = _full_speed_at_a_parked_car(envelope=False)
    assert parts_hit is not None, "the ego never reached the parked car"
    assert parts_hit["collision"] == pytest.approx(-100.0 * (1.0 - 0.6))


def test_the_safety_envelope_stops_full_speed_behind_a_parked_car() -> None:
    parts_hit, passed, slowest = _full_speed_at_a_parked_car(envelope=True)
    assert parts_hit is None and not passed  # it stopped: passing is the policy's decision
    assert slowest < 0.1


@pytest.mark.parametrize("controller", ["pid", "mpc"])
def test_stopping_at_the_next_line_rests_before_it_and_stays(controller: str) -> None:
    # the stop_signs route without traffic: full speed, "stop at the next line" throughout
    scenario = load_scenario("stop_signs")
    empty = scenario.traffic.model_copy(update={"vehicles": 0, "pedestrians": 0})
    scenario = scenario.model_copy(update={"traffic": empty, "dt": 0.1})
    env = RouteEnv(EnvSettings(controller=controller), scenario=scenario)
    env.reset(seed=0)
    events: list[str] = []
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(np.array([1.0, 0.0, 1.0], np.float32))
        events += [e for e in info["events"] if e != "checkpoint"]
        assert not (terminated or truncated)
    assert env._obs is not None and env._obs.ego.speed < 0.05
    # the front bumper rests 1.5 m before the stop line, give or take the controller's lag
    assert env.encoder.stop_line_m == pytest.approx(ActionSettings().stop_before_line_m, abs=0.5)
    assert events == []


def test_a_stop_the_student_cannot_see_is_labelled_on_the_speed_channel() -> None:
    scenario = load_scenario("stop_signs")
    empty = scenario.traffic.model_copy(update={"vehicles": 0, "pedestrians": 0})
    scenario = scenario.model_copy(update={"traffic": empty, "dt": 0.1})
    env = RouteEnv(EnvSettings(teacher=True), scenario=scenario)
    _, info = env.reset(seed=0)
    label = info["teacher_action"]
    for _ in range(300):  # drive as the teacher until it stops for the first sign
        if label[2] > 0.0:
            break
        _, _, _, _, info = env.step(label)
        label = info["teacher_action"]
    assert label[2] == 1.0 and math.isfinite(env.encoder.stop_line_m)
    # the same moment, had the student's encoder missed the line: the plan maker could not
    # stop at it, so the speed channel brakes instead and the stop channel stays off
    assert env._obs is not None
    env.encoder.stop_line_m = math.inf
    unseen = env._teacher_action(env._obs)
    assert unseen[2] == -1.0 and unseen[0] < label[0]


def test_scenarios_come_from_the_seed() -> None:
    cfg = EnvSettings()
    a = sample_scenario(np.random.default_rng(5), cfg)
    b = sample_scenario(np.random.default_rng(5), cfg)
    assert a == b
    maps = {sample_scenario(np.random.default_rng(s), cfg).map for s in range(40)}
    assert maps == {m.name for m in cfg.maps}
    assert "town_small" not in maps  # held out for evaluation


def test_unknown_controller_is_refused() -> None:
    with pytest.raises(DrivestackError, match="allowed: pid, mpc"):
        RouteEnv(EnvSettings(controller="bangbang"))


def test_the_teacher_sees_a_light_change_when_the_student_can() -> None:
    # no detector errors, no delay: the student's encoder confirms a colour change one frame
    # after it happens, and the teacher's label must change on that same frame, not before
    scenario = load_scenario("red_lights")
    empty = scenario.traffic.model_copy(update={"vehicles": 0, "pedestrians": 0})
    scenario = scenario.model_copy(update={"traffic": empty, "dt": 0.1})
    env = RouteEnv(EnvSettings(teacher=True, noise=NO_NOISE), scenario=scenario)
    _, info = env.reset(seed=0)
    label = info["teacher_action"]
    light = obs_offset("light")
    rows = []  # (truth is green, the student reads green, the teacher stops at the line)
    for _ in range(1200):
        obs, _, terminated, truncated, info = env.step(label)
        label = info["teacher_action"]
        assert env._obs is not None
        truth = env.perceiver.update(env._obs).lights
        rows.append(
            (
                bool(truth) and truth[0].state == LightState.GREEN,
                obs[light + 3] == 1.0,
                label[2] > 0,
            )
        )
        if terminated or truncated:
            break
    stood_and_went = [
        k for k in range(1, len(rows)) if rows[k - 1][2] and not rows[k - 1][0] and rows[k][0]
    ]
    assert stood_and_went, "the teacher never waited at a red light that turned green"
    for k in stood_and_went:
        assert not rows[k][1] and rows[k][2]  # truth green: the student still reads red, stop
        assert rows[k + 1][1] and not rows[k + 1][2]  # one frame on: both see green
