"""What the RL planner sees and how its actions become plans (no policy needed)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from perception.ground_truth import GroundTruthPerceiver
from planning.encoding import (
    EGO_FEATURES,
    OBJECT_FEATURES,
    OBS_LAYOUT,
    OBS_SIZE,
    ActionSettings,
    EnvelopeSettings,
    ObservationEncoder,
    Obstacle,
    PlanMaker,
    envelope_profile,
    obs_offset,
    safe_speed,
)
from planning.env import RouteEnv
from planning.rules import RulePlanner, StandingTimer
from planning.truth import VectorGroundTruthPerceiver
from sim.messages import (
    DetectedLight,
    DetectedSign,
    LightState,
    PerceptionOutput,
    RouteAhead,
    SignType,
    VehicleState,
)
from sim.route import straight_route_ahead


def _ego(speed: float) -> VehicleState:
    return VehicleState(0.0, 0, 0.0, 0.0, 0.0, speed)


def test_layout_adds_up() -> None:
    assert sum(n for _, n in OBS_LAYOUT) == OBS_SIZE
    assert obs_offset("ego") == 0 and obs_offset("route") == len(EGO_FEATURES)
    assert obs_offset("junction") == OBS_SIZE - OBS_LAYOUT[-1][1]
    with pytest.raises(KeyError, match="no observation block 'lights'"):
        obs_offset("lights")


def test_full_stop_action_plans_a_stop_and_full_speed_reaches_the_limit() -> None:
    maker = PlanMaker()
    route = straight_route_ahead()
    stop = maker.make(np.array([-1.0, 0.0, -1.0], np.float32), route, _ego(10.0), 13.9, 0.0, 0)
    assert stop.speed[0] < 10.0 and stop.speed[-1] == 0.0
    go = maker.make(np.array([1.0, 0.0, -1.0], np.float32), route, _ego(5.0), 13.9, 0.0, 0)
    assert go.speed[-1] == pytest.approx(13.9)
    # accelerating at the comfort bound: v² = v0² + 2 a s
    assert go.speed[4] == pytest.approx(np.sqrt(25.0 + 2 * 2.0 * 4.0))


def test_offset_action_shifts_the_path_smoothly_to_the_left() -> None:
    cfg = ActionSettings()
    left = np.array([0.0, 1.0, -1.0], np.float32)
    plan = PlanMaker(cfg).make(left, straight_route_ahead(), _ego(5.0), 13.9, 0, 0)
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
    plan = PlanMaker().make(np.array([1.0, 0.0, -1.0], np.float32), route, _ego(6.0), 30.0, 0, 0)
    assert np.max(plan.speed[5:-5]) <= np.sqrt(2.0 * radius) + 1e-6  # a_lat = v²/R <= 2


@pytest.mark.parametrize("a0", [-0.2, 0.0, 0.2])
def test_action_for_inverts_make_on_a_straight_road(a0: float) -> None:
    # targets whose approach stays within the comfort bounds (from 8 m/s: 5 to 9 m/s)
    maker = PlanMaker()
    route, ego = straight_route_ahead(), _ego(8.0)
    plan = maker.make(np.array([a0, 0.3, -1.0], np.float32), route, ego, 13.9, 0.0, 0)
    back = maker.action_for(plan, route, ego, 13.9)
    v_back, off_back = maker.target(back, 13.9)
    v_want, off_want = maker.target(np.array([a0, 0.3, -1.0]), 13.9)
    assert v_back == pytest.approx(v_want, abs=0.2)
    assert off_back == pytest.approx(off_want, abs=0.05)


@pytest.mark.parametrize(("speed", "free"), [(0.0, True), (5.0, True), (12.5, False)])
def test_a_launch_is_labelled_with_the_speed_it_heads_for(speed: float, free: bool) -> None:
    # the rule planner on an empty road accelerates by IDM: 2 (1 - (v / 13.9)^4) m/s², so
    # 2.0 from a standstill, 1.97 at 5 m/s and 0.69 at 12.5 m/s
    teacher, maker, route = RulePlanner(), PlanMaker(), straight_route_ahead()
    empty = PerceptionOutput(0.0, 0, (), (), (), 13.9)
    ego = _ego(speed)
    label = maker.action_for(teacher.update(empty, route, ego), route, ego, 13.9)
    v_target, _ = maker.target(label, 13.9)
    if free:  # the limit, which the plan maker approaches at its 2 m/s² as IDM does
        assert v_target == pytest.approx(13.9, abs=0.01)
        assert maker.make(label, route, ego, 13.9, 0.0, 0).speed[4] == pytest.approx(
            np.sqrt(speed**2 + 2 * 2.0 * 4.0)
        )
    else:  # the speed the plan's acceleration reaches in speed_time_s
        accel = 2.0 * (1 - (speed / 13.9) ** 4)
        assert v_target == pytest.approx(speed + 0.5 * accel, abs=0.05)


def test_stop_action_brings_the_front_bumper_to_rest_before_the_line() -> None:
    maker, route = PlanMaker(), straight_route_ahead()
    go_and_stop = np.array([1.0, 0.0, 1.0], np.float32)
    # from 10 m/s, a line 30 m ahead: rest 1.5 m before it (s = 28.5 from the ego) at the
    # comfort deceleration 2.5 m/s², which binds only where it is below the action's speed
    plan = maker.make(go_and_stop, route, _ego(10.0), 13.9, 0.0, 0, (), 30.0)
    assert plan.speed[0] == pytest.approx(10.0)
    assert plan.speed[20] == pytest.approx(np.sqrt(2 * 2.5 * 8.5))
    assert np.all(plan.speed[29:] == 0.0) and plan.speed[28] > 0.0
    # the same action with the stop channel off ignores the line
    go = maker.make(np.array([1.0, 0.0, -1.0], np.float32), route, _ego(10.0), 13.9, 0, 0, (), 30.0)
    assert go.speed[-1] == pytest.approx(13.9)
    # 10 m ahead is too close for comfort: the deceleration it needs, 10² / (2 · 8.5)
    need = 100.0 / 17.0
    close = maker.make(go_and_stop, route, _ego(10.0), 13.9, 0.0, 0, (), 10.0)
    assert close.speed[8] == pytest.approx(np.sqrt(2 * need * 0.5))
    assert close.speed[0] == pytest.approx(10.0 - need * 0.5)  # leads by 0.5 s, as braking
    assert np.all(close.speed[9:] == 0.0)
    # past the point to stop at: stand; no line at all: nothing to stop at, the speed rules
    assert np.all(maker.make(go_and_stop, route, _ego(0.0), 13.9, 0, 0, (), 1.0).speed == 0.0)
    free = maker.make(go_and_stop, route, _ego(10.0), 13.9, 0.0, 0)
    assert np.array_equal(free.speed, go.speed)


@pytest.mark.parametrize("stop", [False, True])
def test_action_for_carries_the_stop_decision(stop: bool) -> None:
    maker = PlanMaker()
    route, ego = straight_route_ahead(), _ego(8.0)
    plan = maker.make(np.array([0.0, 0.0, -1.0], np.float32), route, ego, 13.9, 0.0, 0)
    assert maker.action_for(plan, route, ego, 13.9, stop=stop)[2] == (1.0 if stop else -1.0)
    assert PlanMaker.stops(maker.action_for(plan, route, ego, 13.9, stop=stop)) == stop


def test_vector_ground_truth_equals_the_ground_truth_perceiver() -> None:
    env = RouteEnv()
    for seed in (0, 1):
        env.reset(seed=seed)
        for _ in range(150):
            obs = env._obs
            assert obs is not None
            assert VectorGroundTruthPerceiver().update(obs) == GroundTruthPerceiver().update(obs)
            *_, terminated, truncated, _ = env.step(np.array([0.4, 0.0, -1.0], np.float32))
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
# RSS5 (the defaults before 2026-12-02): reaction 0.4 s, ego brakes at 5 m/s², the leader at
# 8 m/s², 2 m left at standstill;
# v = -b ρ + sqrt((b ρ)² + 2 b room) with b ρ = 2: room 6 m -> 6 m/s, room 14 m -> 10 m/s
RSS5 = EnvelopeSettings(reaction_s=0.4, ego_decel_mps2=5.0, min_gap_m=2.0)


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
    v = safe_speed(gap, lead, RSS5)
    assert v == pytest.approx(want)
    if v > 0:  # by definition: reaction distance + braking distance = room
        room = gap - 2.0 + lead**2 / 16.0
        assert v * 0.4 + v**2 / 10.0 == pytest.approx(room)
    # the defaults are the MPC's, 3 m/s² after 0.8 s, and 4 m left at standstill
    v = safe_speed(gap + 2.0, lead, EnvelopeSettings())
    if v > 0:
        assert v * 0.8 + v**2 / 6.0 == pytest.approx(gap - 2.0 + lead**2 / 16.0)


def _bound_now(obstacles: list[Obstacle], lateral: float, cfg: EnvelopeSettings) -> float:
    s = np.arange(61, dtype=np.float64)
    return float(envelope_profile(obstacles, s, np.full(61, lateral), 0.95, 10.0, cfg)[0])


def test_envelope_counts_only_objects_on_the_planned_path() -> None:
    ahead = [Obstacle(gap_m=16.0, route_s_m=20.0, d_m=0.0, half_width_m=0.95, speed_mps=0.0)]
    assert _bound_now(ahead, 0.0, RSS5) == pytest.approx(10.0)
    # the plan passes it 3.5 m to the left: 3.5 > 0.95 + 0.6 + 0.95
    assert _bound_now(ahead, 3.5, RSS5) == np.inf
    # the next lane (3.5 m right) is not the path either; no obstacles, or switched off: no bound
    beside = [Obstacle(16.0, 20.0, -3.5, 0.95, 0.0)]
    assert _bound_now(beside, 0.0, RSS5) == np.inf
    assert _bound_now([], 0.0, RSS5) == np.inf
    assert _bound_now(ahead, 0.0, EnvelopeSettings(enabled=False)) == np.inf
    # the nearest binds: the least bound wins
    two = [*ahead, Obstacle(8.0, 12.0, 0.5, 0.95, 0.0)]
    assert _bound_now(two, 0.0, RSS5) == pytest.approx(6.0)


def test_envelope_along_the_plan_predicts_objects_at_constant_speed() -> None:
    s = np.arange(61, dtype=np.float64)
    flat = np.zeros(61)
    # standing 16 m ahead: the braking curve to 2 m behind it, safe_speed(16 - s)
    standing = envelope_profile([Obstacle(16.0, 20.0, 0.0, 0.95, 0.0)], s, flat, 0.95, 10.0, RSS5)
    want = [safe_speed(16.0 - k, 0.0, RSS5) for k in range(61)]
    np.testing.assert_allclose(standing, want)
    assert standing[8] == pytest.approx(6.0) and np.all(standing[14:] == 0.0)
    # as fast as the ego: the gap stays, so does the bound
    same = envelope_profile([Obstacle(12.0, 16.0, 0.0, 0.95, 8.0)], s, flat, 0.95, 8.0, RSS5)
    np.testing.assert_allclose(same, 10.0)
    # half the ego's speed: the gap closes at half the rate the ego drives
    half = envelope_profile([Obstacle(12.0, 16.0, 0.0, 0.95, 4.0)], s, flat, 0.95, 8.0, RSS5)
    assert half[4] == pytest.approx(safe_speed(10.0, 4.0, RSS5))


def test_plan_maker_bounds_the_plan_but_the_policy_may_go_slower() -> None:
    maker = PlanMaker(ActionSettings(envelope=RSS5))
    route = straight_route_ahead()
    # the ego's front bumper sits at route s = front; an obstacle stands 16 m ahead of it
    p = ActionSettings().ego
    front = p.length_m - p.rear_overhang_m
    ob = (Obstacle(16.0, 16.0 + front + 2.25, 0.0, 0.95, 0.0),)
    curve = np.array([safe_speed(16.0 - k, 0.0, RSS5) for k in range(61)])  # 60 m of plan
    full = np.array([1.0, 0.0, -1.0], np.float32)
    free = maker.make(full, route, _ego(10.0), 13.9, 0.0, 0)
    held = maker.make(full, route, _ego(10.0), 13.9, 0.0, 0, ob)
    assert free.speed[-1] == pytest.approx(13.9)
    # the bound at 16 m is 10 m/s: it keeps 10 now and brakes along the curve to stand 2 m short
    np.testing.assert_allclose(held.speed, np.minimum(10.0, curve))
    # faster than the bound: the plan starts at the bound and follows the curve
    fast = maker.make(full, route, _ego(12.0), 13.9, 0.0, 0, ob)
    assert fast.speed[0] == pytest.approx(10.0) and np.all(fast.speed <= curve + 1e-9)
    # below the bound the action decides
    slow = np.array([0.0, 0.0, -1.0], np.float32)
    half = maker.make(slow, route, _ego(10.0), 13.9, 0.0, 0, ob)
    own = maker.make(slow, route, _ego(10.0), 13.9, 0.0, 0)
    np.testing.assert_allclose(half.speed, np.minimum(own.speed, curve))
    assert half.speed[2] == pytest.approx(own.speed[2]) and half.speed[2] < curve[2]


def test_a_one_frame_phantom_is_no_obstacle_but_a_tracked_object_is() -> None:
    from dataclasses import replace

    from sim.messages import ActorKind, DetectedObject, PerceptionOutput

    route = straight_route_ahead()
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


def test_standing_time_survives_a_detectors_speed_noise() -> None:
    from dataclasses import replace

    from sim.messages import ActorKind, DetectedObject, PerceptionOutput

    route = straight_route_ahead()
    parked = DetectedObject(7, ActorKind.VEHICLE, 20.0, 0.0, 0.0, 0.0, 4.5, 1.9, 1.0)
    enc = ObservationEncoder()
    standing = obs_offset("objects") + OBJECT_FEATURES.index("standing_s")
    # a parked car whose measured speed jitters (the noise model's 0.3 m/s, up to 3σ)
    for k, v in enumerate([0.0, 0.6, 0.1, 0.9, 0.3, 0.0, 0.7, 0.2, 0.5, 0.0, 0.8]):
        p = PerceptionOutput(0.5 * k, k, (replace(parked, speed=v),), (), (), None)
        obs = enc.encode(p, route, _ego(0.0))
    assert obs[standing] == pytest.approx(5.0)  # stood since t = 0, read at t = 5 s
    moving = PerceptionOutput(5.5, 11, (replace(parked, speed=2.0),), (), (), None)
    assert enc.encode(moving, route, _ego(0.0))[standing] == 0.0


def test_standing_time_survives_a_detectors_misses_but_not_a_long_absence() -> None:
    from sim.messages import ActorKind, DetectedObject, PerceptionOutput

    route = straight_route_ahead()
    parked = DetectedObject(7, ActorKind.VEHICLE, 20.0, 0.0, 0.0, 0.0, 4.5, 1.9, 0.0)
    enc = ObservationEncoder()  # hold_s 0.5: misses of up to 5 frames are bridged
    standing = obs_offset("objects") + OBJECT_FEATURES.index("standing_s")
    missed = {3, 7, 8, 9, 10, 11}  # one miss, then five in a row (0.5 s)
    for k in range(31):
        objects = () if k in missed else (parked,)
        obs = enc.encode(PerceptionOutput(0.1 * k, k, objects, (), (), None), route, _ego(0.0))
    assert obs[standing] == pytest.approx(3.0)  # stood since t = 0, read at t = 3 s
    for k in range(31, 38):  # 0.7 s unseen: forgotten
        enc.encode(PerceptionOutput(0.1 * k, k, (), (), (), None), route, _ego(0.0))
    back = PerceptionOutput(3.8, 38, (parked,), (), (), None)
    assert enc.encode(back, route, _ego(0.0))[standing] == 0.0

    # the rule planner's timer (forget_after_s 0, it sees the truth) forgets at the first miss
    timer = StandingTimer()
    timer.update(PerceptionOutput(0.0, 0, (parked,), (), (), None))
    timer.update(PerceptionOutput(0.1, 1, (), (), (), None))
    timer.update(PerceptionOutput(0.2, 2, (parked,), (), (), None))
    assert timer.seconds(7, 0.2) == 0.0


# ------------------------------------------------------------------------- the light's state
def _light_colour(enc: ObservationEncoder, state: LightState, t: float) -> str:
    light = DetectedLight(7, state, 20.0, 0.0)
    perception = PerceptionOutput(t, round(t * 10), (), (), (light,), 13.9)
    out = enc.encode(perception, straight_route_ahead(), _ego(0.0))
    start = obs_offset("light")
    red, yellow, green = out[start + 1 : start + 4]
    return "red" if red else "yellow" if yellow else "green" if green else "other"


def test_one_frame_of_a_wrong_light_colour_is_not_encoded_but_a_change_is() -> None:
    enc = ObservationEncoder()  # light_confirm_s 0.1: a change counts on its second frame
    r, g = LightState.RED, LightState.GREEN
    states = [r, r, g, r, g, g, g]  # one wrong frame, then the light turns green
    seen = [_light_colour(enc, state, 0.1 * k) for k, state in enumerate(states)]
    assert seen == ["red", "red", "red", "red", "red", "green", "green"]
    # a light seen for the first time is encoded in its state at once
    assert _light_colour(ObservationEncoder(), LightState.GREEN, 0.0) == "green"


def test_the_yellow_light_feature_keeps_the_decision_of_its_onset() -> None:
    # the encoder's "yellow_stoppable" is the rule planner's once-per-yellow test: 13 m/s with
    # 30 m to the line is stoppable at 3 m/s² (169 <= 180); braking to 12.5 m/s with 24 m
    # left no longer is (156 > 144), and the feature keeps the onset's 1
    enc = ObservationEncoder()
    front = enc.cfg.ego.length_m - enc.cfg.ego.rear_overhang_m
    at = obs_offset("light") + 7  # present, 4 states, distance, stop speed, yellow_stoppable

    def encode(e: ObservationEncoder, t: float, line_m: float, speed: float) -> float:
        light = DetectedLight(3, LightState.YELLOW, front + line_m, 0.0)
        p = PerceptionOutput(t, 0, (), (), (light,), 13.9)
        return float(e.encode(p, straight_route_ahead(), _ego(speed))[at])

    assert encode(enc, 0.0, 30.0, 13.0) == 1.0
    assert encode(enc, 0.5, 24.0, 12.5) == 1.0
    assert encode(ObservationEncoder(), 0.5, 24.0, 12.5) == 0.0


# ------------------------------------------------------------------------------- the signs
@pytest.mark.parametrize("line_m", [30.0, -1.0])
def test_a_stop_sign_read_after_a_yield_for_one_line_is_encoded_as_a_stop(line_m: float) -> None:
    # as tests/planning/test_rules.py: a junction 30 m ahead (or just behind), signs 5 m before
    enc = ObservationEncoder()
    front = enc.cfg.ego.length_m - enc.cfg.ego.rear_overhang_m
    at = round(front + line_m)
    route = replace(straight_route_ahead(), junction=np.where(np.arange(101) >= at, 7, -1))
    sign_x = front + line_m - 5.0
    yield_ = DetectedSign(1, SignType.YIELD, 0.0, sign_x, -2.8)
    stop = DetectedSign(2, SignType.STOP, 0.0, sign_x, -2.7)
    i = obs_offset("sign")

    def kinds(t: float, *signs: DetectedSign) -> tuple[float, float]:
        out = enc.encode(PerceptionOutput(t, 0, (), signs, (), 13.9), route, _ego(8.0))
        return float(out[i]), float(out[i + 1])

    assert kinds(0.0, yield_) == (0.0, 1.0)
    # stop wins while the line is ahead; a line already passed keeps what it was
    assert kinds(0.1, yield_, stop) == ((1.0, 0.0) if line_m > 0 else (0.0, 1.0))
    assert kinds(0.2, yield_) == ((1.0, 0.0) if line_m > 0 else (0.0, 1.0))


def test_a_stop_sign_across_the_opposite_lane_is_not_encoded() -> None:
    # the rule planner's test of the same rule (planning.rules.sign_for_lane): the back of
    # the opposite direction's sign, 6 m to the left beyond its lane, is no sign of the ego's
    ego = ObservationEncoder().cfg.ego
    at = round(ego.length_m - ego.rear_overhang_m + 20.0)
    i = obs_offset("sign")
    for left_lane, sign_y, encoded in ((-1, 6.0, False), (-1, -2.8, True), (0, 6.0, True)):
        route = replace(
            straight_route_ahead(),
            junction=np.where(np.arange(101) >= at, 7, -1),
            left_lane=np.full(101, left_lane),
        )
        stop = DetectedSign(2, SignType.STOP, 0.0, at - 6.0, sign_y)
        out = ObservationEncoder().encode(
            PerceptionOutput(0.0, 0, (), (stop,), (), 13.9), route, _ego(8.0)
        )
        assert (float(out[i]) == 1.0) == encoded, (left_lane, sign_y)
