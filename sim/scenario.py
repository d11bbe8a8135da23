"""Scenario files: YAML validated by a typed schema (pydantic).

One file runs on the embedded world and on CARLA. Positions are OpenDRIVE map coordinates
(x east, y north, m). A bad file raises :class:`ScenarioError` with one line that names the file,
the field and what is allowed; nothing runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sim.errors import ScenarioError
from sim.render.pinhole import lowest_ray_elevation_deg

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


MIN_GROUND_ELEVATION_DEG = -0.5  # a camera must see the ground at least this far below the horizon


class CameraSpec(_Strict):
    """A pinhole camera on the ego (docs/camera.md has the frames).

    Pose in the ego frame (origin at the rear axle on the ground, x forward, y left, z up);
    angles by the right-hand rule, so positive ``pitch_deg`` looks down and positive
    ``yaw_deg`` looks left.
    """

    type: Literal["camera"] = "camera"
    name: str = Field(default="front", min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    width: int = Field(default=640, gt=0, le=4096)  # px
    height: int = Field(default=480, gt=0, le=4096)  # px
    fov_deg: float = Field(default=90.0, gt=1.0, lt=170.0)  # horizontal field of view
    x: float = Field(default=1.5, ge=-10.0, le=10.0)  # m ahead of the rear axle
    y: float = Field(default=0.0, ge=-5.0, le=5.0)  # m to the left
    z: float = Field(default=1.5, gt=0.0, le=10.0)  # m above the ground
    roll_deg: float = Field(default=0.0, ge=-180.0, le=180.0)
    pitch_deg: float = Field(default=5.0, ge=-90.0, le=90.0)  # positive looks down
    yaw_deg: float = Field(default=0.0, ge=-180.0, le=180.0)  # positive looks left
    noise_std: float = Field(default=0.0, ge=0.0, le=64.0)  # Gaussian pixel noise, 8-bit levels
    blur_px: float = Field(default=0.0, ge=0.0, le=20.0)  # Gaussian blur sigma, px
    # seconds between captures, as CARLA's camera attribute of that name; 0: every tick. On the
    # ticks between, Observation.sensors holds the last capture again (its own t and frame say
    # when it was taken): a stage that runs at the camera's rate reads each frame once, and the
    # world renders no frame nobody reads (docs/camera.md, "Capture rate")
    sensor_tick: float = Field(default=0.0, ge=0.0, le=10.0)

    def captures(self, t: float, last_t: float | None) -> bool:
        """Whether the camera takes a frame at time ``t`` (s), its last taken at ``last_t``
        (None: none yet). CARLA's rule for ``sensor_tick``: once that much time has passed."""
        return last_t is None or t - last_t >= self.sensor_tick - 1e-9

    @field_validator("pitch_deg")
    @classmethod
    def _sees_the_ground(cls, pitch: float, info: ValidationInfo) -> float:
        d = info.data
        if not all(k in d for k in ("width", "height", "fov_deg", "roll_deg")):
            return pitch  # another field is already wrong; that error is reported
        low = lowest_ray_elevation_deg(d["width"], d["height"], d["fov_deg"], d["roll_deg"], pitch)
        if low > MIN_GROUND_ELEVATION_DEG:
            need = _min_pitch(d["width"], d["height"], d["fov_deg"], d["roll_deg"])
            raise ValueError(
                f"camera '{d.get('name', '?')}' looks at nothing: its lowest ray points "
                f"{low:+.1f}° from the horizon, so it sees no ground; with this field of view "
                f"the pitch must be above {need:.1f}° (positive looks down)"
            )
        return pitch


def _min_pitch(width: int, height: int, fov_deg: float, roll_deg: float) -> float:
    """The smallest pitch (deg) at which the camera's lowest ray reaches the ground (bisection)."""
    lo, hi = -90.0, 90.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if (
            lowest_ray_elevation_deg(width, height, fov_deg, roll_deg, mid)
            > MIN_GROUND_ELEVATION_DEG
        ):
            lo = mid
        else:
            hi = mid
    return hi


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
    sensors: list[CameraSpec] = []  # cameras rendered into Observation.sensors (each at its
    # sensor_tick; every tick by default)
    timeout_s: float | None = Field(default=None, gt=0.0, le=7200.0)
    dt: float = Field(default=0.05, gt=0.0, le=0.2)
    path: Path | None = Field(default=None, exclude=True)  # the file it was read from

    @field_validator("sensors")
    @classmethod
    def _unique_sensor_names(cls, sensors: list[CameraSpec]) -> list[CameraSpec]:
        names = [c.name for c in sensors]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(
                    f"sensor names must be unique; '{n}' is used {names.count(n)} times"
                )
        return sensors

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
