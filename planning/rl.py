"""The RL planner stage: ``RLPlanner.update(perception, route, ego) -> Plan``.

It loads a stable-baselines3 policy (``.zip``) and the VecNormalize statistics it was trained
with (``vecnormalize.pkl`` beside it), encodes each ``PerceptionOutput`` exactly as
``drivestack/Route-v0`` does (:class:`planning.encoding.ObservationEncoder`), and turns the
policy's deterministic action into a smooth plan (:class:`planning.encoding.PlanMaker`). It
decides every ``decision_dt_s`` (10 Hz, the environment's rate) and returns the same plan in
between; the controller re-expresses it in the current ego frame.

The plan's speed is bounded by the same safety envelope as in training
(:func:`planning.encoding.envelope_profile`).

``constant:A0,A1[,A2]`` instead of a file is a baseline with no learning: it always takes the
action ``(A0, A1, A2)`` (A2 defaults to -1, never stop at a line; ``constant:1,0`` drives at the
limit on the centreline, behind the envelope). It shows what the envelope does alone, and so
what the learned policy decides.

A policy whose observation or action space differs from the environment's is refused with a
:class:`PolicyMismatchError` that says what it expected. Loading a ``.zip`` or ``.pkl`` unpickles
it: load only files you trust.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.encoding import (
    ACTION_SIZE,
    ActionSettings,
    EncoderSettings,
    ObservationEncoder,
    PlanMaker,
)
from planning.env import action_space, observation_space
from sim.errors import DrivestackError
from sim.messages import PerceptionOutput, Plan, RouteAhead, VehicleState

POLICY_DIR = Path(__file__).parent / "policies"
DEFAULT_POLICY = POLICY_DIR / "ppo_route.zip"
CONSTANT_PREFIX = "constant:"


class PolicyError(DrivestackError):
    """A policy file that cannot be used."""


class PolicyMismatchError(PolicyError):
    """A policy trained for other observation or action spaces than the environment's."""


@dataclass(frozen=True)
class RLPlannerSettings:
    """:param policy: the SB3 ``.zip``
    :param vecnormalize: its VecNormalize statistics (default: ``vecnormalize.pkl`` beside the
        policy, or ``<stem>_vecnormalize.pkl``)
    :param decision_dt_s: time between decisions (s), the environment's ``planner_dt_s``
    :param device: torch device of the policy
    """

    policy: Path = DEFAULT_POLICY
    vecnormalize: Path | None = None
    decision_dt_s: float = 0.1
    device: str = "cpu"
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    action: ActionSettings = field(default_factory=ActionSettings)


def stats_path(policy: Path) -> Path:
    """Where the VecNormalize statistics of ``policy`` are looked for: ``<stem>_vecnormalize.pkl``
    (the shipped files), a checkpoint's ``rl_model_vecnormalize_<N>_steps.pkl``, else
    ``vecnormalize.pkl`` beside it (a training run's ``policy.zip`` and ``best/``)."""
    named = policy.with_name(f"{policy.stem}_vecnormalize.pkl")
    m = re.fullmatch(r"(.*)_(\d+)_steps\.zip", policy.name)
    if m:
        named = policy.with_name(f"{m.group(1)}_vecnormalize_{m.group(2)}_steps.pkl")
    return named if named.exists() else policy.with_name("vecnormalize.pkl")


def load_policy(path: Path, device: str = "cpu") -> Any:
    """Load a PPO or SAC ``.zip`` and check its spaces against ``drivestack/Route-v0``'s."""
    from stable_baselines3 import PPO, SAC  # imports torch: only when a policy is loaded

    if not path.exists():
        raise PolicyError(
            f"RL policy {path} does not exist; train one with `python -m launch planner train` "
            "or pass --policy PATH"
        )
    errors = []
    for cls in (PPO, SAC):
        try:
            model = cls.load(str(path), device=device)
            break
        except Exception as exc:  # SB3 raises several types for a file of the other algorithm
            errors.append(f"{cls.__name__}: {exc}")
    else:
        raise PolicyError(f"RL policy {path} is not a PPO or SAC file ({'; '.join(errors)})")
    check_spaces(model.observation_space, model.action_space, path)
    return model


def check_spaces(obs_space: Any, act_space: Any, path: Path) -> None:
    """Raise :class:`PolicyMismatchError` unless the spaces are the environment's."""
    want_obs, want_act = observation_space(), action_space()
    for what, got, want in (("observation", obs_space, want_obs), ("action", act_space, want_act)):
        same = (
            type(got) is type(want)
            and got.shape == want.shape
            and np.array_equal(got.low, want.low)
            and np.array_equal(got.high, want.high)
        )
        if not same:
            raise PolicyMismatchError(
                f"RL policy {path} expects the {what} space {_describe(got)} but "
                f"drivestack/Route-v0 has {_describe(want)}: it was trained for another version "
                "of the environment; retrain it with `python -m launch planner train`"
            )


def _describe(space: Any) -> str:
    shape = getattr(space, "shape", None)
    low = getattr(space, "low", None)
    high = getattr(space, "high", None)
    if low is not None and high is not None and np.size(low):
        return f"{type(space).__name__}{shape} in [{np.min(low):g}, {np.max(high):g}]"
    return f"{type(space).__name__}{shape}"


def load_stats(path: Path) -> Any:
    """The VecNormalize object saved with a policy (used only for ``normalize_obs``)."""
    if not path.exists():
        raise PolicyError(
            f"VecNormalize statistics {path} do not exist: a policy needs the statistics it "
            "was trained with (training writes vecnormalize.pkl beside policy.zip)"
        )
    with path.open("rb") as f:
        stats = pickle.load(f)  # trusted file: the project's own training output
    mean = getattr(getattr(stats, "obs_rms", None), "mean", None)
    if mean is None or np.shape(mean) != observation_space().shape:
        raise PolicyMismatchError(
            f"VecNormalize statistics {path} are for observations of shape "
            f"{np.shape(mean) if mean is not None else '?'}, the environment's are "
            f"{observation_space().shape}"
        )
    return stats


def constant_action(policy: str) -> NDArray[np.float32] | None:
    """The action of a ``constant:A0,A1[,A2]`` baseline, or None for a policy file."""
    if not policy.startswith(CONSTANT_PREFIX):
        return None
    try:
        values = [float(v) for v in policy[len(CONSTANT_PREFIX) :].split(",")]
    except ValueError:
        values = []
    if len(values) not in (ACTION_SIZE - 1, ACTION_SIZE) or not all(
        -1.0 <= v <= 1.0 for v in values
    ):
        raise PolicyError(
            f"policy {policy!r}: a constant policy is 'constant:A0,A1' or 'constant:A0,A1,A2' "
            "with each in [-1, 1]"
        )
    if len(values) == ACTION_SIZE - 1:
        values.append(-1.0)  # never stops at a line
    return np.array(values, dtype=np.float32)


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@lru_cache(maxsize=4)
def _load(policy: str, stats: str, mtime: float, device: str) -> tuple[Any, Any]:
    """Policy and statistics, once per process (an evaluation builds a stack per episode); the
    policy's stamp is part of the key, so a retrained file is read again. The predictions are
    pure, so planners may share them."""
    return load_policy(Path(policy), device), load_stats(Path(stats))


class RLPlanner:
    """``update(perception, route, ego) -> Plan`` from a trained policy."""

    def __init__(self, settings: RLPlannerSettings | None = None) -> None:
        self.cfg = settings or RLPlannerSettings()
        policy = Path(self.cfg.policy)
        self.constant = constant_action(str(self.cfg.policy))
        self.model: Any = None
        self.stats: Any = None
        if self.constant is None:
            stats = Path(self.cfg.vecnormalize) if self.cfg.vecnormalize else stats_path(policy)
            self.model, self.stats = _load(str(policy), str(stats), _mtime(policy), self.cfg.device)
        self.encoder = ObservationEncoder(self.cfg.encoder)
        self.plan_maker = PlanMaker(self.cfg.action)
        self.reset()

    def reset(self) -> None:
        self.encoder.reset()
        self._plan: Plan | None = None
        self._decided_at = -np.inf
        self.last_action = np.zeros(ACTION_SIZE, dtype=np.float32)

    def act(
        self, perception: PerceptionOutput, route: RouteAhead, ego: VehicleState
    ) -> NDArray[np.float32]:
        """The policy's deterministic action ``(3,)`` for this moment (updates the encoder)."""
        obs = self.encoder.encode(perception, route, ego)
        if self.constant is not None:
            return self.constant.copy()
        norm = self.stats.normalize_obs(obs[None, :])
        action, _ = self.model.predict(norm, deterministic=True)
        return np.clip(np.asarray(action, dtype=np.float32).reshape(ACTION_SIZE), -1.0, 1.0)

    def update(self, perception: PerceptionOutput, route: RouteAhead, ego: VehicleState) -> Plan:
        if not perception.valid or len(route.xy) < 2:
            self._plan = None
            return self.plan_maker.make(
                np.array([-1.0, 0.0, -1.0], dtype=np.float32),
                route,
                ego,
                0.0,
                perception.t,
                perception.frame,
            )
        due = perception.t - self._decided_at >= self.cfg.decision_dt_s - 1e-6
        if self._plan is not None and not due:
            return self._plan
        action = self.act(perception, route, ego)
        limit = perception.speed_limit_mps or float(route.speed_limit_mps[0])
        self._plan = self.plan_maker.make(
            action,
            route,
            ego,
            limit,
            perception.t,
            perception.frame,
            self.encoder.obstacles,
            self.encoder.stop_line_m,
        )
        self._decided_at = perception.t
        self.last_action = action
        return self._plan
