"""How long the RL planner's encoder believes a parked car has stood, under the training noise.

    python scripts/standing_under_noise.py [--distance 12] [--seconds 10] [--seeds 20]

A car stands ``--distance`` m ahead of a standing ego; for ``--seconds`` the noise model of
training (planning/noise.py: misses, speed noise, delay) corrupts the ground truth at 10 Hz and
the encoder reads its ``standing_s`` feature. Printed for the encoder as it is (misses of up to
``hold_s`` bridged) and for a timer that forgets an object at its first miss, as the encoder did
before 2026-12-02 (docs/planner.md, "Observation"). The rule planner passes a parked car after
5 s of standing, so a feature that rarely reads 5 s cannot teach a student when to pass.
"""

from __future__ import annotations

import argparse

import numpy as np

from planning.encoding import OBJECT_FEATURES, ObservationEncoder, obs_offset
from planning.noise import PerceptionNoise
from planning.rules import StandingTimer
from sim.messages import ActorKind, DetectedObject, PerceptionOutput, VehicleState
from sim.route import straight_route_ahead


def standing_read(distance_m: float, seconds: float, seed: int, bridge_misses: bool) -> float:
    """The ``standing_s`` feature of the nearest object after ``seconds`` of a parked car."""
    enc = ObservationEncoder()
    if not bridge_misses:  # the encoder before 2026-12-02; only its timer differs
        enc._standing = StandingTimer(enc.cfg.still_mps, forget_after_s=0.0)
    noise = PerceptionNoise()
    noise.reset(np.random.default_rng(seed))
    parked = DetectedObject(7, ActorKind.VEHICLE, distance_m, 0.0, 0.0, 0.0, 4.5, 1.9, 0.0)
    route, ego = straight_route_ahead(), VehicleState(0.0, 0, 0.0, 0.0, 0.0, 0.0)
    index = obs_offset("objects") + OBJECT_FEATURES.index("standing_s")
    obs = np.zeros(0, dtype=np.float32)
    for k in range(round(seconds * 10) + 1):
        truth = PerceptionOutput(0.1 * k, k, (parked,), (), (), None)
        obs = enc.encode(noise.update(truth), route, ego)
    return float(obs[index])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--distance", type=float, default=12.0, help="car ahead of the ego (m)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long it has stood (s)")
    ap.add_argument("--seeds", type=int, default=20, help="noise seeds 0..N-1")
    args = ap.parse_args()
    for bridge, name in ((False, "forgotten at a miss"), (True, "misses bridged (hold_s)")):
        read = np.array(
            [standing_read(args.distance, args.seconds, s, bridge) for s in range(args.seeds)]
        )
        print(
            f"{name:25s} standing_s after {args.seconds:.0f} s: mean {read.mean():.1f} s, "
            f">= 5 s in {np.mean(read >= 5.0):.0%} of {args.seeds} seeds"
        )


if __name__ == "__main__":
    main()
