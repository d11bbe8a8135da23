"""Training the RL planner with stable-baselines3: PPO or SAC on ``drivestack/Route-v0``.

One run writes, under its output directory::

    config.json            the TrainSettings and EnvSettings of the run, and package versions
    policy.zip             the final policy (SB3 format)
    vecnormalize.pkl       the observation/reward normalisation statistics to use with it
    best/best_model.zip    the policy that scored best in the evaluation callback
    best/vecnormalize.pkl  the normalisation statistics at that moment
    checkpoints/           rl_model_<steps>_steps.zip + rl_model_vecnormalize_<steps>_steps.pkl
    tb/                    TensorBoard logs (``tensorboard --logdir <out>/tb``)
    eval/evaluations.npz   the evaluation callback's returns

Seeding happens in one place (:func:`train`): the vector environments get ``seed + rank``, the
evaluation environment ``seed + 10_000``, and SB3 ``seed``. Loading a ``.zip`` or ``.pkl``
unpickles it: load only files you trust.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import get_schedule_fn
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecNormalize,
    sync_envs_normalization,
)

from planning.env import EnvSettings, RouteEnv, action_space, observation_space
from sim.errors import DrivestackError

log = logging.getLogger(__name__)

ALGOS = ("ppo", "sac")
POLICY_FILE = "policy.zip"
VECNORM_FILE = "vecnormalize.pkl"


@dataclass(frozen=True)
class PPOSettings:
    n_steps: int = 1024  # per environment between updates
    batch_size: int = 256
    n_epochs: int = 5
    learning_rate: float = 3e-4
    gamma: float = 0.99  # 10 s horizon at 10 Hz
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    log_std_init: float = -0.7
    net_arch: tuple[int, ...] = (128, 128)


@dataclass(frozen=True)
class SACSettings:
    buffer_size: int = 300_000
    batch_size: int = 256
    learning_rate: float = 3e-4
    gamma: float = 0.99
    learning_starts: int = 2_000
    train_freq: int = 1
    gradient_steps: int = 1
    net_arch: tuple[int, ...] = (256, 256)


@dataclass(frozen=True)
class BCSettings:
    """The imitation warm start (PPO only): DAgger rounds with the rule planner as teacher.

    The teacher sees the noise-free ground truth; the student sees the noisy observation. Round
    one drives with the teacher's actions, later rounds with the student's (labelled by the
    teacher), and the student is fitted to everything gathered so far after each round, by the
    Gaussian log-likelihood of the teacher's action under the policy's distribution (its mean and
    its state-independent log standard deviation, fitted together: a squared error weighted per
    action dimension by 1/σ², so speed and offset are balanced by how well each is fitted). The
    critic is fitted to the discounted (normalised) returns of the same rollouts, so the first
    PPO updates start from a value function that fits the policy.

    :param steps: environment steps gathered over all rounds (0: no warm start)
    :param rounds: DAgger rounds
    :param epochs: passes over the data after each round
    :param log_std: the policy's log standard deviations (speed, offset, stop at the line) when
        PPO takes over
    """

    steps: int = 0
    rounds: int = 4
    epochs: int = 8
    batch_size: int = 512
    learning_rate: float = 1e-3
    log_std: tuple[float, float, float] = (-1.6, -2.3, -1.6)
    ppo_learning_rate: float = 1e-4  # gentler RL updates that keep what imitation taught
    ppo_clip_range: float = 0.1


@dataclass(frozen=True)
class TrainSettings:
    """One training run; saved as ``config.json`` beside the policy.

    :param timesteps: environment steps (decisions, 0.1 s each) over all environments
    :param n_envs: parallel environments (``SubprocVecEnv`` when more than one)
    :param checkpoint_every: environment steps between checkpoints (over all environments)
    :param eval_every: environment steps between evaluations (over all environments)
    :param eval_episodes: episodes per evaluation (seeded, so comparable between evaluations)
    :param torch_threads: threads of the learner's torch (the environments need the cores)
    """

    algo: str = "ppo"
    timesteps: int = 1_000_000
    n_envs: int = 2
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 100_000
    eval_every: int = 50_000
    eval_episodes: int = 8
    torch_threads: int = 1
    norm_reward: bool = True
    bc: BCSettings = field(default_factory=BCSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    sac: SACSettings = field(default_factory=SACSettings)
    env: EnvSettings = field(default_factory=EnvSettings)


def _vec_env(cfg: TrainSettings, n: int, seed: int, teacher: bool = False) -> VecEnv:
    env_kwargs = {"settings": replace(cfg.env, teacher=teacher)}
    if n > 1:
        return make_vec_env(
            RouteEnv,
            n_envs=n,
            seed=seed,
            env_kwargs=env_kwargs,
            vec_env_cls=SubprocVecEnv,
            vec_env_kwargs={"start_method": "forkserver"},
        )
    return make_vec_env(
        RouteEnv, n_envs=1, seed=seed, env_kwargs=env_kwargs, vec_env_cls=DummyVecEnv
    )


def _new_model(cfg: TrainSettings, venv: VecEnv, tb: str) -> BaseAlgorithm:
    if cfg.algo == "ppo":
        p = cfg.ppo
        # a tiny budget (a smoke test) still makes one full rollout and one update
        n_steps = max(16, min(p.n_steps, cfg.timesteps // cfg.n_envs))
        return PPO(
            "MlpPolicy",
            venv,
            n_steps=n_steps,
            batch_size=min(p.batch_size, n_steps * cfg.n_envs),
            n_epochs=p.n_epochs,
            learning_rate=p.learning_rate,
            gamma=p.gamma,
            gae_lambda=p.gae_lambda,
            clip_range=p.clip_range,
            ent_coef=p.ent_coef,
            policy_kwargs={
                "net_arch": list(p.net_arch),
                "log_std_init": p.log_std_init,
                "activation_fn": torch.nn.Tanh,
            },
            tensorboard_log=tb,
            seed=cfg.seed,
            device=cfg.device,
            verbose=0,
        )
    s = cfg.sac
    return SAC(
        "MlpPolicy",
        venv,
        buffer_size=s.buffer_size,
        batch_size=s.batch_size,
        learning_rate=s.learning_rate,
        gamma=s.gamma,
        learning_starts=s.learning_starts,
        train_freq=s.train_freq,
        gradient_steps=s.gradient_steps,
        policy_kwargs={"net_arch": list(s.net_arch)},
        tensorboard_log=tb,
        seed=cfg.seed,
        device=cfg.device,
        verbose=0,
    )


def check_settings(cfg: TrainSettings) -> None:
    if cfg.algo not in ALGOS:
        raise DrivestackError(f"--algo {cfg.algo!r}: allowed: {', '.join(ALGOS)}")
    if cfg.timesteps <= 0 or cfg.n_envs <= 0:
        raise DrivestackError("--timesteps and --n-envs must be positive")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise DrivestackError(f"--device {cfg.device}: no CUDA device here; use --device cpu")


def vecnormalize_beside(checkpoint: Path) -> Path:
    """The VecNormalize statistics saved with a policy or a checkpoint."""
    m = re.fullmatch(r"(.*)_(\d+)_steps\.zip", checkpoint.name)
    if m:
        return checkpoint.with_name(f"{m.group(1)}_vecnormalize_{m.group(2)}_steps.pkl")
    return checkpoint.with_name(VECNORM_FILE)


class _SeededEval(EvalCallback):
    """An :class:`EvalCallback` whose every evaluation runs the same seeded episodes, so their
    scores compare policies rather than draws."""

    def __init__(self, eval_env: VecEnv, seed: int, **kwargs: Any) -> None:
        super().__init__(eval_env, **kwargs)
        self.eval_seed = seed

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.eval_env.seed(self.eval_seed)
        return super()._on_step()

    def evaluate_now(self, model: BaseAlgorithm, venv: VecNormalize, out: Path) -> float:
        """Score ``model`` now (the warm start) on the same episodes and keep it as the best
        so far: it is a candidate like every later evaluation."""
        sync_envs_normalization(venv, self.eval_env)
        self.eval_env.seed(self.eval_seed)
        rewards, _ = evaluate_policy(
            model, self.eval_env, n_eval_episodes=self.n_eval_episodes, deterministic=True
        )
        score = float(np.mean(rewards))
        self.best_mean_reward = score
        best = out / "best"
        best.mkdir(parents=True, exist_ok=True)
        model.save(str(best / "best_model.zip"))
        venv.save(str(best / VECNORM_FILE))
        log.info("warm start: mean evaluation return %.1f", score)
        return score


class _SaveStats(BaseCallback):
    """Saves the training normalisation beside the evaluation callback's new best policy."""

    def __init__(self, venv: VecNormalize, path: Path) -> None:
        super().__init__()
        self.venv, self.path = venv, path

    def _on_step(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.venv.save(str(self.path))
        return True


def train(
    cfg: TrainSettings, out: Path, resume: Path | None = None, progress_bar: bool = False
) -> Path:
    """Train (or resume) and return the path of the saved policy ``out/policy.zip``."""
    check_settings(cfg)
    torch.set_num_threads(cfg.torch_threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(run_config(cfg, resume), indent=2) + "\n")
    run_start = time.perf_counter()
    venv_raw = _vec_env(cfg, cfg.n_envs, cfg.seed)
    eval_raw = _vec_env(cfg, 1, cfg.seed + 10_000)
    model: BaseAlgorithm
    warm = False
    if resume is not None:
        if not resume.exists():
            raise DrivestackError(f"--resume {resume}: no such file")
        stats = vecnormalize_beside(resume)
        if not stats.exists():
            raise DrivestackError(f"--resume {resume}: its normalisation {stats} is missing")
        venv = VecNormalize.load(str(stats), venv_raw)
        venv.training = True
        algo_cls = PPO if cfg.algo == "ppo" else SAC
        model = algo_cls.load(str(resume), env=venv, device=cfg.device)
        model.tensorboard_log = str(out / "tb")
    else:
        venv = VecNormalize(
            venv_raw, norm_obs=True, norm_reward=cfg.norm_reward, clip_obs=10.0, gamma=0.99
        )
        model = _new_model(cfg, venv, str(out / "tb"))
        if cfg.bc.steps > 0:
            if not isinstance(model, PPO):
                raise DrivestackError("the imitation warm start (--bc-steps) is for PPO only")
            warm_start(model, venv, cfg, out)
            warm = True
    eval_env = VecNormalize(eval_raw, norm_obs=True, norm_reward=False, training=False)
    per_env = max(1, cfg.n_envs)
    evaluator = _SeededEval(
        eval_env,
        cfg.seed + 10_000,
        n_eval_episodes=cfg.eval_episodes,
        eval_freq=max(1, cfg.eval_every // per_env),
        best_model_save_path=str(out / "best"),
        callback_on_new_best=_SaveStats(venv, out / "best" / VECNORM_FILE),
        log_path=str(out / "eval"),
        deterministic=True,
    )
    warm_score = evaluator.evaluate_now(model, venv, out) if warm else None
    callbacks = CallbackList(
        [
            CheckpointCallback(
                save_freq=max(1, cfg.checkpoint_every // per_env),
                save_path=str(out / "checkpoints"),
                save_vecnormalize=True,
            ),
            evaluator,
        ]
    )
    start = time.perf_counter()
    model.learn(
        total_timesteps=cfg.timesteps,
        callback=callbacks,
        tb_log_name=f"{cfg.algo}_seed{cfg.seed}",
        reset_num_timesteps=resume is None,
        progress_bar=progress_bar,
    )
    elapsed = time.perf_counter() - start
    policy = out / POLICY_FILE
    model.save(str(policy))
    venv.save(str(out / VECNORM_FILE))
    venv.close()
    eval_env.close()
    log.info(
        "trained %d steps in %.0f s (%.0f steps/s)", cfg.timesteps, elapsed, cfg.timesteps / elapsed
    )
    done = json.loads((out / "config.json").read_text())
    done["result"] = {
        "rl_wall_time_s": round(elapsed, 1),
        "rl_steps_per_s": round(cfg.timesteps / max(elapsed, 1e-9), 1),
        "total_wall_time_s": round(time.perf_counter() - run_start, 1),  # warm start included
        "num_timesteps": int(model.num_timesteps),
        "warm_start_eval_mean_return": warm_score,
        "eval_mean_returns": [float(np.mean(r)) for r in evaluator.evaluations_results],
        "best_eval_mean_return": float(evaluator.best_mean_reward),
    }
    (out / "config.json").write_text(json.dumps(done, indent=2) + "\n")
    return policy


def run_config(cfg: TrainSettings, resume: Path | None) -> dict[str, Any]:
    """What ``config.json`` holds: every setting, where it resumed from, and the versions."""
    return {
        "train": asdict(cfg),
        "resume": str(resume) if resume is not None else None,
        "env_id": "drivestack/Route-v0",
        "observation_space": repr(observation_space()),
        "action_space": repr(action_space()),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gym.__version__,
            "numpy": np.__version__,
        },
    }


# ------------------------------------------------------------------------------ warm start
def warm_start(model: PPO, venv: VecNormalize, cfg: TrainSettings, out: Path) -> None:
    """DAgger with the rule planner (see :class:`BCSettings`); leaves ``venv``'s normalisation
    statistics as gathered on the teacher's environments."""
    bc = cfg.bc
    teach_raw = _vec_env(cfg, cfg.n_envs, cfg.seed + 20_000, teacher=True)
    teach = VecNormalize(
        teach_raw, norm_obs=True, norm_reward=cfg.norm_reward, clip_obs=10.0, gamma=0.99
    )
    obs_all: list[np.ndarray] = []
    act_all: list[np.ndarray] = []
    ret_all: list[np.ndarray] = []
    per_round = max(1, bc.steps // max(bc.rounds, 1) // cfg.n_envs)
    obs: Any = teach.reset()
    labels = np.stack([info["teacher_action"] for info in teach.venv.reset_infos])
    policy = model.policy
    optim = torch.optim.Adam(policy.parameters(), lr=bc.learning_rate)
    start = time.perf_counter()
    for rnd in range(max(bc.rounds, 1)):
        o_buf, a_buf, r_buf, d_buf = [], [], [], []
        for _ in range(per_round):
            if rnd == 0:
                act = labels
            else:
                act, _ = model.predict(obs, deterministic=True)
            o_buf.append(obs.copy())
            a_buf.append(labels.copy())
            obs, rew, done, infos = teach.step(act)
            r_buf.append(rew)
            d_buf.append(done)
            labels = np.stack(
                [
                    teach.venv.reset_infos[i]["teacher_action"]
                    if done[i]
                    else info["teacher_action"]
                    for i, info in enumerate(infos)
                ]
            )
        obs_all.append(np.concatenate(o_buf))
        act_all.append(np.concatenate(a_buf))
        ret_all.append(_returns(np.array(r_buf), np.array(d_buf), cfg.ppo.gamma).reshape(-1))
        loss = _fit(policy, optim, obs_all, act_all, ret_all, bc)
        log.info(
            "warm start round %d: %d samples, policy loss %.4f, value loss %.4f (%.0f s)",
            rnd + 1,
            sum(len(a) for a in act_all),
            loss[0],
            loss[1],
            time.perf_counter() - start,
        )
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor(bc.log_std, dtype=policy.log_std.dtype))
    model.learning_rate = bc.ppo_learning_rate
    model._setup_lr_schedule()
    model.clip_range = get_schedule_fn(bc.ppo_clip_range)
    venv.obs_rms = teach.obs_rms.copy()
    venv.ret_rms = teach.ret_rms.copy()
    teach.save(str(out / "warm_start_vecnormalize.pkl"))
    model.save(str(out / "warm_start.zip"))
    teach.close()


def _returns(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted returns-to-go ``(T, E)`` of rewards ``(T, E)``, cut at episode ends."""
    ret = np.zeros_like(rewards, dtype=np.float64)
    acc = np.zeros(rewards.shape[1])
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc * (1.0 - dones[t])
        ret[t] = acc
    return ret


def _fit(
    policy: Any,
    optim: torch.optim.Optimizer,
    obs: list[np.ndarray],
    act: list[np.ndarray],
    ret: list[np.ndarray],
    bc: BCSettings,
) -> tuple[float, float]:
    """Fit the policy to the teacher's actions (Gaussian log-likelihood) and its value to the
    returns; returns the last epoch's mean policy and value losses."""
    o = torch.as_tensor(np.concatenate(obs), dtype=torch.float32, device=policy.device)
    a = torch.as_tensor(np.concatenate(act), dtype=torch.float32, device=policy.device)
    r = torch.as_tensor(np.concatenate(ret), dtype=torch.float32, device=policy.device)
    n = len(o)
    gen = torch.Generator().manual_seed(0)
    pl = vl = 0.0
    for _ in range(bc.epochs):
        perm = torch.randperm(n, generator=gen)
        pl = vl = 0.0
        batches = 0
        for k in range(0, n, bc.batch_size):
            idx = perm[k : k + bc.batch_size]
            dist = policy.get_distribution(o[idx])
            loss_pi = -dist.log_prob(a[idx]).mean()
            loss_v = torch.nn.functional.mse_loss(policy.predict_values(o[idx]).squeeze(-1), r[idx])
            optim.zero_grad()
            (loss_pi + 0.5 * loss_v).backward()
            optim.step()
            pl += loss_pi.item()
            vl += loss_v.item()
            batches += 1
        pl, vl = pl / max(batches, 1), vl / max(batches, 1)
    return pl, vl
