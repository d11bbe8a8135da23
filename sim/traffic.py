"""Traffic vehicles: lane following with IDM, lights, stop signs and junction right of way.

Every vehicle drives along its own path through the lane graph (random turns from the seed),
stored as rows of ``(N, K)`` arrays sampled every metre so the whole fleet advances with a few
vectorised operations per tick. Rules, in the order they are applied:

1. Leader: the nearest obstacle (vehicle, pedestrian on the road, the ego) whose centre lies on
   the vehicle's path within ``lookahead_m`` gives the IDM gap.
2. Stop line: before a junction, a vehicle without the junction's right of way treats its stop
   line as a standing obstacle. Right of way needs a green (or no) light, a full stop at a stop
   sign, and the junction free of vehicles from other approaches and of the ego.
3. IDM acceleration, clipped to the braking limit, then integration along the path.

Holding the junction until the vehicle has left it, with one green head per junction, is what
keeps traffic from ever colliding with itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.dynamics import idm_accel
from sim.lights import TrafficLights
from sim.map import RoadMap
from sim.messages import LightState
from sim.route import _densify

_NONE = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class TrafficSettings:
    path_samples: int = 400  # metres of path held per vehicle
    refill_margin_m: float = 150.0  # extend the path when less than this is left
    lookahead_m: float = 60.0
    probe_step_m: float = 3.0
    a_max: float = 1.5  # IDM maximum acceleration (m/s²)
    b_comf: float = 2.0  # IDM comfortable deceleration (m/s²)
    s0: float = 2.0  # IDM minimum gap (m)
    time_headway_s: float = 1.5
    max_decel: float = 8.0  # m/s²
    stop_line_margin_m: float = 1.0  # stop this far before the line
    stop_wait_s: float = 1.0  # stand this long at a stop sign
    yellow_decel: float = 4.0  # stop for yellow if this deceleration suffices
    request_distance_m: float = 12.0  # ask for right of way this far before the line
    decide_every: int = 2  # ticks between leader / right-of-way decisions (10 Hz at 0.05 s)


@dataclass(frozen=True)
class JunctionClaim:
    """The ego's claim on a junction (it is in it, or at its stop line)."""

    junction: int
    approach: int  # the approach segment the ego comes from, -1 if already inside


class Traffic:
    """All non-ego vehicles. ``mode``: 0 normal, 1 parked (never moves), 2 scripted lead."""

    def __init__(
        self,
        road_map: RoadMap,
        lights: TrafficLights,
        settings: TrafficSettings = TrafficSettings(),
    ) -> None:
        self.map = road_map
        self.lights = lights
        self.cfg = settings
        k = settings.path_samples
        self.n = 0
        self.ids = np.zeros(0, dtype=np.int64)
        self.s = np.zeros(0)  # centre position along the path row (m)
        self.v = np.zeros(0)
        self.a = np.zeros(0)
        self.v_factor = np.zeros(0)
        self.length = np.zeros(0)
        self.width = np.zeros(0)
        self.height = np.zeros(0)
        self.mode = np.zeros(0, dtype=np.int64)
        self.forced_accel = np.zeros(0)  # nan: none; else overrides IDM (scripted braking)
        self.cruise = np.zeros(0)  # desired speed override (m/s), nan: limit × factor
        self.lateral = np.zeros(0)  # offset left of the lane centre (m), for parked cars
        self.px = np.zeros((0, k))
        self.py = np.zeros((0, k))
        self.pyaw = np.zeros((0, k))
        self.plimit = np.zeros((0, k))
        self.pjunction = np.zeros((0, k), dtype=np.int64)
        self.pstop = np.zeros((0, k), dtype=np.int64)  # approach segment at its stop line, -1
        self.pseg = np.zeros((0, k), dtype=np.int64)
        self.pnext_stop = np.zeros((0, k), dtype=np.int64)  # next stop-line sample, k if none
        self._pose_rows = np.zeros((3, 0, k))  # px, py, pyaw are views of this (one take each)
        self.valid_len = np.zeros(0, dtype=np.int64)
        self.chains: list[list[int]] = []
        self.chain_s0: list[float] = []  # s of the path's first sample on chains[i][0]
        self.dead_end: list[bool] = []
        self.holding = np.zeros(0, dtype=np.int64)  # junction held, -1 none
        self.hold_from = np.zeros(0, dtype=np.int64)  # approach segment it came from
        self.hold_until = np.zeros(0)  # path s where its rear leaves the junction
        self.stop_timer = np.zeros(0)
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.yaw = np.zeros(0)
        self._rng: np.random.Generator | None = None
        self._probe = np.arange(0.0, settings.lookahead_m, settings.probe_step_m)  # (P,) m
        self._probe_k = self._probe.astype(np.int64)
        self._tick = 0
        self._row_start = np.zeros(0, dtype=np.int64)
        self._any_lateral = False
        self.scripted = False  # any parked or scripted vehicle
        self._v0 = np.zeros(0)
        self._half_diagonal = np.zeros(0)
        self._gap = np.zeros(0)
        self._v_other = np.zeros(0)
        self._is_stop = np.zeros(len(road_map.segments), dtype=bool)  # approach has a stop sign
        for seg_i, ap in road_map.approaches.items():
            self._is_stop[seg_i] = ap.control == "stop"

    # ------------------------------------------------------------------------------ spawning
    def add(
        self,
        rng: np.random.Generator,
        vid: int,
        chain: list[int],
        s_on_first: float,
        speed: float,
        length: float,
        width: float,
        height: float,
        v_factor: float,
        mode: int = 0,
        cruise: float = math.nan,
        lateral: float = 0.0,
    ) -> None:
        """Add a vehicle whose centre is at ``s_on_first`` along ``chain[0]``."""
        self._rng = rng
        k = self.cfg.path_samples
        self.ids = np.append(self.ids, vid)
        self.s = np.append(self.s, 0.0)
        self.v = np.append(self.v, speed)
        self.a = np.append(self.a, 0.0)
        self.v_factor = np.append(self.v_factor, v_factor)
        self.length = np.append(self.length, length)
        self.width = np.append(self.width, width)
        self.height = np.append(self.height, height)
        self.mode = np.append(self.mode, mode)
        self.forced_accel = np.append(self.forced_accel, math.nan)
        self.cruise = np.append(self.cruise, cruise)
        self.lateral = np.append(self.lateral, lateral)
        for name, dtype in (
            ("px", float),
            ("py", float),
            ("pyaw", float),
            ("plimit", float),
            ("pjunction", np.int64),
            ("pstop", np.int64),
            ("pseg", np.int64),
            ("pnext_stop", np.int64),
        ):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros((1, k), dtype)]))
        self._pose_rows = np.stack([self.px, self.py, self.pyaw])
        self.px, self.py, self.pyaw = self._pose_rows
        self.valid_len = np.append(self.valid_len, 0)
        self.chains.append(list(chain))
        self.chain_s0.append(s_on_first)
        self.dead_end.append(False)
        self.holding = np.append(self.holding, -1)
        self.hold_from = np.append(self.hold_from, -1)
        self.hold_until = np.append(self.hold_until, 0.0)
        self.stop_timer = np.append(self.stop_timer, 0.0)
        self.n += 1
        self._row_start = np.arange(self.n) * k
        self._any_lateral = bool(np.any(self.lateral != 0.0))
        self.scripted = bool(np.any(self.mode != 0))
        self._fill_path(self.n - 1, rng)
        self._update_pose()

    def _fill_path(self, i: int, rng: np.random.Generator) -> None:
        """(Re)build row ``i`` from its chain, extending the chain with random turns."""
        k = self.cfg.path_samples
        segs = self.map.segments
        chain = self.chains[i]
        total = segs[chain[0]].length - self.chain_s0[i] + sum(segs[c].length for c in chain[1:])
        while total < k + 5 and not self.dead_end[i]:
            succ = segs[chain[-1]].successors
            if not succ:
                self.dead_end[i] = True
                break
            nxt = succ[int(rng.integers(len(succ)))]
            chain.append(nxt)
            total += segs[nxt].length
        end = segs[chain[-1]].length
        r = _densify(self.map, [(chain, self.chain_s0[i], end)], 1.0)
        m = min(len(r.s), k)
        pad = k - m
        self.px[i] = np.pad(r.xy[:m, 0], (0, pad), mode="edge")
        self.py[i] = np.pad(r.xy[:m, 1], (0, pad), mode="edge")
        self.pyaw[i] = np.pad(np.unwrap(r.yaw[:m]), (0, pad), mode="edge")
        self.plimit[i] = np.pad(r.speed_limit_mps[:m], (0, pad), mode="edge")
        self.pjunction[i] = np.pad(r.junction[:m], (0, pad), mode="edge")
        self.pseg[i] = np.pad(r.segment[:m], (0, pad), mode="edge")
        stop = np.full(k, -1, dtype=np.int64)
        seg_row = self.pseg[i]
        ends = np.flatnonzero(seg_row[:-1] != seg_row[1:])  # last sample of each segment
        for e in ends:
            if int(seg_row[e]) in self.map.approaches and self.pjunction[i, e + 1] >= 0:
                stop[e] = int(seg_row[e])
        self.pstop[i] = stop
        # index of the next stop line at or after each sample (k itself if none follows)
        idx = np.where(stop >= 0, np.arange(k), k)
        self.pnext_stop[i] = np.minimum.accumulate(idx[::-1])[::-1]
        self.valid_len[i] = m

    def _advance_rows(self) -> None:
        """Drop the path behind vehicles that have used most of it, and extend it ahead."""
        assert self._rng is not None
        segs = self.map.segments
        for i in (self.s > self.valid_len - self.cfg.refill_margin_m).nonzero()[0].tolist():
            if self.dead_end[i] or self.mode[i] == 1:
                continue
            # Re-anchor the path 20 m behind the vehicle: find the segment holding that point.
            back = max(0, int(self.s[i]) - 20)
            chain = self.chains[i]
            idx, end_of_idx = 0, segs[chain[0]].length - self.chain_s0[i]
            while idx + 1 < len(chain) and end_of_idx <= back:
                idx += 1
                end_of_idx += segs[chain[idx]].length
            starts_at = end_of_idx - segs[chain[idx]].length  # path distance where it begins
            self.chains[i] = chain[idx:]
            self.chain_s0[i] = back - starts_at
            self.s[i] -= back
            self.hold_until[i] -= back
            self._fill_path(i, self._rng)

    # ------------------------------------------------------------------------------- stepping
    def _update_pose(self) -> None:
        k = np.minimum(np.maximum(self.s, 0.0), self.cfg.path_samples - 1.001)
        i0 = k.astype(np.int64)
        f = k - i0
        flat = self._row_start + i0  # index into the flattened (N, K) rows
        rows = self._pose_rows.reshape(3, -1)  # x, y, unwrapped heading
        p0 = rows.take(flat, axis=1)
        self.x, self.y, self.yaw = p0 + (rows.take(flat + 1, axis=1) - p0) * f
        if self._any_lateral:
            self.x = self.x - np.sin(self.yaw) * self.lateral
            self.y = self.y + np.cos(self.yaw) * self.lateral

    def step(
        self,
        dt: float,
        obstacles: Callable[[], NDArray[np.float64]],
        claim: Callable[[], JunctionClaim | None],
    ) -> None:
        """Advance every vehicle by ``dt``.

        Leaders and right of way are decided every ``decide_every`` ticks; in between, each gap
        is carried forward with its closing speed. IDM integrates every tick.

        :param obstacles: returns ``(M, 5)`` x, y, heading, speed, half-length of things on the
            road that are not traffic vehicles (the ego, pedestrians on the road)
        :param claim: returns the ego's claim on a junction, if any
            (obstacles are asked only when deciding, the claim only when a vehicle asks for
            right of way; neither depends on the traffic)
        """
        if self.n == 0:
            return
        cfg = self.cfg
        front = self.s + self.length / 2.0
        if self._tick % cfg.decide_every == 0 or len(self._gap) != self.n:
            self._gap, self._v_other = self._decide(
                obstacles(), claim, front, dt * cfg.decide_every
            )
            limit = self.plimit.ravel().take(
                self._row_start + np.minimum(front.astype(np.int64), cfg.path_samples - 1)
            )
            self._v0 = np.where(np.isnan(self.cruise), limit * self.v_factor, self.cruise)
        else:
            self._gap = self._gap - (self.v - self._v_other) * dt
        self._tick += 1
        acc = idm_accel(
            self.v,
            self._v0,
            self._gap,
            self.v - self._v_other,
            cfg.a_max,
            cfg.b_comf,
            cfg.s0,
            cfg.time_headway_s,
        )
        if self.scripted:  # scripted braking overrides IDM; parked cars never move
            acc = np.where(np.isnan(self.forced_accel), acc, self.forced_accel)
        acc = np.minimum(np.maximum(acc, -cfg.max_decel), cfg.a_max)
        v_new = np.maximum(self.v + acc * dt, 0.0)
        if self.scripted:
            v_new[self.mode == 1] = 0.0
        self.s = self.s + 0.5 * (self.v + v_new) * dt
        self.a = (v_new - self.v) / dt
        self.v = v_new
        # Release junctions whose rear has left them.
        done = (self.holding >= 0) & (self.s - self.length / 2.0 > self.hold_until)
        if done.any():
            self.holding[done] = -1
            self.hold_from[done] = -1
        self._advance_rows()
        self._update_pose()

    def _decide(
        self,
        obstacles: NDArray[np.float64],
        claim: Callable[[], JunctionClaim | None],
        front: NDArray[np.float64],
        dt: float,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Gap to what each vehicle must not hit (its leader or a stop line), and its speed.

        Leaders: pairs are pre-filtered by straight-line distance (a path is never shorter than
        the chord), then each candidate is probed along the follower's path.
        """
        cfg = self.cfg
        n = self.n
        last = cfg.path_samples - 1
        ox = np.concatenate([self.x, obstacles[:, 0]])  # (M,)
        oy = np.concatenate([self.y, obstacles[:, 1]])
        fk = np.minimum(front.astype(np.int64), last)
        px, py = self.px.ravel(), self.py.ravel()
        fflat = self._row_start + fk
        fx, fy = px.take(fflat), py.take(fflat)
        dx, dy = ox - fx[:, None], oy - fy[:, None]  # (N, M)
        c, sn = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        fwd = dx * c + dy * sn
        lat = np.abs(dy * c - dx * sn)
        # ahead, within reach, and inside a wide cone (a path bends at most ~90° in a junction)
        near = (fwd > -3.0) & (lat < fwd + 6.0) & (dx * dx + dy * dy < (cfg.lookahead_m + 3.0) ** 2)
        near.ravel()[: n * near.shape[1] : near.shape[1] + 1] = False  # no vehicle leads itself
        ii, jj = near.nonzero()  # candidate (follower, obstacle) pairs
        gap_lead = np.full(n, np.inf)
        v_lead = np.zeros(n)
        if len(ii):
            probe = self._probe  # (P,)
            kk = np.minimum(fk.take(ii)[:, None] + self._probe_k, last)  # (K, P)
            flat = self._row_start.take(ii)[:, None] + kk
            d2 = (px.take(flat) - ox.take(jj)[:, None]) ** 2 + (
                py.take(flat) - oy.take(jj)[:, None]
            ) ** 2
            # on the path: within half a width plus half a probe step and a margin of a centre
            reach = self.width.take(ii) / 2.0 + 0.5 * cfg.probe_step_m + 0.5
            hit = d2 < (reach**2)[:, None]
            found = hit.any(1)
            if found.any():
                ii, jj, flat, hit = ii[found], jj[found], flat[found], hit[found]
                first = hit.argmax(1)
                ohalf = np.concatenate([self.length / 2.0, obstacles[:, 4]])
                ov = np.concatenate([self.v, obstacles[:, 3]])
                ohead = np.concatenate([self.yaw, obstacles[:, 2]])
                gap = probe.take(first) - ohalf.take(jj)
                yaw_probe = self.pyaw.ravel().take(
                    flat.ravel().take(np.arange(len(ii)) * flat.shape[1] + first)
                )
                along = np.maximum(ov.take(jj) * np.cos(ohead.take(jj) - yaw_probe), 0.0)
                np.minimum.at(gap_lead, ii, gap)
                is_lead = gap <= gap_lead[ii]
                v_lead[ii[is_lead]] = along[is_lead]
        gap_stop = self._stop_gaps(dt, front, claim)
        use_stop = gap_stop < gap_lead
        return np.where(use_stop, gap_stop, gap_lead), np.where(use_stop, 0.0, v_lead)

    def _stop_gaps(
        self, dt: float, front: NDArray[np.float64], claim: Callable[[], JunctionClaim | None]
    ) -> NDArray[np.float64]:
        """Distance to the stop line for vehicles that must stop before their next junction."""
        cfg = self.cfg
        last = cfg.path_samples - 1
        rs = self._row_start
        out = np.full(self.n, np.inf)
        fk = np.minimum(front.astype(np.int64), last)
        k_stop = self.pnext_stop.ravel().take(rs + fk)
        has = k_stop - front < cfg.lookahead_m
        k_stop = np.minimum(k_stop, last)
        approach = np.maximum(self.pstop.ravel().take(rs + k_stop), 0)
        junction = self.pjunction.ravel().take(rs + np.minimum(k_stop + 1, last))
        cand = has & (self.mode != 1) & (self.holding != junction)
        if not cand.any():
            return out
        dist = k_stop - front
        v = self.v
        light = self.lights.states_of(approach)
        run_yellow = (light == int(LightState.YELLOW)) & (
            v * v > 2 * cfg.yellow_decel * np.maximum(dist - cfg.stop_line_margin_m, 0.01)
        )
        light_stop = cand & (light >= 0) & (light != int(LightState.GREEN)) & ~run_yellow
        line_gap = np.maximum(dist - cfg.stop_line_margin_m, 0.05)
        out[light_stop] = line_gap[light_stop]
        request = dist < np.maximum(cfg.request_distance_m, v * v / (2 * cfg.b_comf) + 5.0)
        claimed: list[JunctionClaim | None] = []  # the ego's claim, asked at most once
        for i in (cand & request & ~light_stop).nonzero()[0].tolist():
            if self._is_stop[approach[i]]:
                if v[i] < 0.1 and dist[i] < 3.0 + cfg.stop_line_margin_m:
                    self.stop_timer[i] += dt
                if self.stop_timer[i] < cfg.stop_wait_s:
                    out[i] = line_gap[i]
                    continue
            if not claimed:
                claimed.append(claim())
            if self._junction_free(int(junction[i]), int(approach[i]), claimed[0]):
                self._grant(i, int(junction[i]), int(approach[i]), int(k_stop[i]))
            else:
                out[i] = line_gap[i]
        return out

    def _junction_free(self, junction: int, approach: int, claim: JunctionClaim | None) -> bool:
        if claim is not None and claim.junction == junction and claim.approach != approach:
            return False
        holders = self.holding == junction
        return not np.any(holders & (self.hold_from != approach))

    def _grant(self, i: int, junction: int, approach: int, k_stop: int) -> None:
        row = self.pjunction[i]
        after = np.flatnonzero(row[k_stop + 1 :] != junction)
        exit_k = k_stop + 1 + (int(after[0]) if len(after) else len(row) - k_stop - 1)
        self.holding[i] = junction
        self.hold_from[i] = approach
        self.hold_until[i] = float(exit_k)
        self.stop_timer[i] = 0.0

    @property
    def half_diagonal(self) -> NDArray[np.float64]:
        """Radius of each vehicle's bounding circle (m)."""
        if len(self._half_diagonal) != self.n:
            self._half_diagonal = 0.5 * np.hypot(self.length, self.width)
        return self._half_diagonal

    def boxes(self) -> NDArray[np.float64]:
        """``(N, 5)`` centre x, y, yaw, length, width of every vehicle."""
        return np.stack([self.x, self.y, self.yaw, self.length, self.width], -1)

    def at_path_end(self) -> NDArray[np.int64]:
        """Vehicles within 5 m of the end of a dead-end path (to be respawned)."""
        if not any(self.dead_end):
            return _NONE
        dead = np.array(self.dead_end, dtype=bool)
        return np.flatnonzero(dead & (self.s + self.length / 2 > self.valid_len - 5.0))
