"""The ground-truth perceiver: fills a PerceptionOutput from the observation's privileged truth.

It sees what a forward camera with a perfect detector would: actors within ``range_m`` that are
not far behind, signs whose face looks at the ego, and lights whose stop line governs traffic
driving the ego's way. It is the upper bound the learned perceivers are compared with, and the
default for ``run`` until learned weights exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.messages import (
    ActorKind,
    DetectedLight,
    DetectedObject,
    DetectedSign,
    Observation,
    PerceptionOutput,
)


@dataclass(frozen=True)
class GroundTruthSettings:
    range_m: float = 80.0  # objects farther than this are not reported
    behind_m: float = 15.0  # objects this far behind the ego are still reported
    sign_range_m: float = 60.0
    fov_rad: float = math.radians(100.0)  # horizontal field of view of the forward camera
    facing_tolerance_rad: float = math.radians(60.0)


class GroundTruthPerceiver:
    """``update(observation) -> PerceptionOutput`` from ground truth."""

    def __init__(self, settings: GroundTruthSettings = GroundTruthSettings()) -> None:
        self.cfg = settings

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def update(self, obs: Observation) -> PerceptionOutput:
        cfg = self.cfg
        ego = obs.ego
        gt = obs.ground_truth
        a = gt.actors
        objects: list[DetectedObject] = []
        if len(a):
            local = ego.to_ego(np.stack([a.x, a.y], -1))
            dist = np.hypot(local[:, 0], local[:, 1])
            keep = (dist < cfg.range_m) & (local[:, 0] > -cfg.behind_m)
            for i in np.flatnonzero(keep):
                objects.append(
                    DetectedObject(
                        id=int(a.id[i]),
                        kind=ActorKind(int(a.kind[i])),
                        x=float(local[i, 0]),
                        y=float(local[i, 1]),
                        yaw=math.remainder(float(a.yaw[i]) - ego.yaw, 2 * math.pi),
                        speed=float(a.speed[i]),
                        length=float(a.length[i]),
                        width=float(a.width[i]),
                    )
                )
        signs: list[DetectedSign] = []
        for sg in gt.signs:
            p = ego.to_ego(np.array([[sg.x, sg.y]]))[0]
            facing = abs(math.remainder(sg.yaw - (ego.yaw + math.pi), 2 * math.pi))
            if self._visible(p) and facing < cfg.facing_tolerance_rad:
                signs.append(DetectedSign(sg.id, sg.type, sg.value, float(p[0]), float(p[1])))
        lights: list[DetectedLight] = []
        for lt in gt.lights:
            p = ego.to_ego(np.array([[lt.stop_x, lt.stop_y]]))[0]
            aligned = abs(math.remainder(lt.stop_yaw - ego.yaw, 2 * math.pi)) < math.pi / 4
            if aligned and (self._visible(p) or (-5.0 < p[0] <= 0.0 and abs(p[1]) < 5.0)):
                lights.append(DetectedLight(lt.id, lt.state, float(p[0]), float(p[1])))
        limit = float(obs.route.speed_limit_mps[0]) if len(obs.route.speed_limit_mps) else None
        return PerceptionOutput(
            obs.t, obs.frame, tuple(objects), tuple(signs), tuple(lights), limit
        )

    def _visible(self, p: np.ndarray) -> bool:
        """Whether an ego-frame point is within the camera's range and field of view."""
        return bool(
            p[0] > 0.0
            and math.hypot(p[0], p[1]) < self.cfg.sign_range_m
            and abs(math.atan2(p[1], p[0])) < self.cfg.fov_rad / 2
        )
