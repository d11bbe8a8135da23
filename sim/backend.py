"""The protocol every world backend implements (embedded now; CARLA behind the same calls)."""

from __future__ import annotations

from typing import Protocol

from sim.messages import Control, Observation
from sim.scenario import Scenario
from sim.world import EpisodeResult


class World(Protocol):
    """A synchronous world: ``reset`` then ``step`` with a fixed ``dt`` until ``done``.

    Backends convert to their own frames and actuation at their boundary; what crosses this
    interface is always in our frame (x forward, y left, z up; map frame = OpenDRIVE's) and units.
    """

    backend: str

    def reset(self, scenario: Scenario, seed: int) -> Observation:
        """Load the scenario's map and actors for ``seed``; return the first observation."""
        ...

    def step(self, control: Control) -> Observation:
        """Apply ``control`` to the ego, advance one ``dt``, return the new observation."""
        ...

    @property
    def done(self) -> bool:
        """The episode has ended (route completed, or a terminal event)."""
        ...

    def result(self) -> EpisodeResult:
        """The episode's score so far (final once ``done``)."""
        ...

    def close(self) -> None:
        """Release everything the backend holds (actors, server settings); safe to call twice."""
        ...
