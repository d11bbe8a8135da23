"""The RL planner stage and the training command, with tiny budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from planning.env import RouteEnv, observation_space
from planning.rl import PolicyError, PolicyMismatchError, RLPlanner, RLPlannerSettings
from sim.messages import Plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


def test_a_policy_for_other_spaces_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    model = PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64, batch_size=64, device="cpu")
    path = tmp_path / "pendulum.zip"
    model.save(str(path))
    with pytest.raises(PolicyMismatchError, match=r"expects the observation space Box\(3,\)"):
        RLPlanner(RLPlannerSettings(policy=path))


def test_a_missing_policy_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="planner train"):
        RLPlanner(RLPlannerSettings(policy=tmp_path / "nope.zip"))


def _train(out: Path, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "launch", "planner", "train", "--out", str(out), *extra]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_real_training_command_with_a_tiny_budget(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(
        out,
        *("--algo", "ppo", "--timesteps", "256", "--n-envs", "2"),
        *("--bc-steps", "64", "--checkpoint-every", "128"),
        *("--eval-every", "256", "--eval-episodes", "1"),
    )
    for name in ("policy.zip", "vecnormalize.pkl", "config.json", "best/best_model.zip"):
        assert (out / name).exists(), name
    assert list((out / "checkpoints").glob("rl_model_*_steps.zip"))
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["timesteps"] == 256 and config["train"]["bc"]["steps"] == 64
    assert config["result"]["num_timesteps"] >= 256
    # the stage loads it and plans
    planner = RLPlanner(RLPlannerSettings(policy=out / "policy.zip"))
    env = RouteEnv()
    env.reset(seed=0)
    obs = env._obs
    assert obs is not None and env._perception is not None
    plan = planner.update(env._perception, obs.route, obs.ego)
    assert isinstance(plan, Plan) and np.all(np.isfinite(plan.speed))
    assert planner.update(env._perception, obs.route, obs.ego) is plan  # 10 Hz: same plan
    # and training resumes from a checkpoint
    ckpt = sorted((out / "checkpoints").glob("rl_model_*_steps.zip"))[-1]
    _train(
        tmp_path / "resumed",
        *("--timesteps", "128", "--n-envs", "1", "--resume", str(ckpt)),
        *("--eval-every", "100000"),
    )
    assert (tmp_path / "resumed" / "policy.zip").exists()


def test_the_shipped_policy_loads_and_plans() -> None:
    from planning.rl import DEFAULT_POLICY

    assert DEFAULT_POLICY.stat().st_size < 10 * 2**20
    planner = RLPlanner()
    env = RouteEnv()
    env.reset(seed=1)
    for _ in range(20):
        assert env._obs is not None and env._perception is not None
        plan = planner.update(env._perception, env._obs.route, env._obs.ego)
        assert np.all(np.isfinite(plan.path)) and np.all(plan.speed >= 0.0)
        env.step(planner.last_action)


def test_a_constant_baseline_needs_no_file_and_keeps_the_envelope() -> None:
    planner = RLPlanner(RLPlannerSettings(policy=Path("constant:1,0")))
    env = RouteEnv()
    env.reset(seed=1)
    assert env._obs is not None and env._perception is not None
    planner.update(env._perception, env._obs.route, env._obs.ego)
    np.testing.assert_array_equal(planner.last_action, [1.0, 0.0, -1.0])  # never stops at lines
    stopping = RLPlanner(RLPlannerSettings(policy=Path("constant:1,0,1")))
    stopping.update(env._perception, env._obs.route, env._obs.ego)
    np.testing.assert_array_equal(stopping.last_action, [1.0, 0.0, 1.0])
    for bad in ("constant:2,0", "constant:1", "constant:a,b", "constant:1,0,0,0"):
        with pytest.raises(PolicyError, match="constant:A0,A1"):
            RLPlanner(RLPlannerSettings(policy=Path(bad)))


def test_compare_tabulates_evaluations(tmp_path: Path) -> None:
    from launch.planner_cli import compare
    from sim.errors import DrivestackError

    def summary(name: str, scores: list[float], red: float) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        episodes = [
            {"scenario": sc, "seed": 100, "driving_score": ds}
            for sc, ds in zip(("a", "a", "b"), scores, strict=True)
        ]
        data = {
            "n_routes": 3,
            "driving_score": sum(scores) / 3,
            "driving_score_ci95": 1.0,
            "route_completion": 100.0,
            "route_completion_ci95": 0.0,
            "infraction_penalty": 0.9,
            "infraction_penalty_ci95": 0.01,
            "infractions_per_km": {"red_light": red, "route_dev": 0.0},
            "total_km_driven": 1.2,
            "stack": {"planner": name, "controller": "pid"},
            "episodes": episodes,
        }
        (folder / "summary.json").write_text(json.dumps(data))
        return folder

    text = compare(
        [f"RL={summary('rl', [80, 90, 70], 0.5)}", str(summary("rules", [100, 90, 95], 0))]
    )
    assert "| RL | rl | pid | 3 | 80.0 ± 1.0 |" in text
    assert "| a | 85.0 | 95.0 |" in text and "| b | 70.0 | 95.0 |" in text
    assert "| red_light | 0.50 | 0.00 |" in text and "route_dev" not in text
    with pytest.raises(DrivestackError, match=r"summary\.json"):
        compare([str(tmp_path / "nowhere")])


class _OldLayout(gym.Env):
    """The observation layout before the previous action was dropped (150 floats)."""

    observation_space = gym.spaces.Box(-1000.0, 1000.0, (150,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        return np.zeros(150, np.float32), {}

    def step(self, action: np.ndarray) -> tuple:
        return np.zeros(150, np.float32), 0.0, True, False, {}


class _TwoActions(gym.Env):
    """The action space before "stop at the next line" (speed and offset only)."""

    observation_space = observation_space()
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action: np.ndarray) -> tuple:
        return np.zeros(self.observation_space.shape, np.float32), 0.0, True, False, {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (_TwoActions, r"action space Box\(2,\).*Box\(3,\).*retrain"),  # before the stop channel
        (_OldLayout, r"Box\(150,\).*Box\(149,\).*retrain"),  # with the previous action
    ],
)
def test_a_policy_for_other_spaces_is_refused(
    tmp_path: Path, env: type[gym.Env], message: str
) -> None:
    model = PPO("MlpPolicy", env(), n_steps=64, batch_size=64, device="cpu")
    path = tmp_path / "other.zip"
    model.save(str(path))
    with pytest.raises(PolicyMismatchError, match=message):
        RLPlanner(RLPlannerSettings(policy=path))
