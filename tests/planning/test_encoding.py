"""What the RL planner sees and how its actions become plans (no policy needed)."""

from __future__ import annotations

import numpy as np
import pytest

from perception.ground_truth import GroundTruthPerceiver
from planning.encoding import (
    EGO_FEATURES,
    OBS_LAYOUT,
    OBS_SIZE,
    ActionSettings,
    EnvelopeSettings,
    ObservationEncoder,
    Obstacle,
    PlanMaker,
    envelope_speed,
    safe_speed,
)
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
    ego = len(EGO_FEATURES)
    np.testing.assert_array_equal(full[ego:], missed[ego:])  # same t: held objects, same features


# ------------------------------------------------------------------------- safety envelope
# defaults: reaction 0.4 s, ego brakes at 5 m/s², the leader at 8 m/s², 2 m left at standstill;
# v = -b ρ + sqrt((b ρ)² + 2 b room) with b ρ = 2: room 6 m -> 6 m/s, room 14 m -> 10 m/s
@pytest.mark.parametrize(
    ("gap", "lead", "want"),
    [
        (16.0, 0.0, 10.0),  # room 16 - 2 = 14 m
        (12.0, 8.0, 10.0),  # the leader needs 8² / 16 = 4 m to stop: room 12 - 2 + 4 = 14 m
        (8.0, 0.0, 6.0),  # room 6 m
        (2.0, 0.0, 0.0),  # no room: stand
        (-1.0, 5.0, 0.0),  # overlapping, the leader needs 25/16 < 3 m: stand
    ],
)
def test_safe_speed_is_the_rss_stopping_bound(gap: float, lead: float, want: float) -> None:
    v = safe_speed(gap, lead, EnvelopeSettings())
    assert v == pytest.approx(want)
    if v > 0:  # by definition: reaction distance + braking distance = room
        room = gap - 2.0 + lead**2 / 16.0
        assert v * 0.4 + v**2 / 10.0 == pytest.approx(room)


def test_envelope_counts_only_objects_on_the_planned_path() -> None:
    cfg = EnvelopeSettings()
    s = np.arange(61, dtype=np.float64)
    ahead = [Obstacle(gap_m=16.0, route_s_m=20.0, d_m=0.0, half_width_m=0.95, speed_mps=0.0)]
    assert envelope_speed(ahead, s, np.zeros(61), 0.95, cfg) == pytest.approx(10.0)
    # the plan passes it 3.5 m to the left: 3.5 > 0.95 + 0.6 + 0.95
    assert envelope_speed(ahead, s, np.full(61, 3.5), 0.95, cfg) == np.inf
    # the next lane (3.5 m right) is not the path either; no obstacles, or switched off: no bound
    beside = [Obstacle(16.0, 20.0, -3.5, 0.95, 0.0)]
    assert envelope_speed(beside, s, np.zeros(61), 0.95, cfg) == np.inf
    assert envelope_speed([], s, np.zeros(61), 0.95, cfg) == np.inf
    off = EnvelopeSettings(enabled=False)
    assert envelope_speed(ahead, s, np.zeros(61), 0.95, off) == np.inf
    # the nearest binds: the least bound wins
    two = [*ahead, Obstacle(8.0, 12.0, 0.5, 0.95, 0.0)]
    assert envelope_speed(two, s, np.zeros(61), 0.95, cfg) == pytest.approx(6.0)


def test_plan_maker_bounds_the_target_but_the_policy_may_go_slower() -> None:
    maker = PlanMaker()
    route = _straight()
    # the ego's front bumper sits at route s = front; an obstacle 16 m ahead of it
    p = ActionSettings().ego
    front = p.length_m - p.rear_overhang_m
    ob = (Obstacle(16.0, 16.0 + front + 2.25, 0.0, 0.95, 0.0),)
    full = np.array([1.0, 0.0], np.float32)
    free = maker.make(full, route, _ego(10.0), 13.9, 0.0, 0)
    held = maker.make(full, route, _ego(10.0), 13.9, 0.0, 0, ob)
    assert free.speed[-1] == pytest.approx(13.9)
    assert np.max(held.speed) == pytest.approx(10.0)  # the bound at 16 m: stays at 10 m/s
    # faster than the bound: it brakes ((10 - 12) / 0.5 s = -4 m/s²) down to it
    fast = maker.make(full, route, _ego(12.0), 13.9, 0.0, 0, ob)
    assert fast.speed[0] == pytest.approx(10.0) and fast.speed[-1] == pytest.approx(10.0)
    # below the bound the action decides
    half = maker.make(np.array([0.0, 0.0], np.float32), route, _ego(10.0), 13.9, 0.0, 0, ob)
    assert half.speed[-1] == pytest.approx(maker.target(np.array([0.0, 0.0]), 13.9)[0])
    assert half.speed[-1] < 10.0


def test_a_one_frame_phantom_is_no_obstacle_but_a_tracked_object_is() -> None:
    from dataclasses import replace

    from sim.messages import ActorKind, DetectedObject, PerceptionOutput

    route = _straight()
    car = DetectedObject(7, ActorKind.VEHICLE, 20.0, 0.0, 0.0, 0.0, 4.5, 1.9, 1.0)
    p0 = PerceptionOutput(0.0, 0, (car,), (), (), None)
    enc = ObservationEncoder()
    enc.encode(p0, route, _ego(5.0))
    assert enc.obstacles == ()  # seen once: maybe a false positive
    enc.encode(replace(p0, t=0.1, frame=1), route, _ego(5.0))
    assert len(enc.obstacles) == 1
    ob = enc.obstacles[0]
    front = enc.cfg.ego.length_m - enc.cfg.ego.rear_overhang_m
    assert ob.gap_m == pytest.approx(20.0 - front - 2.25)  # its rear bumper
    assert ob.d_m == pytest.approx(0.0) and ob.half_width_m == pytest.approx(0.95)
