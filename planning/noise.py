"""A perception noise model: ground truth made to look like what a trained detector reports.

The RL planner trains on the ground-truth perceiver passed through this model so that it learns
to drive on what a camera detector gives: objects it misses, objects it invents, positions that
are off by more the farther away they are, light states it reads wrongly, and a delay.

The statistics *should be measured from the trained perception* (per-class recall against
distance, false positives per frame, position error against distance, light-state confusion,
end-to-end latency) on held-out scenarios; ``NoiseSettings`` is where the measured numbers go.
Until the learned perception's evaluation is available the defaults below are chosen to be a
little worse than published single-camera detectors on CARLA (e.g. the TransFuser/InterFuser
object heads, which reach roughly 0.9 recall on vehicles inside 30 m and lose recall with range),
so a policy that drives well under them has margin: docs/planner.md lists them and the reasons.

Randomness comes only from the generator passed to :meth:`PerceptionNoise.reset`, so a seeded
episode is reproducible.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from sim.messages import (
    ActorKind,
    DetectedLight,
    DetectedObject,
    DetectedSign,
    LightState,
    PerceptionOutput,
)


@dataclass(frozen=True)
class NoiseSettings:
    """Statistics of the perception errors (per planner frame, i.e. per call of ``update``).

    :param miss_prob_near: probability that an object closer than ``miss_range_m`` is missed
    :param miss_prob_far: miss probability at ``miss_range_m`` and beyond (linear in between)
    :param miss_range_m: distance (m) where the far miss probability is reached
    :param false_positive_rate: expected phantom objects per frame (Poisson)
    :param false_positive_range_m: phantoms appear uniformly within this distance ahead (m)
    :param position_std_m: position noise standard deviation at the ego (m)
    :param position_std_per_m: extra standard deviation per metre of distance (m/m)
    :param speed_std_mps: speed noise standard deviation (m/s)
    :param sign_miss_prob: probability that a visible sign is not reported in a frame
    :param light_miss_prob: probability that the governing light is not reported in a frame
    :param light_confusion_prob: probability that a reported light's state is a wrong one
    :param delay_s: age of the perception the planner gets (s); rounded to whole frames
    :param frame_s: the planner's frame period (s), to turn ``delay_s`` into frames
    """

    miss_prob_near: float = 0.03
    miss_prob_far: float = 0.25
    miss_range_m: float = 60.0
    false_positive_rate: float = 0.02
    false_positive_range_m: float = 50.0
    position_std_m: float = 0.15
    position_std_per_m: float = 0.01
    speed_std_mps: float = 0.3
    sign_miss_prob: float = 0.1
    light_miss_prob: float = 0.05
    light_confusion_prob: float = 0.01
    delay_s: float = 0.1
    frame_s: float = 0.1

    @property
    def delay_frames(self) -> int:
        return max(0, round(self.delay_s / self.frame_s))

    def miss_prob(self, distance_m: np.ndarray) -> np.ndarray:
        """Miss probability of objects at ``distance_m`` ``(M,)`` (linear in range, clipped)."""
        frac = np.clip(np.asarray(distance_m) / self.miss_range_m, 0.0, 1.0)
        return self.miss_prob_near + (self.miss_prob_far - self.miss_prob_near) * frac


NO_NOISE = NoiseSettings(
    miss_prob_near=0.0,
    miss_prob_far=0.0,
    false_positive_rate=0.0,
    position_std_m=0.0,
    position_std_per_m=0.0,
    speed_std_mps=0.0,
    sign_miss_prob=0.0,
    light_miss_prob=0.0,
    light_confusion_prob=0.0,
    delay_s=0.0,
)

# phantom objects get ids far above any actor's, so trackers never confuse them with real ones
_PHANTOM_ID = 10_000_000


class PerceptionNoise:
    """``update(perception) -> PerceptionOutput`` with misses, phantoms, noise and delay."""

    def __init__(self, settings: NoiseSettings = NoiseSettings()) -> None:
        self.cfg = settings
        self.reset(np.random.default_rng(0))

    def reset(self, rng: np.random.Generator) -> None:
        """Start a new episode drawing every error from ``rng``."""
        self.rng = rng
        self._queue: deque[PerceptionOutput] = deque()
        self._phantoms = 0

    def update(self, perception: PerceptionOutput) -> PerceptionOutput:
        """Corrupt ``perception`` and return the one ``delay_frames`` frames old (the first
        output is repeated until the queue has filled)."""
        noisy = self._corrupt(perception)
        self._queue.append(noisy)
        while len(self._queue) > self.cfg.delay_frames + 1:
            self._queue.popleft()
        out = self._queue[0]
        age = perception.t - out.t
        return replace(out, latency_s=out.latency_s + age)

    # --------------------------------------------------------------------------------- parts
    def _corrupt(self, p: PerceptionOutput) -> PerceptionOutput:
        cfg, rng = self.cfg, self.rng
        objects: list[DetectedObject] = []
        if p.objects:
            n = len(p.objects)
            dist = np.array([math.hypot(o.x, o.y) for o in p.objects])
            kept = rng.random(n) >= cfg.miss_prob(dist)
            std = cfg.position_std_m + cfg.position_std_per_m * dist
            dxy = rng.standard_normal((n, 2)) * std[:, None]
            dv = rng.standard_normal(n) * cfg.speed_std_mps
            score = 1.0 - cfg.miss_prob(dist)
            for i in np.flatnonzero(kept).tolist():
                o = p.objects[i]
                objects.append(
                    DetectedObject(
                        o.id,
                        o.kind,
                        o.x + float(dxy[i, 0]),
                        o.y + float(dxy[i, 1]),
                        o.yaw,
                        max(0.0, o.speed + float(dv[i])),
                        o.length,
                        o.width,
                        float(score[i]),
                        o.box,
                    )
                )
        for _ in range(int(rng.poisson(cfg.false_positive_rate))):
            objects.append(self._phantom())
        signs: list[DetectedSign] = [s for s in p.signs if rng.random() >= cfg.sign_miss_prob]
        lights: list[DetectedLight] = []
        for lt in p.lights:
            if rng.random() < cfg.light_miss_prob:
                continue
            state = lt.state
            if rng.random() < cfg.light_confusion_prob:
                others = [
                    s for s in (LightState.RED, LightState.YELLOW, LightState.GREEN) if s != state
                ]
                state = others[int(rng.integers(len(others)))]
            lights.append(replace(lt, state=state))
        return replace(p, objects=tuple(objects), signs=tuple(signs), lights=tuple(lights))

    def _phantom(self) -> DetectedObject:
        """A false positive: a standing vehicle or pedestrian somewhere ahead."""
        rng = self.rng
        self._phantoms += 1
        kind = ActorKind.VEHICLE if rng.random() < 0.7 else ActorKind.PEDESTRIAN
        big = kind == ActorKind.VEHICLE
        return DetectedObject(
            id=_PHANTOM_ID + self._phantoms,
            kind=kind,
            x=float(rng.uniform(3.0, self.cfg.false_positive_range_m)),
            y=float(rng.uniform(-8.0, 8.0)),
            yaw=float(rng.uniform(-math.pi, math.pi)),
            speed=0.0,
            length=4.5 if big else 0.5,
            width=1.9 if big else 0.5,
            score=0.5,
        )
