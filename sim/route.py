"""Routes: A* over the lane graph (like CARLA's GlobalRoutePlanner), resampled densely.

A route is a polyline through driving lanes from a start to a goal, with the attributes the stack
needs at every metre: heading, lane segment, speed limit, lane width, whether a lane is on the
left, and which junction (if any) the point is in.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from sim.errors import RouteError
from sim.messages import FloatArray, RouteAhead, VehicleState

# sim.map (and with it the carla client library, 30 ms to load) is imported where routes are
# planned, not here: a recording's writer process needs only Route and route_slice
if TYPE_CHECKING:
    from sim.map import RoadMap
    from sim.scenario import RouteSpec

SNAP_RADIUS_M = 6.0  # a route waypoint must lie within this distance of a driving lane


@dataclass(frozen=True)
class Route:
    """A route resampled every ``step_m`` metres (map frame). All arrays are ``(N,)``-leading."""

    xy: FloatArray  # (N, 2) m
    yaw: FloatArray  # (N,) rad
    s: FloatArray  # (N,) m from the start
    segment: NDArray[np.int64]  # (N,) lane segment index
    speed_limit_mps: FloatArray  # (N,)
    lane_width_m: FloatArray  # (N,)
    left_lane: NDArray[np.int64]  # (N,) +1 same direction, -1 opposite, 0 none
    junction: NDArray[np.int64]  # (N,) junction id or -1
    step_m: float

    @property
    def length_m(self) -> float:
        return float(self.s[-1])

    def project(self, x: float, y: float, hint: int = 0, window: int = 80) -> tuple[int, float]:
        """Closest route index near ``hint`` (within ``window`` samples), and its distance."""
        lo, hi = max(0, hint - window // 4), min(len(self.s), hint + window)
        d2 = (self.xy[lo:hi, 0] - x) ** 2 + (self.xy[lo:hi, 1] - y) ** 2
        i = int(np.argmin(d2))
        return lo + i, float(math.sqrt(d2[i]))

    def distance_to(self, x: float, y: float) -> float:
        """Distance from a point to the whole route polyline (m)."""
        return float(np.sqrt(np.min((self.xy[:, 0] - x) ** 2 + (self.xy[:, 1] - y) ** 2)))


def _candidates(road_map: RoadMap, x: float, y: float) -> list[tuple[int, float]]:
    """Lane segments passing within SNAP_RADIUS_M of a point, with the point's s on each."""
    from sim.map import project_s

    near: list[tuple[float, int, float]] = []
    for seg in road_map.segments:
        d2 = float(np.min(np.sum((seg.xy - (x, y)) ** 2, axis=1)))
        if d2 <= SNAP_RADIUS_M**2:
            near.append((d2, seg.index, project_s(seg, np.array([x, y]))))
    # A point inside a lane means that lane (not the one beside it), unless it is a junction's.
    inside = [
        c
        for c in near
        if c[0] <= (road_map.segments[c[1]].width_m / 2) ** 2
        and road_map.segments[c[1]].junction < 0
    ]
    return [(i, s) for _, i, s in (inside or near)]


def _astar(
    road_map: RoadMap, start: tuple[int, float], goal: tuple[int, float]
) -> tuple[float, list[int]] | None:
    """Length and segment sequence of the cheapest way from ``start`` to ``goal`` (segment, s)."""
    (a, s_a), (b, s_b) = start, goal
    if a == b and s_b >= s_a:
        return s_b - s_a, [a]
    goal_xy = road_map.segments[b].xy[0]
    segs = road_map.segments

    def h(i: int) -> float:
        return float(np.hypot(*(segs[i].xy[0] - goal_xy)))

    g0 = segs[a].length - s_a
    frontier: list[tuple[float, float, int, int]] = []
    parent: dict[int, int] = {}
    best: dict[int, float] = {}
    for j in segs[a].successors:
        if g0 < best.get(j, math.inf):
            best[j], parent[j] = g0, -1
            heapq.heappush(frontier, (g0 + h(j), g0, j, -1))
    while frontier:
        _, g, i, _ = heapq.heappop(frontier)
        if g > best.get(i, math.inf):
            continue
        if i == b:
            chain = [b]
            while parent[chain[-1]] != -1:
                chain.append(parent[chain[-1]])
            return g + s_b, [a, *reversed(chain)]
        g2 = g + segs[i].length
        for j in segs[i].successors:
            if g2 < best.get(j, math.inf):
                best[j], parent[j] = g2, i
                heapq.heappush(frontier, (g2 + h(j), g2, j, i))
    return None


def plan_route(
    road_map: RoadMap, waypoints: list[tuple[float, float]], step_m: float = 1.0
) -> Route:
    """The shortest drivable route through ``waypoints`` (map frame, m), in order."""
    if len(waypoints) < 2:
        raise RouteError("a route needs at least two waypoints")
    cands: list[list[tuple[int, float]]] = []
    for x, y in waypoints:
        near = _candidates(road_map, x, y)
        if not near:
            raise RouteError(
                f"route waypoint ({x:g}, {y:g}) is not within {SNAP_RADIUS_M:g} m of a driving "
                f"lane of map '{road_map.name}'"
            )
        cands.append(near)
    # Choose the lane of each waypoint greedily, the first by the cheapest first leg.
    best_first: tuple[float, tuple[int, float], list[int]] | None = None
    for c0 in cands[0]:
        for c1 in cands[1]:
            r = _astar(road_map, c0, c1)
            if r is not None and (best_first is None or r[0] < best_first[0]):
                best_first = (r[0], c1, r[1])
    if best_first is None:
        raise _unreachable(road_map, waypoints[0], waypoints[1])
    pieces = [(best_first[2], _start_s(cands[0], best_first[2][0]), best_first[1][1])]
    here = best_first[1]
    for k in range(2, len(waypoints)):
        leg = None
        for c in cands[k]:
            r = _astar(road_map, here, c)
            if r is not None and (leg is None or r[0] < leg[0]):
                leg = (r[0], c, r[1])
        if leg is None:
            raise _unreachable(road_map, waypoints[k - 1], waypoints[k])
        pieces.append((leg[2], here[1], leg[1][1]))
        here = leg[1]
    return _densify(road_map, pieces, step_m)


def random_route(
    road_map: RoadMap, rng: np.random.Generator, min_length_m: float, step_m: float = 1.0
) -> Route:
    """A route of at least ``min_length_m`` drawn from ``rng``: random start, random turns."""
    starts = [seg for seg in road_map.segments if seg.junction < 0 and seg.length > 10.0]
    if not starts:
        raise RouteError(f"map '{road_map.name}' has no lane to start a route on")
    for _ in range(100):
        seg = starts[int(rng.integers(len(starts)))]
        s0 = float(rng.uniform(0.0, max(seg.length - 5.0, 0.0)))
        chain, total = [seg.index], seg.length - s0
        while total < min_length_m:
            succ = road_map.segments[chain[-1]].successors
            if not succ:
                break
            nxt = succ[int(rng.integers(len(succ)))]
            chain.append(nxt)
            total += road_map.segments[nxt].length
        last = road_map.segments[chain[-1]]
        if total >= min_length_m and last.junction < 0:
            # End halfway between the point that makes the length and the lane's end.
            needed = min_length_m - (total - last.length) if len(chain) > 1 else s0 + min_length_m
            s_end = needed + 0.5 * (last.length - needed)
            return _densify(road_map, [(chain, s0, s_end)], step_m)
    raise RouteError(
        f"could not draw a route of {min_length_m:g} m on map '{road_map.name}': its longest "
        "drivable lane sequences are shorter; lower route.random.min_length_m"
    )


def _start_s(cands: list[tuple[int, float]], seg: int) -> float:
    return next(s for i, s in cands if i == seg)


def _unreachable(road_map: RoadMap, a: tuple[float, float], b: tuple[float, float]) -> RouteError:
    return RouteError(
        f"no drivable route from ({a[0]:g}, {a[1]:g}) to ({b[0]:g}, {b[1]:g}) on map "
        f"'{road_map.name}' (lanes are one-way; check the order and the side of the road)"
    )


def _densify(
    road_map: RoadMap, pieces: list[tuple[list[int], float, float]], step_m: float
) -> Route:
    """Concatenate ``(segments, s_start_on_first, s_end_on_last)`` pieces and resample."""
    from sim.map import KMH

    xy_parts, seg_parts, lim_parts = [], [], []
    for chain, s_start, s_end in pieces:
        for k, i in enumerate(chain):
            seg = road_map.segments[i]
            lo = s_start if k == 0 else 0.0
            hi = s_end if k == len(chain) - 1 else seg.length
            inside = (seg.s > lo) & (seg.s < hi)
            s_vals = np.concatenate([[lo], seg.s[inside], [hi]])
            xy = np.stack(
                [np.interp(s_vals, seg.s, seg.xy[:, 0]), np.interp(s_vals, seg.s, seg.xy[:, 1])], -1
            )
            limits = road_map.speed_limits_kmh(i)
            lim = limits[np.clip(np.searchsorted(seg.s, s_vals, side="right") - 1, 0, None)]
            xy_parts.append(xy)
            seg_parts.append(np.full(len(xy), i))
            lim_parts.append(lim)
    xy = np.concatenate(xy_parts)
    seg_idx = np.concatenate(seg_parts)
    lim = np.concatenate(lim_parts)
    d = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    keep = np.concatenate([[True], d > 1e-6])
    xy, seg_idx, lim = xy[keep], seg_idx[keep], lim[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    if s[-1] < 2 * step_m:
        raise RouteError("the route is shorter than 2 m: its waypoints are too close together")
    s_new = np.arange(0.0, s[-1] + 1e-9, step_m)
    if s[-1] - s_new[-1] > 1e-6:
        s_new = np.append(s_new, s[-1])
    xy_new = np.stack([np.interp(s_new, s, xy[:, 0]), np.interp(s_new, s, xy[:, 1])], -1)
    nearest = np.clip(np.searchsorted(s, s_new, side="right") - 1, 0, len(s) - 1)
    # A sample takes the lane of the next original point, so the first sample labelled with a
    # junction lies within one step after the junction's entry (its stop line).
    after = np.clip(np.searchsorted(s, s_new, side="left"), 0, len(s) - 1)
    seg_new = seg_idx[after]
    # Headings from the resampled polyline itself, so they agree with the points.
    dxy = np.gradient(xy_new, axis=0)
    yaw = np.arctan2(dxy[:, 1], dxy[:, 0])
    segs = road_map.segments
    return Route(
        xy=xy_new,
        yaw=yaw,
        s=s_new,
        segment=seg_new.astype(np.int64),
        speed_limit_mps=lim[nearest] * KMH,
        lane_width_m=np.array([segs[i].width_m for i in seg_new]),
        left_lane=np.array([segs[i].left_lane for i in seg_new], dtype=np.int64),
        junction=np.array([segs[i].junction for i in seg_new], dtype=np.int64),
        step_m=step_m,
    )


ROUTE_AHEAD_M = 100.0  # how much of the route an Observation carries


def route_for(road_map: RoadMap, spec: RouteSpec, rng: np.random.Generator) -> Route:
    """A scenario's route: through its waypoints, or drawn from ``rng`` when it asks for one."""
    if spec.waypoints is not None:
        return plan_route(road_map, list(spec.waypoints))
    assert spec.random is not None  # the schema allows exactly one of the two
    return random_route(road_map, rng, spec.random.min_length_m)


def straight_route_ahead(n: int = 101, limit_mps: float = 13.9) -> RouteAhead:
    """A straight lane along the ego's +x, one point a metre from the ego, ``n`` points, no
    junction and no lane on the left: for planners' tests and scripts that need no map."""
    xs = np.arange(n, dtype=np.float64)
    return RouteAhead(
        xy=np.stack([xs, np.zeros(n)], -1),
        yaw=np.zeros(n),
        speed_limit_mps=np.full(n, limit_mps),
        lane_width_m=np.full(n, 3.5),
        left_lane=np.full(n, -1),
        junction=np.full(n, -1),
        step_m=1.0,
        s0_m=0.0,
        remaining_m=float(n - 1),
    )


def route_ahead(route: Route, i0: int, ego: VehicleState) -> RouteAhead:
    """The route from index ``i0`` for :data:`ROUTE_AHEAD_M`, in ``ego``'s frame; every backend
    gives its stages this."""
    i1 = min(len(route.s), i0 + int(ROUTE_AHEAD_M / route.step_m) + 1)
    return route_slice(route, i0, i1, ego)


def route_slice(route: Route, i0: int, i1: int, ego: VehicleState) -> RouteAhead:
    """Route points ``i0:i1`` in ``ego``'s frame. The map data are views of the route's arrays
    and the geometry is computed element by element, so the same arguments always give the same
    bits (a recording stores ``i0``, ``i1`` and rebuilds the slice from the route)."""
    r = route
    return RouteAhead(
        xy=ego.to_ego(r.xy[i0:i1]),
        yaw=np.remainder(r.yaw[i0:i1] - ego.yaw + np.pi, 2 * np.pi) - np.pi,
        speed_limit_mps=r.speed_limit_mps[i0:i1],
        lane_width_m=r.lane_width_m[i0:i1],
        left_lane=r.left_lane[i0:i1],
        junction=r.junction[i0:i1],
        step_m=r.step_m,
        s0_m=float(r.s[i0]),
        remaining_m=float(r.s[-1] - r.s[i0]),
    )
