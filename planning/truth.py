"""The ground-truth perceiver, vectorised for training: the same output, a few times faster.

:class:`perception.ground_truth.GroundTruthPerceiver` checks signs and lights one by one, which
dominates an RL environment step on maps with dozens of landmarks. This subclass caches the
landmarks' arrays per map and tests them all at once; ``tests/planning`` checks that both give
equal outputs over whole episodes.
"""

from __future__ import annotations

import math

import numpy as np

from perception.ground_truth import GroundTruthPerceiver, GroundTruthSettings
from sim.messages import (
    ActorKind,
    DetectedLight,
    DetectedObject,
    DetectedSign,
    LightGT,
    Observation,
    PerceptionOutput,
    SignGT,
)


class VectorGroundTruthPerceiver(GroundTruthPerceiver):
    """``update(observation) -> PerceptionOutput``, equal to the parent's."""

    def __init__(self, settings: GroundTruthSettings | None = None) -> None:
        super().__init__(settings or GroundTruthSettings())
        self.reset()

    def reset(self) -> None:
        self._signs: tuple[SignGT, ...] | None = None
        self._lights_key: tuple[int, ...] | None = None

    def update(self, obs: Observation) -> PerceptionOutput:
        cfg = self.cfg
        ego = obs.ego
        gt = obs.ground_truth
        c, s = math.cos(ego.yaw), math.sin(ego.yaw)
        a = gt.actors
        objects: list[DetectedObject] = []
        if len(a):
            dx, dy = a.x - ego.x, a.y - ego.y
            lx, ly = c * dx + s * dy, -s * dx + c * dy
            keep = (np.hypot(lx, ly) < cfg.range_m) & (lx > -cfg.behind_m)
            for i in np.flatnonzero(keep).tolist():
                objects.append(
                    DetectedObject(
                        id=int(a.id[i]),
                        kind=ActorKind(int(a.kind[i])),
                        x=float(lx[i]),
                        y=float(ly[i]),
                        yaw=math.remainder(float(a.yaw[i]) - ego.yaw, 2 * math.pi),
                        speed=float(a.speed[i]),
                        length=float(a.length[i]),
                        width=float(a.width[i]),
                    )
                )
        signs: list[DetectedSign] = []
        if gt.signs:
            if self._signs is not gt.signs:
                self._signs = gt.signs
                self._sign_arr = np.array([(sg.x, sg.y, sg.yaw) for sg in gt.signs])
            arr = self._sign_arr
            dx, dy = arr[:, 0] - ego.x, arr[:, 1] - ego.y
            px, py = c * dx + s * dy, -s * dx + c * dy
            facing = np.abs(
                np.remainder(arr[:, 2] - (ego.yaw + math.pi) + math.pi, 2 * math.pi) - math.pi
            )
            ok = self._visible_many(px, py) & (facing < cfg.facing_tolerance_rad)
            for i in np.flatnonzero(ok).tolist():
                sg = gt.signs[i]
                signs.append(DetectedSign(sg.id, sg.type, sg.value, float(px[i]), float(py[i])))
        lights: list[DetectedLight] = []
        if gt.lights:
            key = tuple(lt.id for lt in gt.lights)
            if key != self._lights_key:  # the heads never move: only their states change
                self._lights_key = key
                self._light_arr = np.array(
                    [(lt.stop_x, lt.stop_y, lt.stop_yaw) for lt in gt.lights]
                )
            arr = self._light_arr
            dx, dy = arr[:, 0] - ego.x, arr[:, 1] - ego.y
            px, py = c * dx + s * dy, -s * dx + c * dy
            diff = np.abs(np.remainder(arr[:, 2] - ego.yaw + math.pi, 2 * math.pi) - math.pi)
            near = (px > -5.0) & (px <= 0.0) & (np.abs(py) < 5.0)
            ok = (diff < math.pi / 4) & (self._visible_many(px, py) | near)
            for i in np.flatnonzero(ok).tolist():
                lt: LightGT = gt.lights[i]
                lights.append(DetectedLight(lt.id, lt.state, float(px[i]), float(py[i])))
        limit = float(obs.route.speed_limit_mps[0]) if len(obs.route.speed_limit_mps) else None
        return PerceptionOutput(
            obs.t, obs.frame, tuple(objects), tuple(signs), tuple(lights), limit
        )

    def _visible_many(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        return (
            (px > 0.0)
            & (np.hypot(px, py) < self.cfg.sign_range_m)
            & (np.abs(np.arctan2(py, px)) < self.cfg.fov_rad / 2)
        )
