"""A straight route for the planning tests: along +x from the ego, one point a metre."""

from __future__ import annotations

import numpy as np

from sim.messages import RouteAhead


def straight_route(n: int = 101, limit: float = 13.9) -> RouteAhead:
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
