"""``drivestack/Route-v0``: drive a route of the embedded world by choosing speed and offset.

The environment is the whole stack but the planner: the embedded world, the ground-truth
perceiver passed through a perception noise model (:mod:`planning.noise`), and a controller
(pure pursuit + PID by default, ``controller="mpc"`` where the MPC is installed). The policy is
the planner: every ``planner_dt_s`` it picks a target speed and a lateral offset, which
:class:`planning.encoding.PlanMaker` turns into a smooth :class:`~sim.messages.Plan` that the
controller tracks for the ``planner_dt_s / world_dt_s`` world ticks until the next decision.

**Observation** ``Box(-1000, 1000, (OBS_SIZE,), float32)`` (:data:`planning.encoding.OBS_LAYOUT`,
SI units, ego frame: x forward, y left):

- ego (7): speed m/s, accel m/s², steer rad, active speed limit m/s, lateral offset from the
  route centreline m, heading error rad, route remaining m (≤ 100); not the previous action
  (causal confusion: imitation would learn "keep doing what you did");
- route (10 × 5): at 2, 5, 10, 15, 20, 30, 40, 50, 65 and 80 m along the route: x m, y m,
  speed limit m/s, in a junction (0/1), lane on the left (+1 same direction, -1 opposite, 0);
- objects (6 × 11): the nearest detected vehicles and pedestrians within 60 m: present, is
  vehicle, is pedestrian, distance along the route from the front bumper m, offset from the
  centreline m, x m, y m, cos and sin of their heading, speed m/s, time standing s (≤ 10);
- leader (8): the nearest object on the ego's path (pedestrians also 1 s and 2 s ahead): present,
  bumper gap m (≤ 100), speed along the path m/s, the speed that stops in the gap at 3 m/s² m/s,
  time standing s, kind of the lane on its left, that lane free (0/1), a junction within 30 m;
- light (8): the light governing the lane: present, red, yellow, green, unknown, distance from the
  front bumper to its stop line m (≤ 100), the speed that stops there at 3 m/s², and for a
  yellow whether it was stoppable at 3 m/s² when first seen (0/1: the dilemma zone is decided
  once, at the onset);
- sign (6): the next stop or yield line: stop, yield, distance m, stood there already (0/1), a
  vehicle moving in its junction (0/1), the speed that stops there at 3 m/s²;
- limit (2): value m/s and distance m of the next speed-limit sign;
- junction (2): distance to the next junction along the route m (≤ 100), inside one (0/1).

**Action** ``Box(-1, 1, (3,), float32)``: target speed as a share of the active limit
(-1 → stop, +1 → the limit), lateral offset left of the centreline (±1 → ±3.5 m), and whether
to stop at the next stop line (> 0: the plan comes to rest 1.5 m before the next light's or
stop/yield sign's line the encoder sees; nothing without one); see
:class:`planning.encoding.ActionSettings`. The planned speed is bounded by the safety envelope
(:func:`planning.encoding.envelope_profile`: never faster than the speed from which the ego still
stops behind the object on its planned path if that object brakes hard); whether to stop for
lights and signs, and yielding, stay the policy's decisions.

**Reward** per decision, the sum of the named parts in ``info["reward_parts"]``, shaped like the
Leaderboard's driving score (DS = RC × Π coefficients, so on a route of ``100 /
progress_per_m`` metres each part is the change of DS it stands for):

- ``progress``: ``progress_per_m`` × metres of route completed (the Leaderboard's RC);
- ``collision``, ``red_light``, ``stop_sign``, ``scenario_timeout``: ``−infraction_scale ×
  (1 − coefficient)`` per event (pedestrian 0.5, vehicle 0.6, layout 0.65, red light 0.7, stop
  0.8, scenario timeout 0.7);
- ``outside_lanes``: ``−progress_per_m`` × metres driven outside the route's lanes;
- ``min_speed``: ``−infraction_scale × 0.3 × (1 − pct/100)`` when a min-speed checkpoint closes;
- ``route_dev``: ``−route_dev_penalty`` when the ego leaves the route by 30 m;
- ``discomfort``: ``−∫ (w_a a² + w_lat a_lat² + w_jerk j²) dt`` over the decision's ticks.

**Termination**: the route is completed, the ego deviates from it (30 m), or (with
``terminate_on_collision``, the default for training) it collides. **Truncation**: the route's
timeout (``route length / 3 m/s + 40 s``) or the agent blocked for 180 s, both the world's.

**Scenarios** are drawn from the seed (``reset(seed=...)``): one of the training maps, a random
route, random traffic and pedestrians, the ego's initial speed, and on the maps without
junctions one of a braking lead vehicle, a crossing pedestrian or a parked car at a random place.
Two rollouts with the same seed and actions are identical.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from control.base import Controller
from control.pid import PIDController
from planning.encoding import (
    ACTION_SIZE,
    OBS_LIMIT,
    OBS_SIZE,
    ActionSettings,
    EncoderSettings,
    ObservationEncoder,
    PlanMaker,
)
from planning.noise import NoiseSettings, PerceptionNoise
from planning.rules import RulePlanner
from planning.truth import VectorGroundTruthPerceiver
from sim.errors import DrivestackError, ScenarioError
from sim.messages import Event, LightState, Observation, PerceptionOutput
from sim.metrics import MIN_SPEED_PENALTY_VALUE, PENALTY_COEFFICIENTS
from sim.scenario import Scenario
from sim.world import EmbeddedWorld

ENV_ID = "drivestack/Route-v0"
CONTROLLERS = ("pid", "mpc")

REWARD_PARTS = (
    "progress",
    "collision",
    "red_light",
    "stop_sign",
    "scenario_timeout",
    "outside_lanes",
    "min_speed",
    "route_dev",
    "discomfort",
)
_EVENT_PART = {
    "collisions_pedestrian": "collision",
    "collisions_vehicle": "collision",
    "collisions_layout": "collision",
    "red_light": "red_light",
    "stop_infraction": "stop_sign",
    "scenario_timeouts": "scenario_timeout",
}


@dataclass(frozen=True)
class RewardSettings:
    """Weights of the reward's parts (see the module docstring)."""

    progress_per_m: float = 0.25  # a 400 m route is worth 100, like RC
    infraction_scale: float = 100.0
    route_dev_penalty: float = 50.0
    accel_weight: float = 0.005  # per (m/s²)² s
    lat_accel_weight: float = 0.005  # per (m/s²)² s
    jerk_weight: float = 0.0005  # per (m/s³)² s


@dataclass(frozen=True)
class MapTraffic:
    """Traffic ranges drawn for one training map (inclusive integer ranges)."""

    name: str
    weight: float
    vehicles: tuple[int, int]
    pedestrians: tuple[int, int]
    scripted_events: bool  # no junctions: scripted events can go anywhere on the route


@dataclass(frozen=True)
class EnvSettings:
    """:param maps: training maps with their traffic (``town_small`` is held out)
    :param route_length_m: range of the random route's minimum length (m)
    :param ego_speed_mps: range of the ego's initial speed (m/s)
    :param event_prob: probability of one scripted event on a map that allows them (a
        crossing pedestrian half the time, a braking leader or a parked car a quarter each)
    :param world_dt_s: the world's fixed step (s)
    :param planner_dt_s: time between decisions (s), a multiple of ``world_dt_s``
    :param controller: ``pid`` or ``mpc``
    """

    maps: tuple[MapTraffic, ...] = (
        MapTraffic("town_grid", 0.6, (5, 40), (0, 20), False),
        MapTraffic("country_road", 0.25, (0, 6), (0, 0), True),
        MapTraffic("multi_lane", 0.15, (5, 25), (0, 0), True),
    )
    route_length_m: tuple[float, float] = (250.0, 500.0)
    ego_speed_mps: tuple[float, float] = (0.0, 12.0)
    event_prob: float = 0.6
    world_dt_s: float = 0.1
    planner_dt_s: float = 0.1
    controller: str = "pid"
    terminate_on_collision: bool = True
    teacher: bool = False  # run the rule planner on noise-free perception: info["teacher_action"]
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    action: ActionSettings = field(default_factory=ActionSettings)
    reward: RewardSettings = field(default_factory=RewardSettings)

    @property
    def action_repeat(self) -> int:
        return max(1, round(self.planner_dt_s / self.world_dt_s))


def make_controller(name: str) -> Controller:
    """The controller a name means; ``mpc`` needs ``control.mpc_controller``."""
    if name == "pid":
        return PIDController()
    if name == "mpc":
        try:
            from control.mpc_controller import MPCController
        except ImportError as exc:
            raise DrivestackError(f"controller 'mpc' is not available here: {exc}") from exc
        return MPCController()
    raise DrivestackError(f"unknown controller {name!r}; allowed: {', '.join(CONTROLLERS)}")


def observation_space() -> gym.spaces.Box:
    return gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (OBS_SIZE,), np.float32)


def action_space() -> gym.spaces.Box:
    return gym.spaces.Box(-1.0, 1.0, (ACTION_SIZE,), np.float32)


def sample_scenario(rng: np.random.Generator, cfg: EnvSettings, name: str = "rl_train") -> Scenario:
    """A random training scenario (a pure function of ``rng``'s state)."""
    weights = np.array([m.weight for m in cfg.maps])
    mt = cfg.maps[int(rng.choice(len(cfg.maps), p=weights / weights.sum()))]
    length = float(rng.uniform(*cfg.route_length_m))
    events: list[dict[str, Any]] = []
    # at most one scripted event per route, so they do not interfere with each other
    kind = int(rng.integers(4)) if mt.scripted_events and rng.random() < cfg.event_prob else -1
    if kind == 0:
        events.append(
            {
                "type": "lead_vehicle_brakes",
                "gap_m": float(rng.uniform(15.0, 35.0)),
                "speed_mps": float(rng.uniform(7.0, 14.0)),
                "brake_at_route_m": float(rng.uniform(30.0, length - 120.0)),
                "decel_mps2": float(rng.uniform(3.0, 8.0)),
                "stop_s": float(rng.uniform(0.0, 5.0)),
            }
        )
    elif kind in (1, 2):
        events.append(
            {
                "type": "pedestrian_crossing",
                "at_route_m": float(rng.uniform(60.0, length - 40.0)),
                "trigger_distance_m": float(rng.uniform(25.0, 50.0)),
                "speed_mps": float(rng.uniform(1.0, 2.0)),
                "from_side": "right" if rng.random() < 0.5 else "left",
            }
        )
    elif kind == 3:
        events.append(
            {
                "type": "parked_vehicle",
                "at_route_m": float(rng.uniform(60.0, length - 60.0)),
                "clear_within_s": 60.0,
            }
        )
    return Scenario.model_validate(
        {
            "name": name,
            "map": mt.name,
            "route": {"random": {"min_length_m": length}},
            "ego": {"speed_mps": float(rng.uniform(*cfg.ego_speed_mps))},
            "traffic": {
                "vehicles": int(rng.integers(mt.vehicles[0], mt.vehicles[1] + 1)),
                "pedestrians": int(rng.integers(mt.pedestrians[0], mt.pedestrians[1] + 1)),
            },
            "events": events,
            "timeout_s": length / 3.0 + 40.0,
            "dt": cfg.world_dt_s,
        }
    )


class RouteEnv(gym.Env[np.ndarray, np.ndarray]):
    """The RL planner's environment; the module docstring is its spec."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self, settings: EnvSettings | None = None, scenario: Scenario | None = None
    ) -> None:
        """:param settings: the environment's configuration
        :param scenario: run this scenario on every reset (its world seed still comes from the
            reset's seed) instead of drawing one"""
        self.cfg = settings or EnvSettings()
        if self.cfg.controller not in CONTROLLERS:
            raise DrivestackError(
                f"unknown controller {self.cfg.controller!r}; allowed: {', '.join(CONTROLLERS)}"
            )
        self.fixed_scenario = scenario
        self.observation_space = observation_space()
        self.action_space = action_space()
        self.world = EmbeddedWorld()
        self.perceiver = VectorGroundTruthPerceiver()
        self.noise = PerceptionNoise(self.cfg.noise)
        self.encoder = ObservationEncoder(self.cfg.encoder)
        self.plan_maker = PlanMaker(self.cfg.action)
        self.controller = make_controller(self.cfg.controller)
        self.teacher = RulePlanner() if self.cfg.teacher else None
        # the teacher reads each light's state as old as the student's encoder does (the noise
        # model's delay, then the encoder's confirmation of a change): _teacher_action
        lag = self.cfg.noise.delay_frames + round(
            self.cfg.encoder.light_confirm_s / self.cfg.planner_dt_s
        )
        self._light_states: deque[dict[int, LightState]] = deque(maxlen=lag + 1)
        self._obs: Observation | None = None
        self._perception: PerceptionOutput | None = None

    # -------------------------------------------------------------------------------- reset
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        for _ in range(20):  # a drawn scenario may not fit its route: draw again
            scenario = self.fixed_scenario or sample_scenario(rng, self.cfg)
            world_seed = int(rng.integers(2**31 - 1))
            try:
                obs = self.world.reset(scenario, world_seed)
                break
            except ScenarioError:
                if self.fixed_scenario is not None:
                    raise
        else:  # pragma: no cover - twenty unusable draws in a row
            raise ScenarioError("could not draw a usable training scenario in 20 tries")
        self.scenario = scenario
        self.noise.reset(np.random.default_rng(int(rng.integers(2**31 - 1))))
        self.encoder.reset()
        self.controller.reset()
        if self.teacher is not None:
            self.teacher.reset()
        self._light_states.clear()
        self._obs = obs
        self._progress = self.world.monitor.progress_m
        self._outside = self.world.monitor.outside_m
        self._checkpoints = 0
        self._last_accel = obs.ego.accel
        info: dict[str, Any] = {"scenario": scenario.name, "map": scenario.map}
        encoded = self._encode(obs)
        if self.teacher is not None:
            info["teacher_action"] = self._teacher_action(obs)
        return encoded, info

    # --------------------------------------------------------------------------------- step
    def step(
        self, action: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        assert self._obs is not None and self._perception is not None, "call reset() first"
        cfg = self.cfg
        act = np.clip(np.asarray(action, dtype=np.float32).reshape(ACTION_SIZE), -1.0, 1.0)
        obs = self._obs
        limit = self._perception.speed_limit_mps or float(obs.route.speed_limit_mps[0])
        plan = self.plan_maker.make(
            act,
            obs.route,
            obs.ego,
            limit,
            obs.t,
            obs.frame,
            self.encoder.obstacles,
            self.encoder.stop_line_m,
        )
        events: list[Event] = []
        discomfort = 0.0
        w = cfg.reward
        dt = cfg.world_dt_s
        for _ in range(cfg.action_repeat):
            control = self.controller.update(plan, obs.ego)
            obs = self.world.step(control)
            events.extend(obs.events)
            e = obs.ego
            lat = e.speed**2 * math.tan(e.steer) / cfg.encoder.ego.wheelbase_m
            jerk = (e.accel - self._last_accel) / dt
            self._last_accel = e.accel
            discomfort += (
                w.accel_weight * e.accel**2 + w.lat_accel_weight * lat**2 + w.jerk_weight * jerk**2
            ) * dt
            if self.world.done:
                break
        self._obs = obs
        parts = dict.fromkeys(REWARD_PARTS, 0.0)
        mon = self.world.monitor
        parts["progress"] = w.progress_per_m * (mon.progress_m - self._progress)
        parts["outside_lanes"] = -w.progress_per_m * (mon.outside_m - self._outside)
        self._progress, self._outside = mon.progress_m, mon.outside_m
        for pct in mon.min_speed_pcts[self._checkpoints :]:
            parts["min_speed"] -= (
                w.infraction_scale * (1.0 - MIN_SPEED_PENALTY_VALUE) * (1.0 - pct / 100.0)
            )
        self._checkpoints = len(mon.min_speed_pcts)
        collided = False
        for ev in events:
            part = _EVENT_PART.get(ev.type)
            if part is not None:
                parts[part] -= w.infraction_scale * (1.0 - PENALTY_COEFFICIENTS[ev.type])
                collided |= part == "collision"
            elif ev.type == "route_dev":
                parts["route_dev"] -= w.route_dev_penalty
        parts["discomfort"] = -discomfort
        reward = float(sum(parts.values()))
        terminal = mon.terminal.type if mon.terminal is not None else ""
        terminated = (
            mon.completed or terminal == "route_dev" or (cfg.terminate_on_collision and collided)
        )
        truncated = not terminated and terminal in ("route_timeout", "vehicle_blocked")
        info = {
            "reward_parts": parts,
            "events": [ev.type for ev in events],
            "route_completion": mon.route_completion,
            "completed": mon.completed,
        }
        encoded = self._encode(obs)
        if self.teacher is not None:
            info["teacher_action"] = self._teacher_action(obs)
        return encoded, reward, terminated, truncated, info

    def close(self) -> None:
        self.world.close()

    # ------------------------------------------------------------------------------ helpers
    def _teacher_action(self, obs: Observation) -> NDArray[np.float32]:
        """What the rule planner, seeing the noise-free truth, would do now, as an action: the
        speed of its plan without the stop lines, its path's offset, and whether it stops for a
        line (the plan maker brakes for the line itself, so the speed channel does not have to
        learn to). When it stops for a line the student's encoder does not see (a light out of
        view, a sign it missed), the plan maker has nothing to stop at: then the label is the
        teacher's whole plan on the speed channel, and no stop.

        The teacher sees each light in the state it had as many frames ago as the student's
        encoder can know it (the perception delay, then the encoder's ``light_confirm_s``).
        With the current state, the frames just after a change were labelled with what the
        student could not yet see: "go" while it still read red, "stop" while it still read
        green; the student could only match them by guessing the change from context."""
        assert self.teacher is not None and self._perception is not None
        truth = self.perceiver.update(obs)
        self._light_states.append({lt.id: lt.state for lt in truth.lights})
        known = self._light_states[0]
        truth = replace(
            truth,
            lights=tuple(replace(lt, state=known.get(lt.id, lt.state)) for lt in truth.lights),
        )
        plan = self.teacher.update(truth, obs.route, obs.ego)
        stop = self.teacher.stops_at_line and math.isfinite(self.encoder.stop_line_m)
        free = self.teacher.speed_without_lines
        if (stop or not self.teacher.stops_at_line) and len(free) == len(plan.speed):
            plan = replace(plan, speed=free)
        limit = truth.speed_limit_mps or float(obs.route.speed_limit_mps[0])
        return self.plan_maker.action_for(plan, obs.route, obs.ego, limit, stop=stop)

    def _encode(self, obs: Observation) -> NDArray[np.float32]:
        perception = self.noise.update(self.perceiver.update(obs))
        self._perception = perception
        return self.encoder.encode(perception, obs.route, obs.ego)


def register() -> None:
    """Register ``drivestack/Route-v0`` with gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="planning.env:RouteEnv")


register()
