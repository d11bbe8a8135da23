"""The controller stage interface: ``update(plan, state) -> Control``."""

from __future__ import annotations

from abc import ABC, abstractmethod

from sim.messages import Control, Plan, VehicleState


class Controller(ABC):
    """Turns a :class:`Plan` (ego frame at planning time) into a :class:`Control`.

    Controllers hold only their own solver/integrator state; ``reset()`` clears it (a new
    episode, or after a failure).
    """

    @abstractmethod
    def update(self, plan: Plan, state: VehicleState) -> Control:
        """Return the control to apply now, given the latest plan and the current ego state."""

    @abstractmethod
    def reset(self) -> None:
        """Forget all internal state (integrators, warm starts)."""


def fallback(state: VehicleState, reason: str, decel_mps2: float = 3.0) -> Control:
    """The safe output: brake at ``decel_mps2`` (within the comfort limit) and hold the steer."""
    accel = 0.0 if state.speed <= 0.0 else -abs(decel_mps2)
    return Control(
        t=state.t, frame=state.frame, accel=accel, steer=state.steer, valid=False, reason=reason
    )
