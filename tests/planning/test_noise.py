"""The perception noise model: its statistics are the ones its settings say."""

from __future__ import annotations

import math

import numpy as np
import pytest

from planning.noise import NO_NOISE, NoiseSettings, PerceptionNoise
from sim.messages import (
    ActorKind,
    DetectedLight,
    DetectedObject,
    LightState,
    PerceptionOutput,
)


def _frame(t: float, n: int = 50, distance: float = 20.0) -> PerceptionOutput:
    objects = tuple(
        DetectedObject(i, ActorKind.VEHICLE, distance, 0.0, 0.0, 5.0, 4.5, 1.9) for i in range(n)
    )
    lights = (DetectedLight(7, LightState.RED, 30.0, 0.0),)
    return PerceptionOutput(t, round(t * 10), objects, (), lights, 13.9)


def test_no_noise_is_the_identity() -> None:
    noise = PerceptionNoise(NO_NOISE)
    p = _frame(0.0)
    assert noise.update(p) == p


def test_misses_false_positives_and_position_noise_match_the_settings() -> None:
    cfg = NoiseSettings(delay_s=0.0)
    noise = PerceptionNoise(cfg)
    noise.reset(np.random.default_rng(0))
    frames = 400
    kept = phantoms = 0
    dx: list[float] = []
    lights_seen = 0
    for k in range(frames):
        out = noise.update(_frame(k * 0.1))
        real = [o for o in out.objects if o.id < 50]
        kept += len(real)
        phantoms += len(out.objects) - len(real)
        dx += [o.x - 20.0 for o in real]
        lights_seen += len(out.lights)
    miss = 1.0 - kept / (frames * 50)
    expected_miss = float(cfg.miss_prob(np.array(20.0)))
    assert miss == pytest.approx(expected_miss, abs=0.01)
    assert phantoms / frames == pytest.approx(cfg.false_positive_rate, abs=0.02)
    std = cfg.position_std_m + cfg.position_std_per_m * 20.0
    assert float(np.std(dx)) == pytest.approx(std, rel=0.05)
    assert abs(float(np.mean(dx))) < 0.01  # unbiased
    assert 1.0 - lights_seen / frames == pytest.approx(cfg.light_miss_prob, abs=0.03)


def test_miss_probability_grows_with_distance() -> None:
    cfg = NoiseSettings()
    near, far = cfg.miss_prob(np.array([0.0, 200.0]))
    assert near == cfg.miss_prob_near and far == cfg.miss_prob_far


def test_delay_returns_the_frame_that_many_frames_old() -> None:
    cfg = NoiseSettings(**{**NO_NOISE.__dict__, "delay_s": 0.2})
    noise = PerceptionNoise(cfg)
    outs = [noise.update(_frame(k * 0.1, n=1, distance=10.0 + k)) for k in range(5)]
    assert [o.t for o in outs] == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])
    assert outs[4].objects[0].x == 12.0
    assert outs[4].latency_s == pytest.approx(0.2)


def test_the_same_generator_gives_the_same_errors() -> None:
    a, b = PerceptionNoise(), PerceptionNoise()
    a.reset(np.random.default_rng(4))
    b.reset(np.random.default_rng(4))
    for k in range(20):
        assert a.update(_frame(k * 0.1)) == b.update(_frame(k * 0.1))
    assert math.isfinite(a.update(_frame(2.0)).latency_s)
