"""The perceiver's memory: a speed limit outlives its sign; the light of the ego's lane."""

from __future__ import annotations

import math

import numpy as np
import torch

from perception.models.cnn_detector import CnnDetector, CnnDetectorConfig
from perception.models.stn_classifier import StnClassifier
from perception.perceiver import FrameDetection, LearnedPerceiver, PerceiverSettings
from sim.messages import DetectionClass, LightState, RouteAhead, SignType, VehicleState

torch.set_num_threads(1)


def _perceiver() -> LearnedPerceiver:
    # the tracker is under test: the networks are never run here
    return LearnedPerceiver(CnnDetector(CnnDetectorConfig()), StnClassifier(), PerceiverSettings())


def _sign(x: float, y: float, label: str) -> FrameDetection:
    return FrameDetection("sign", DetectionClass.SPEED_LIMIT_SIGN, (0, 0, 12, 12), 0.9, x, y, label)


def _route(junction_from_m: float, n: int = 80) -> RouteAhead:
    xs = np.arange(n, dtype=np.float64)
    junction = np.where((xs >= junction_from_m) & (xs < junction_from_m + 15), 7, -1)
    return RouteAhead(
        np.stack([xs, np.zeros(n)], -1), np.zeros(n), np.full(n, 13.9), np.full(n, 3.5),
        np.zeros(n, np.int64), junction.astype(np.int64), 1.0, 0.0, 100.0,
    )  # fmt: skip


def test_speed_limit_persists_after_the_sign_leaves_the_image() -> None:
    p = _perceiver()
    sign_map = np.array([40.0, -4.0])  # a "30" sign 40 m up the road, on the right
    limits = []
    for k in range(150):  # 10 m/s for 15 s, one detection step per 0.1 s
        ego = VehicleState(t=0.1 * k, frame=k, x=1.0 * k, y=0.0, yaw=0.0, speed=10.0)
        rel = ego.to_ego(sign_map[None])[0]
        seen = 8.0 < rel[0] < 60.0  # the camera loses it in the last metres
        dets = [_sign(float(rel[0]) + 0.3 * math.sin(k), float(rel[1]), "limit_30")] if seen else []
        out = p.track(dets, ego)
        limits.append(out.speed_limit_mps)
        if seen and k > 2:
            assert [(s.type, s.value) for s in out.signs] == [(SignType.SPEED_LIMIT, 30.0)]
    assert limits[30] is None  # 10 m before the sign: not active yet
    assert limits[40] == 30 / 3.6  # passed it
    assert all(v == 30 / 3.6 for v in limits[40:])  # and long after, with nothing in view
    assert not any(t.group == "sign" for t in p.tracks)  # the sign itself is forgotten


def test_a_new_sign_replaces_the_limit() -> None:
    p = _perceiver()
    for k in range(5):
        p.track([_sign(2.0 - k, -3.0, "limit_30")], VehicleState(0.1 * k, k, 0.0, 0.0, 0.0, 0.0))
    assert p.track([], VehicleState(0.6, 6, 0.0, 0.0, 0.0, 0.0)).speed_limit_mps == 30 / 3.6
    for k in range(7, 12):
        ego = VehicleState(0.1 * k, k, 100.0, 0.0, 0.0, 0.0)
        out = p.track([_sign(1.0, -3.0, "limit_50")], ego)
    assert out.speed_limit_mps == 50 / 3.6


def test_light_stop_line_is_the_next_junction_entry() -> None:
    p = _perceiver()
    route = _route(30.0)
    ego = VehicleState(0.0, 0, 0.0, 0.0, 0.0, 0.0)
    red = FrameDetection(
        "light", DetectionClass.TRAFFIC_LIGHT, (0, 0, 4, 12), 0.9, 33.0, -5.0, "light_red"
    )
    out = p.track([red], ego, route)
    assert len(out.lights) == 1
    light = out.lights[0]
    assert light.state == LightState.RED
    assert (light.stop_x, light.stop_y) == (30.0, 0.0)
    # a green read without confidence is reported as unknown, which the planner treats as red
    unsure = FrameDetection(
        "light", DetectionClass.TRAFFIC_LIGHT, (0, 0, 4, 12), 0.9, 33.0, -5.0, "light_green", 0.6
    )
    out = p.track([unsure], VehicleState(0.1, 1, 0.0, 0.0, 0.0, 0.0), route)
    assert out.lights[0].state == LightState.UNKNOWN
    sure = FrameDetection(
        "light", DetectionClass.TRAFFIC_LIGHT, (0, 0, 4, 12), 0.9, 33.0, -5.0, "light_green", 0.99
    )
    out = p.track([sure], VehicleState(0.2, 2, 0.0, 0.0, 0.0, 0.0), route)
    assert out.lights[0].state == LightState.GREEN


def test_objects_get_ids_and_speeds_from_tracking() -> None:
    p = _perceiver()
    outs = []
    for k in range(20):  # a car 20 m ahead pulling away at 5 m/s while the ego stands
        d = FrameDetection(
            "vehicle", DetectionClass.VEHICLE, (0, 0, 30, 20), 0.9, 20.0 + 0.5 * k, 0.0
        )
        outs.append(p.track([d], VehicleState(0.1 * k, k, 0.0, 0.0, 0.0, 0.0)))
    assert outs[0].objects == ()  # one detection is not yet an object
    ids = {o.objects[0].id for o in outs[1:]}
    assert len(ids) == 1
    car = outs[-1].objects[0]
    assert car.speed == pytest_approx(5.0, 0.3) and abs(car.yaw) < 0.1


def pytest_approx(v: float, tol: float) -> object:
    import pytest

    return pytest.approx(v, abs=tol)


def test_a_light_unseen_for_long_is_forgotten() -> None:
    p = _perceiver()
    route = _route(30.0)
    d = FrameDetection(
        "light", DetectionClass.TRAFFIC_LIGHT, (0, 0, 4, 12), 0.9, 33.0, -5.0, "light_red", 0.99
    )
    assert p.track([d], VehicleState(0.0, 0, 0.0, 0.0, 0.0, 0.0), route).lights
    assert p.track([], VehicleState(2.5, 50, 0.0, 0.0, 0.0, 0.0), route).lights  # 2.5 s: kept
    assert p.track([], VehicleState(3.5, 70, 0.0, 0.0, 0.0, 0.0), route).lights == ()
