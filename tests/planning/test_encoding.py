"""What the RL planner sees and how its actions become plans (no policy needed)."""

from __future__ import annotations

import numpy as np
import pytest

from perception.ground_truth import GroundTruthPerceiver
from planning.encoding import OBS_LAYOUT, OBS_SIZE, ActionSettings, ObservationEncoder, PlanMaker
from planning.env import RouteEnv
from planning.truth import VectorGroundTruthPerceiver
from sim.messages import RouteAhead, VehicleState


def _straight(n: int = 101, limit: float = 13.9) -> RouteAhead:
    xs = np.arange(n, dtype=np.float64)
    return RouteAhead(
        xy=np.stack([xs, np.zeros(n)], -1),
        yaw=np.zeros(n),
        speed_limit_mps=np.full(n, limit),
        lane_width_m=np.full(n, 3.5),
        left_lane=np.full(n, -1),
        junction=np.full(n, -1),
        step_m=1.0,
        s0_m=0.0,
        remaining_m=float(n - 1),
    )


def _ego(speed: float) -> VehicleState:
    return VehicleState(0.0, 0, 0.0, 0.0, 0.0, speed)


def test_layout_adds_up() -> None:
    assert sum(n for _, n in OBS_LAYOUT) == OBS_SIZE


def test_full_stop_action_plans_a_stop_and_full_speed_reaches_the_limit() -> None:
    maker = PlanMaker()
    route = _straight()
    stop = maker.make(np.array([-1.0, 0.0], np.float32), route, _ego(10.0), 13.9, 0.0, 0)
    assert stop.speed[0] < 10.0 and stop.speed[-1] == 0.0
    go = maker.make(np.array([1.0, 0.0], np.float32), route, _ego(5.0), 13.9, 0.0, 0)
    assert go.speed[-1] == pytest.approx(13.9)
    # accelerating at the comfort bound: v² = v0² + 2 a s
    assert go.speed[4] == pytest.approx(np.sqrt(25.0 + 2 * 2.0 * 4.0))


def test_offset_action_shifts_the_path_smoothly_to_the_left() -> None:
    cfg = ActionSettings()
    plan = PlanMaker(cfg).make(np.array([0.0, 1.0], np.float32), _straight(), _ego(5.0), 13.9, 0, 0)
    assert plan.path[0, 1] == pytest.approx(0.0)
    assert plan.path[-1, 1] == pytest.approx(cfg.max_offset_m)
    assert np.all(np.diff(plan.path[:, 1]) >= -1e-12)  # monotonic: no kink back


def test_curves_cap_the_planned_speed_by_lateral_acceleration() -> None:
    n, radius = 101, 20.0
    ang = np.arange(n) / radius
    route = RouteAhead(
        xy=np.stack([radius * np.sin(ang), radius * (1 - np.cos(ang))], -1),
        yaw=ang,
        speed_limit_mps=np.full(n, 30.0),
        lane_width_m=np.full(n, 3.5),
        left_lane=np.zeros(n, dtype=np.int64),
        junction=np.full(n, -1),
        step_m=1.0,
        s0_m=0.0,
        remaining_m=100.0,
    )
    plan = PlanMaker().make(np.array([1.0, 0.0], np.float32), route, _ego(6.0), 30.0, 0, 0)
    assert np.max(plan.speed[5:-5]) <= np.sqrt(2.0 * radius) + 1e-6  # a_lat = v²/R <= 2


@pytest.mark.parametrize("a0", [-0.2, 0.0, 0.2])
def test_action_for_inverts_make_on_a_straight_road(a0: float) -> None:
    # targets whose approach stays within the comfort bounds (from 8 m/s: 5 to 9 m/s)
    maker = PlanMaker()
    route, ego = _straight(), _ego(8.0)
    plan = maker.make(np.array([a0, 0.3], np.float32), route, ego, 13.9, 0.0, 0)
    back = maker.action_for(plan, route, ego, 13.9)
    v_back, off_back = maker.target(back, 13.9)
    v_want, off_want = maker.target(np.array([a0, 0.3]), 13.9)
    assert v_back == pytest.approx(v_want, abs=0.2)
    assert off_back == pytest.approx(off_want, abs=0.05)


def test_vector_ground_truth_equals_the_ground_truth_perceiver() -> None:
    env = RouteEnv()
    for seed in (0, 1):
        env.reset(seed=seed)
        for _ in range(150):
            obs = env._obs
            assert obs is not None
            assert VectorGroundTruthPerceiver().update(obs) == GroundTruthPerceiver().update(obs)
            *_, terminated, truncated, _ = env.step(np.array([0.4, 0.0], np.float32))
            if terminated or truncated:
                break


def test_encoder_remembers_a_briefly_missed_leader() -> None:
    from dataclasses import replace

    env = RouteEnv()
    env.reset(seed=2)
    obs = env._obs
    assert obs is not None
    perception = GroundTruthPerceiver().update(obs)
    enc = ObservationEncoder()
    full = enc.encode(perception, obs.route, obs.ego)
    missed = enc.encode(replace(perception, objects=()), obs.route, obs.ego)
    np.testing.assert_array_equal(full[9:], missed[9:])  # same t: held objects, same features
