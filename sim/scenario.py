"""Scenario files: YAML validated by a typed schema (pydantic).

One file runs on the embedded world and on CARLA. Positions are OpenDRIVE map coordinates
(x east, y north, m). A bad file raises :class:`ScenarioError` with one line that names the file,
the field and what is allowed; nothing runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sim.errors import ScenarioError

BUILTIN_SCENARIOS = Path(__file__).parent / "scenarios"
BUILTIN_MAPS = Path(__file__).parent / "maps"

Point = tuple[float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RandomRoute(_Strict):
    min_length_m: float = Field(gt=10.0, le=20_000.0)


class RouteSpec(_Strict):
    """Either ``waypoints`` (drive through them in order) or ``random`` (drawn from the seed)."""

    waypoints: list[Point] | None = Field(default=None, min_length=2)
    random: RandomRoute | None = None

    @model_validator(mode="after")
    def _one_of(self) -> RouteSpec:
        if (self.waypoints is None) == (self.random is None):
            raise ValueError("give exactly one of 'waypoints' or 'random'")
        return self


class EgoSpec(_Strict):
    speed_mps: float = Field(default=0.0, ge=0.0, le=40.0)  # initial speed along the route


class TrafficSpec(_Strict):
    vehicles: int = Field(default=0, ge=0, le=500)
    pedestrians: int = Field(default=0, ge=0, le=500)
    speed_factor: tuple[float, float] = (0.7, 1.0)  # desired speed / limit, drawn per vehicle
    min_distance_from_ego_m: float = Field(default=30.0, ge=0.0)


class LeadVehicleBrakes(_Strict):
    """A vehicle ahead of the ego on its route that brakes hard, stands, then drives on."""

    type: Literal["lead_vehicle_brakes"]
    gap_m: float = Field(default=30.0, gt=5.0)  # initial bumper gap ahead of the ego
    speed_mps: float = Field(default=10.0, gt=0.0)  # cruise speed
    brake_at_route_m: float = Field(gt=0.0)  # ego route progress that triggers the braking
    decel_mps2: float = Field(default=6.0, gt=0.0, le=10.0)
    stop_s: float = Field(default=3.0, ge=0.0)  # how long it stands still


class PedestrianCrossing(_Strict):
    """A pedestrian that steps off the kerb and crosses the route when the ego approaches."""

    type: Literal["pedestrian_crossing"]
    at_route_m: float = Field(gt=0.0)  # where on the route it crosses
    trigger_distance_m: float = Field(default=40.0, gt=0.0)  # ego this far before: it starts
    speed_mps: float = Field(default=1.4, gt=0.0, le=5.0)
    from_side: Literal["right", "left"] = "right"


class ParkedVehicle(_Strict):
    """A vehicle standing in the ego's lane at a route distance."""

    type: Literal["parked_vehicle"]
    at_route_m: float = Field(gt=0.0)
    lateral_offset_m: float = 0.0  # left of the lane centre
    clear_within_s: float = Field(default=60.0, gt=0.0)  # else a scenario timeout


ScriptedEvent = Annotated[
    LeadVehicleBrakes | PedestrianCrossing | ParkedVehicle, Field(discriminator="type")
]


class WeatherSpec(_Strict):
    """Lighting for the camera (CARLA's ``WeatherParameters`` names where they exist)."""

    sun_altitude_angle: float = Field(default=45.0, ge=-90.0, le=90.0)  # deg; < 0 is night
    sun_azimuth_angle: float = Field(default=0.0, ge=0.0, le=360.0)
    cloudiness: float = Field(default=10.0, ge=0.0, le=100.0)  # percent
    fog_density: float = Field(default=0.0, ge=0.0, le=100.0)  # percent
    wetness: float = Field(default=0.0, ge=0.0, le=100.0)


class Scenario(_Strict):
    """A driving scenario. See docs/scenarios.md for every field."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    map: str = Field(min_length=1)
    route: RouteSpec
    ego: EgoSpec = EgoSpec()
    traffic: TrafficSpec = TrafficSpec()
    events: list[ScriptedEvent] = []
    weather: WeatherSpec = WeatherSpec()
    timeout_s: float | None = Field(default=None, gt=0.0, le=7200.0)
    dt: float = Field(default=0.05, gt=0.0, le=0.2)
    path: Path | None = Field(default=None, exclude=True)  # the file it was read from

    def map_path(self) -> Path:
        """The OpenDRIVE file: a built-in name, or a path relative to the scenario file."""
        if self.map.endswith(".xodr"):
            p = Path(self.map)
            if not p.is_absolute() and self.path is not None:
                p = self.path.parent / p
            if not p.exists():
                raise ScenarioError(f"{self._where()}: field 'map': file {p} does not exist")
            return p
        p = BUILTIN_MAPS / f"{self.map}.xodr"
        if not p.exists():
            raise ScenarioError(
                f"{self._where()}: field 'map': unknown map '{self.map}'; built-in maps are "
                f"{', '.join(builtin_maps())}, or give a path ending in .xodr"
            )
        return p

    def _where(self) -> str:
        return str(self.path) if self.path is not None else self.name


def builtin_maps() -> list[str]:
    return sorted(p.stem for p in BUILTIN_MAPS.glob("*.xodr"))


def builtin_scenarios() -> list[str]:
    return sorted(p.stem for p in BUILTIN_SCENARIOS.glob("*.yaml"))


def resolve_scenario_path(name_or_path: str) -> Path:
    """A built-in scenario name, or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ScenarioError(f"scenario file {p} does not exist")
        return p
    builtin = BUILTIN_SCENARIOS / f"{name_or_path}.yaml"
    if builtin.exists():
        return builtin
    raise ScenarioError(
        f"unknown scenario '{name_or_path}'; built-in scenarios are "
        f"{', '.join(builtin_scenarios())}, or give a path to a .yaml file"
    )


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario; every problem becomes one :class:`ScenarioError` line."""
    path = resolve_scenario_path(str(name_or_path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(
            f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping of fields, got {type(raw).__name__}")
    try:
        scenario = Scenario.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise ScenarioError(f"{path}: {_first_error(exc)}") from exc
    scenario.map_path()  # an unknown map is a bad file too
    return scenario


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    tags = {"lead_vehicle_brakes", "pedestrian_crossing", "parked_vehicle"}
    loc = ".".join(str(p) for p in err["loc"] if p not in tags)  # drop the union's tag level
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see docs/scenarios.md)"
    elif err["type"] == "union_tag_invalid":
        msg = (
            "unknown event type; allowed: lead_vehicle_brakes, pedestrian_crossing, parked_vehicle"
        )
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"field '{loc or '<root>'}': {msg}{shown}{more}"
