"""Traffic lights that cycle per junction group, as CARLA's do by default.

Each signalised junction is a group; its heads get green one after another (green, yellow, then
an all-red clearance before the next head), so conflicting movements never share a green. Each
group starts at a phase drawn from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.map import RoadMap
from sim.messages import LightState


@dataclass(frozen=True)
class LightTiming:
    green_s: float = 6.0
    yellow_s: float = 3.0
    all_red_s: float = 1.0

    @property
    def slot_s(self) -> float:
        return self.green_s + self.yellow_s + self.all_red_s


class TrafficLights:
    """States of every light head; ``approach_state`` maps an approach segment to its state."""

    def __init__(
        self, road_map: RoadMap, rng: np.random.Generator, timing: LightTiming = LightTiming()
    ) -> None:
        self.timing = timing
        pairs = road_map.lights  # (landmark, approach), sorted by junction
        self.landmarks = [lm for lm, _ in pairs]
        self.approaches = [ap for _, ap in pairs]
        self.junction = np.array([ap.junction for ap in self.approaches], dtype=np.int64)
        # Slot of each entry within its junction's cycle: one slot per distinct head.
        slot = np.zeros(len(pairs), dtype=np.int64)
        n_slots = np.ones(len(pairs), dtype=np.int64)
        for j in np.unique(self.junction):
            idx = np.flatnonzero(self.junction == j)
            heads = sorted({self.landmarks[i].id for i in idx})
            for i in idx:
                slot[i] = heads.index(self.landmarks[i].id)
                n_slots[i] = len(heads)
        offsets = {int(j): float(rng.uniform(0.0, 60.0)) for j in np.unique(self.junction)}
        self.slot = slot
        self.n_slots = n_slots
        self.offset = np.array([offsets[int(j)] for j in self.junction])
        self.segment_to_entry = {ap.segment: i for i, ap in enumerate(self.approaches)}
        # dense lookup for vectorised queries: segment index -> entry, -1 where no light
        self.entry_of_segment = np.full(len(road_map.segments), -1, dtype=np.int64)
        for seg, entry in self.segment_to_entry.items():
            self.entry_of_segment[seg] = entry
        self.state: NDArray[np.int64] = np.full(len(pairs), int(LightState.RED), dtype=np.int64)
        self._valid_until = -np.inf

    def update(self, t: float) -> None:
        """Set every head's state for simulation time ``t`` (s)."""
        if len(self.state) == 0 or t < self._valid_until:
            return
        tm = self.timing
        phase = np.mod(t + self.offset, tm.slot_s * self.n_slots)
        active = (phase // tm.slot_s).astype(np.int64)
        within = phase - active * tm.slot_s
        mine = active == self.slot
        state = np.full(len(self.state), int(LightState.RED), dtype=np.int64)
        state[mine & (within < tm.green_s)] = int(LightState.GREEN)
        state[mine & (within >= tm.green_s) & (within < tm.green_s + tm.yellow_s)] = int(
            LightState.YELLOW
        )
        self.state = state
        # states hold until the next boundary of any head's slot (green, yellow, red)
        to_next = np.where(
            within < tm.green_s,
            tm.green_s - within,
            np.where(
                within < tm.green_s + tm.yellow_s,
                tm.green_s + tm.yellow_s - within,
                tm.slot_s - within,
            ),
        )
        self._valid_until = t + float(np.min(to_next)) - 1e-9

    def states_of(self, segments: NDArray[np.int64]) -> NDArray[np.int64]:
        """Light state of each approach segment ``(K,)``, -1 where the segment has no light."""
        entry = self.entry_of_segment[segments]
        return (
            np.where(entry >= 0, self.state[np.maximum(entry, 0)], -1)
            if len(self.state)
            else np.full(len(segments), -1, dtype=np.int64)
        )

    def approach_state(self, segment: int) -> LightState | None:
        """State of the light governing an approach segment, or None if it has no light."""
        i = self.segment_to_entry.get(segment)
        return None if i is None else LightState(int(self.state[i]))
