"""The learned perceiver: camera frame in, ``PerceptionOutput`` out, with tracking.

Each detection step (``detect_period_s``, 10 Hz by default):

1. the frame is resized to the detector's input and run through it (CNN or Transformer);
2. sign and light boxes are cut out of the frame and read by the STN classifier: a sign's type
   and value, a light's state (a sign or light box mostly inside a head's box is a part of the
   head and dropped, and a light box on a sign's box whose crops show no head is the sign's
   twin and dropped; a sign box whose crop the classifier finds a head in is not read);
3. each box gets an ego-frame position: vehicles and pedestrians from the ground plane under the
   box's bottom edge (or the depth image, where the frame has one, when the box is cut by the
   image's bottom or the depth puts the object much nearer: a box of its upper part), signs and
   lights from the depth image or their known size (perception/geometry.py); a box that is a
   part of a nearer object's box is that object, not another one farther away;
4. positions go to the map frame (with the ego's odometry) and are matched to tracks (Hungarian
   assignment on distance, gated): tracks give stable ids, speeds and headings from motion, and
   a memory: a speed-limit sign keeps its value after it leaves the image, and the limit it
   sets becomes active when the ego passes it and stays active until another sign replaces it.

Between detection steps, and every tick, the output is rebuilt from the tracks in the current
ego frame. The light that governs the ego's lane is a light head facing the ego near the next
junction entry on the route; its stop line is that entry or, while the light is not green, the
point where the camera still sees the head (a head beside the line leaves the image before the
ego reaches the line, and a light that cannot be seen cannot be seen turning green). A light
whose "green" is not certain is reported ``UNKNOWN``, which the planner treats as red: red must
never become green.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from perception import kalman
from perception.export import WeightsError, load_model, model_config
from perception.geometry import (
    box_depth,
    depth_from_size,
    ground_point,
    max_travel_in_view,
    point_at_depth,
)
from perception.models.centernet import Detections, decode, nms
from perception.models.inference import for_inference
from perception.models.stn_classifier import StnClassifierConfig, crop_boxes
from sim.errors import DrivestackError
from sim.messages import (
    ActorKind,
    CameraFrame,
    DetectedLight,
    DetectedObject,
    DetectedSign,
    DetectionClass,
    LightState,
    Observation,
    PerceptionOutput,
    RouteAhead,
    SignType,
    VehicleParams,
    VehicleState,
)
from sim.render.pinhole import camera_pose, intrinsics
from sim.scenario import CameraSpec

log = logging.getLogger(__name__)

KMH = 1.0 / 3.6
SIGN_FACE_WIDTH_M = 0.6  # OpenDRIVE's default sign size, as the camera draws it
LIGHT_HEAD_HEIGHT_M = 1.0
LIGHT_HEAD_WIDTH_M = 0.35
RESTRICTIVENESS = {  # which state wins when two heads of one approach disagree
    LightState.RED: 4,
    LightState.UNKNOWN: 3,
    LightState.YELLOW: 2,
    LightState.GREEN: 1,
    LightState.OFF: 0,
}


WEIGHTS_DIR = Path(__file__).parent / "weights"
DETECTORS = ("cnn", "transformer")


def default_perceiver(
    kind: str, device: str | None = None, detector: str = "", classifier: str = ""
) -> LearnedPerceiver:
    """The learned perceiver: a ``cnn`` or ``transformer`` detector and the STN classifier,
    the shipped files (perception/weights/) or those named (a ``kind`` detector, refused
    otherwise); on CUDA when there is one. Its camera is sized for the detector."""
    if kind not in DETECTORS:
        raise DrivestackError(f"unknown learned perception {kind!r}; allowed: {DETECTORS}")
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return LearnedPerceiver.from_files(
        detector or str(WEIGHTS_DIR / f"{kind}.safetensors"),
        classifier or str(WEIGHTS_DIR / "stn.safetensors"),
        device=dev,
        kinds=(kind,),
    )


# Every size in px among the perceiver's and the evaluation's settings is a px of a 320×240
# frame of the default camera, whatever the size of the frame or of the detector's input: a
# sign 6 px across is the same sign, as far away, in a 640×480 frame, where it is 12 px.
REFERENCE_WH = (320, 240)


def default_camera(name: str = "front", scale: int = 1, sensor_tick: float = 0.0) -> CameraSpec:
    """The forward camera learned perception's weights were trained for: 320×240 (times
    ``scale``: ``PerceiverSettings.camera_scale``), 90° horizontal field of view, 1.5 m up and
    1.5 m ahead of the rear axle, 5° down; a frame every ``sensor_tick`` s (0: every tick)."""
    w, h = REFERENCE_WH
    return CameraSpec(
        name=name, width=w * scale, height=h * scale, fov_deg=90.0, sensor_tick=sensor_tick
    )


@dataclass(frozen=True)
class PerceiverSettings:
    camera: str = "front"  # name of the camera sensor to read
    camera_scale: int | None = None  # its camera renders 320×240 times this; None: the
    # detector's input size (320×240 for the shipped detectors). A larger frame is averaged
    # down to the detector's input: the shipped detectors, trained on 320×240 renders, box less
    # well in averaged 640×480 frames (the test split's mAP 0.512 -> 0.448: docs/perception.md,
    # "Signs read at twice the detector's resolution"). Sizes in px below are px of a 320×240
    # frame (``REFERENCE_WH``), whatever the frame's or the detector's size.
    read_scale: int = 2  # the classifier cuts its crops from a camera rendering 320×240 times
    # this: the detector's own camera where that has this scale; otherwise a second camera at
    # the same pose, named camera + "_read" (``LearnedPerceiver.read_camera``). At 2 (640×480)
    # a sign 6 px across has 12 px, and the shipped classifier, trained on such crops, reads
    # 99.5-100 % of the signs it was measured on, 76-96 % at 1 (docs/perception.md, "A second
    # camera for the classifier"). The world renders both cameras.
    detect_period_s: float = 0.1  # run the networks this often; tracks fill the ticks between.
    # The perceiver's cameras take a frame this often too (their ``sensor_tick``): rendering
    # the ticks between, which nothing read, cost half the world's time in a closed loop
    score_threshold: float = 0.35  # detector score to accept a box
    top_k: int = 64
    nms_iou: float = 0.6  # a box overlapping a better one of its class by more is dropped ...
    nms_contain: float = 0.9  # ... as is one this much inside it or around it (the detector
    # boxes a near car seen obliquely again with a box around it, reaching below it: a nearer
    # ghost beside the car, on the ego's path; centernet.nms)
    sign_contain: float = 0.5  # a sign box this much inside another (share of its area) is
    # the same sign boxed in part: one box per sign (``one_box_per_sign``). The detector boxed
    # a near "50" whole and its left part 74 % inside it, which started a second track at the
    # same place, read "10"; reached in the same update as the "50", it set the limit for 55 s
    # (town_small_tour seed 1, traced 2026-12-07). The maps' signs stand 8 m apart or more.
    vote_iou: float | None = 0.5  # a box is the mean of those its peak's neighbours draw that
    # overlap it this much (centernet.vote_boxes; None: the peak's box alone)
    vehicle_size_m: tuple[float, float] = (4.6, 1.9)  # assumed length, width
    pedestrian_size_m: tuple[float, float] = (0.6, 0.6)
    # a box's bottom edge is the object's nearest point; its centre is about this far behind
    centre_behind_m: dict[str, float] = field(
        default_factory=lambda: {"vehicle": 1.8, "pedestrian": 0.2}
    )
    gate_m: float = 2.5  # association gate at close range (m) ...
    gate_per_m: float = 0.1  # ... growing with distance, as monocular range error does
    confirm_hits: int = 2  # detections before an object track is reported
    # A vehicle or pedestrian box lying mostly inside the box of a nearer one of its class, its
    # bottom edge well above that box's, is a part of that object (the Transformer boxes a
    # near car it does not box whole as its cabin or side): the ground plane would place the
    # part's hidden "bottom" far behind the object. It is dropped, and it keeps the object it
    # belongs to reported while the object itself is not boxed (dense_traffic seed 2: a near
    # standing car, lost, and its cabin at twice its range read as a car driving off).
    part_overlap: float = 0.7  # share of the part's area inside the object's box ...
    part_rise: float = 0.25  # ... its bottom edge this share of the object's height above
    part_hold_s: float = 3.0  # parts keep an object reported this long after it was boxed
    depth_nearer: float = 0.8  # where the frame has depth, an object it puts nearer than this
    # share of the ground plane's range is placed by the depth (a box of its upper part)
    report_age_s: float = 0.5  # objects not seen for longer are not reported
    drop_age_s: float = 2.0  # object tracks not seen for longer are deleted
    sign_memory_m: float = 30.0  # sign tracks are kept until this far behind the ego
    # Each vehicle's and pedestrian's map position and velocity: a Kalman filter whose
    # measurements are good across the camera's line of sight and poor along it
    # (perception/kalman.py: equal trust in both, as the alpha-beta filter before it, reads
    # the range's jitter as motion along the ray)
    accel_sigma_mps2: dict[str, float] = field(
        default_factory=lambda: {"vehicle": 3.0, "pedestrian": 1.5}
    )
    range_sigma: float = 0.12  # a measured range's standard deviation, a share of the range
    # (the shipped CNN's median position error, `perception eval`'s position_error_m: 5-10 %
    # of the range for vehicles on the unseen map, 13 % for the crossing set's pedestrians)
    bearing_sigma_px: float = 2.0  # a box centre's column (across the ray)
    place_sigma_m: float = 0.5  # neither under this: where on the object its box's point lands
    standstill_mps: float = 0.7  # slower tracks are reported as standing still
    max_speed_mps: dict[str, float] = field(
        default_factory=lambda: {"vehicle": 30.0, "pedestrian": 4.0}
    )
    light_to_line_max_m: float = 35.0  # a head farther from the junction entry is another's
    light_across_max_m: float = 8.0  # ... and one farther to the side of the lane at the entry
    edge_px: float = 1.0  # a sign or head whose box comes this near the image's edge is not read
    light_memory_s: float = 3.0  # a light unseen this long is forgotten (no deadlock at a
    # red whose head the detector lost; the cost: a light lost while red for 3 s is run)
    green_min_prob: float = 0.9  # a green read with less confidence is reported UNKNOWN ...
    # ... unless the head was read sure (red, yellow, a confident green) this recently: its
    # state then holds through the doubtful reading. A green head read once "green 0.80" as
    # the ego drove up to it at 4 m/s stopped the ego where the head was out of view; it
    # forgot the head and drove on through the red it could no longer see (red_lights seed 1).
    # A red read this soon after a sure green, from a box much smaller than the green's, is
    # doubtful too: a head turns red only after 3 s of yellow, so that red is a part of the
    # head misread (red_lights seed 0). A red read from as big a box is believed: a 3-px head
    # read green once would otherwise hold its red as green for a second (red_lights seed 2,
    # run through). No reading turns a sure red into green.
    light_hold_s: float = 1.0
    light_part_height: float = 0.75  # a red box lower than this share of the green's is a part
    # A light box mostly inside a bigger one is a part of the same head (the detector boxes a
    # head twice, whole and in part); the part is read with less confidence, so it is dropped,
    # and so is a sign box mostly inside a light box: the head's top boxed as a sign. A light
    # box on a sign box, neither crop showing a head, is the sign boxed again (sign_twins).
    light_part_overlap: float = 0.6  # share of the smaller box's area inside the bigger one
    # (for a sign's twin, of the larger box's area)
    head_part_min_score: float = 0.35  # ... and a sign's part of a head scoring this or more,
    # a light box the twin of a sign scoring so (the operating threshold; kept apart from it
    # for the evaluation's list ranked to 0.01)
    # Stop where the camera still sees the light: a head beside the stop line leaves a 90°
    # image before the ego reaches the line, and a light that cannot be seen turning green
    # cannot be waited for. A non-green light's stop line is moved back to where the head's
    # box stays this far inside the image.
    light_in_view_margin_px: float = 30.0
    in_view_decel_mps2: float = 3.0  # never moved closer than the ego can stop at this rate
    ego: VehicleParams = field(default_factory=VehicleParams)  # where the front bumper is
    min_sign_px: float = 6.0  # signs smaller than this (px) are tracked, not read ...
    min_stop_yield_px: float = 4.0  # ... but a stop or yield read from this size counts: a
    # sign 6 px wide is 20 m away, inside the stopping distance at 50 km/h, and a yield read
    # only from there was reached at 9 m/s and a crossing car hit (town_small_tour seed 3).
    # Stop or yield read wrong at 4 px costs little: the planner checks the junction at both.
    limit_active_ahead_m: float = 3.0  # a limit sign counts from this far before the ego
    # ... if it was read: its leading value holds this much of the sign's readings (each
    # weighs the box's area in px² times the classifier's confidence: the pixels it rests on)
    # and this share of them. Two unsure readings of a 7-px sign ("10" for a 50, town_loop
    # seed 4) set no limit; the last limit then stays, as a driver keeps the last limit on
    # passing a sign he could not read. Weighed by the box's side, six other values read
    # from 6-10 px outvoted a "50" read from 10-28 px (dense_traffic seed 1).
    read_spacing_m: float = 0.25  # a sign's readings count once per this much travel of the
    # ego: one standing at a light reads the same view again and again, one observation (a
    # 4-px "stop" read seven times from a standing ego kept a "50" under its 60 %, red_lights
    # seed 0 with the Transformer, traced 2026-12-04); at 2.5 m/s and up every reading counts
    limit_min_votes: float = 200.0  # two sure readings of a 10-px sign
    limit_min_share: float = 0.6
    limit_min_reads: int = 2  # ... and it was read at least this often: by area one reading of
    # a 15-px sign weighs enough, and one "40" of a sign seen twice set a 40 in a 30 zone
    # (dense_traffic seed 1)
    # The classifier reads a sign's crop among the signs' labels only; free to choose among
    # every label, it finds a light head in a sign box's crop where the detector boxed a head
    # (or its top) as a sign: the Transformer's "stop" beside a green head (dense_traffic seed
    # 5). Such a box is not read. On the unseen map's large gallery (2000 frames) the CNN's
    # sign boxes: 2 of 1455 on true signs and 37 of 93 on none found so. A light box must be
    # found so to make a sign box inside it a part of a head (``head_parts``): the detector
    # also boxes a true sign as a light.
    sign_head_share: float = 0.5  # share of the crop's probability on the light states
    light_min_z_m: float = 1.5  # a "head" placed with its centre lower than this is none:
    # heads hang from 2 m (the embedded world's lower edge) to 6 m (CARLA's towns). A box
    # 62 px tall by the road, read "red", placed a head 6 m ahead at 0.5 m and held the ego
    # at a phantom red line (dense_traffic seed 1, traced 2026-12-03)
    sign_min_z_m: float = 1.2  # and a sign's: faces hang 2 m up and more (their centres placed
    # at 2.0-5.4 m on 585 boxes of true signs: scripts/sign_heights.py); a leader's rear boxed
    # as a sign 20 m ahead, placed 0.7 m up and read "stop", stopped the ego at a lit junction
    # whose head it then lost, and it drove into the red (red_lights seed 2, traced 2026-12-07)

    def __post_init__(self) -> None:
        for name in ("camera_scale", "read_scale"):
            v = getattr(self, name)
            if v is None and name == "camera_scale":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 8:
                none = " (or None: the detector's input size)" if name == "camera_scale" else ""
                raise DrivestackError(
                    f"PerceiverSettings.{name} must be an integer from 1 to 8{none}, got {v!r}"
                )
        p = self.detect_period_s
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 10.0:
            raise DrivestackError(
                f"PerceiverSettings.detect_period_s must be a number of seconds from 0 to 10 "
                f"(0: every tick), got {p!r}"
            )

    def camera_scale_for(self, input_hw: tuple[int, int]) -> int:
        """The detector's camera's scale for a detector of input ``input_hw`` (H, W):
        ``camera_scale``, or where that is None the input's size over 320×240."""
        if self.camera_scale is not None:
            return self.camera_scale
        (h, w), (rw, rh) = input_hw, REFERENCE_WH
        if w % rw or h * rw != w * rh or not 1 <= w // rw <= 8:
            raise DrivestackError(
                f"a detector of input {w}×{h} has no default camera; allowed: 320×240 times 1 to "
                "8, or set PerceiverSettings.camera_scale"
            )
        return w // rw

    def read_camera_for(self, input_hw: tuple[int, int]) -> str:
        """The camera the classifier reads: the detector's where that renders at read_scale,
        else a second one."""
        same = self.read_scale == self.camera_scale_for(input_hw)
        return self.camera if same else f"{self.camera}_read"


@dataclass
class Track:
    """A tracked thing in the map frame (internal state of the perceiver)."""

    id: int
    group: str  # vehicle | pedestrian | sign | light
    x: float
    y: float
    t_first: float
    t_last: float
    hits: int = 1
    vx: float = 0.0
    vy: float = 0.0
    score: float = 0.0
    box: tuple[float, float, float, float] | None = None
    votes: dict[str, float] = field(default_factory=dict)  # sign label -> weight
    reads: dict[str, int] = field(default_factory=dict)  # sign label -> how often read
    read_at: tuple[float, float] | None = None  # the ego's map position at the last reading
    state: LightState = LightState.UNKNOWN  # last light state read
    t_sure: float = -math.inf  # when a light's state was last read sure (not UNKNOWN)
    h_sure: float = 0.0  # ... and the height of the box it was read from (px)
    t_read: float = -math.inf  # ... and last read at all (a box cut by the image's edge is not)
    t_seen: float = -math.inf  # when last seen whole or in part (an object's part keeps it)
    cov: np.ndarray | None = None  # covariance of (x, y, vx, vy), vehicles and pedestrians
    z: float | None = None  # height of a sign's or light's centre (m)

    def label(self) -> str | None:
        return max(self.votes, key=lambda k: self.votes[k]) if self.votes else None


@dataclass(frozen=True)
class FrameDetection:
    """One box of one frame, read and placed (ego frame at the frame's time)."""

    group: str
    cls: DetectionClass
    box: tuple[float, float, float, float]  # frame px, COCO edges
    score: float
    x: float
    y: float
    label: str | None = None  # classifier label for signs and lights
    label_prob: float = 1.0
    z: float | None = None  # height of a sign's or light's centre (m), where it was measured
    px: float = 1.0  # frame px per px of a 320×240 frame (the camera's scale)


GROUP = {
    DetectionClass.VEHICLE: "vehicle",
    DetectionClass.PEDESTRIAN: "pedestrian",
    DetectionClass.TRAFFIC_LIGHT: "light",
    DetectionClass.SPEED_LIMIT_SIGN: "sign",
    DetectionClass.STOP_SIGN: "sign",
    DetectionClass.YIELD_SIGN: "sign",
}


class LearnedPerceiver:
    """``update(observation) -> PerceptionOutput`` from a camera, a detector and a classifier."""

    def __init__(
        self,
        detector: nn.Module,
        classifier: nn.Module,
        settings: PerceiverSettings = PerceiverSettings(),
        device: str = "cpu",
    ) -> None:
        self.cfg = settings
        self.device = torch.device(device)
        self.detector = for_inference(detector, self.device)  # copies: the modules passed in
        self.classifier = for_inference(classifier, self.device)  # stay as they were
        ccfg = model_config(classifier)
        if not isinstance(ccfg, StnClassifierConfig):
            raise WeightsError(
                f"the classifier must be an stn model, got {type(classifier).__name__}"
            )
        self.ccfg: StnClassifierConfig = ccfg
        dcfg = model_config(detector)
        self.input_hw: tuple[int, int] = (int(dcfg.input_hw[0]), int(dcfg.input_hw[1]))
        self.stride = int(dcfg.stride)
        self._masks = {g: ccfg.group_mask(g).to(self.device) for g in ("sign", "light")}
        # The world renders these for the perceiver: the detector's camera, and the
        # classifier's where that is another, each taking a frame at every detection step
        # only (``sensor_tick``): the ticks between read none
        tick = settings.detect_period_s
        scale = settings.camera_scale_for(self.input_hw)
        self.camera_spec = default_camera(settings.camera, scale, tick)
        self.camera_specs: tuple[CameraSpec, ...] = (self.camera_spec,)
        self.read_camera = settings.read_camera_for(self.input_hw)
        if self.read_camera != settings.camera:
            self.camera_specs += (default_camera(self.read_camera, settings.read_scale, tick),)
        cam = self.camera_spec
        self._cam_K = intrinsics(cam.width, cam.height, cam.fov_deg)
        self._cam_pose = camera_pose(cam.x, cam.y, cam.z, cam.roll_deg, cam.pitch_deg, cam.yaw_deg)
        # a box column's error across the ray, in radians: the focal length in 320×240 px
        self._bearing_sigma = settings.bearing_sigma_px / (
            self._cam_K[0, 0] * REFERENCE_WH[0] / cam.width
        )
        self.reset()

    @classmethod
    def from_files(
        cls,
        detector: str,
        classifier: str,
        settings: PerceiverSettings = PerceiverSettings(),
        device: str = "cpu",
        kinds: tuple[str, ...] = DETECTORS,
    ) -> LearnedPerceiver:
        """From saved files: a detector of one of ``kinds`` and an stn classifier."""
        det = load_model(detector, expect=kinds, device=device)
        clf = load_model(classifier, expect="stn", device=device)
        return cls(det, clf, settings, device)

    def with_settings(self, settings: PerceiverSettings) -> LearnedPerceiver:
        """A perceiver with the same networks on the same device and other settings (a replay's
        ``--set perception.FIELD=V``)."""
        return LearnedPerceiver(self.detector, self.classifier, settings, str(self.device))

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_detect_t = -math.inf
        self._limit_mps: float | None = None
        self._limit_signs: set[int] = set()  # the sign tracks reached and read: used up
        # the governing light: stop line (map x, y), track id, state, when last seen (s)
        self._light_line: tuple[float, float, int, LightState, float] | None = None
        # the route distances (from the route's start) of the stop line being waited for and of
        # the nearest point before it found in view so far
        self._in_view: tuple[float, float] | None = None
        self.last_latency_s = 0.0

    # --------------------------------------------------------------------------- the stage
    def update(self, obs: Observation) -> PerceptionOutput:
        frame = obs.sensors.get(self.cfg.camera)
        if frame is None:
            raise DrivestackError(
                f"learned perception needs camera '{self.cfg.camera}'; the observation has "
                f"{sorted(obs.sensors) or 'no sensors'}"
            )
        read = None
        if self.read_camera != self.cfg.camera:
            read = obs.sensors.get(self.read_camera)
            if read is None:
                raise DrivestackError(
                    f"learned perception reads signs from camera '{self.read_camera}' "
                    f"(read_scale {self.cfg.read_scale}); the observation has {sorted(obs.sensors)}"
                )
        return self.perceive(frame, obs.ego, obs.route, read)

    def perceive(
        self,
        frame: CameraFrame,
        ego: VehicleState,
        route: RouteAhead | None = None,
        read: CameraFrame | None = None,
    ) -> PerceptionOutput:
        """The stage's work for one tick: detect (at ``detect_period_s``, on a frame taken this
        tick: a camera with a ``sensor_tick`` hands its last frame on between), track, report.
        ``read``: the classifier's camera's frame, if it has its own (used when it was taken
        with ``frame``)."""
        dets: list[FrameDetection] | None = None
        latency = 0.0
        due = ego.t - self._last_detect_t >= self.cfg.detect_period_s - 1e-9
        if frame.valid and due and _taken_at(frame, ego.t):
            t0 = time.perf_counter()
            paired = read is not None and read.valid and _taken_at(read, frame.t)
            dets = self.detect(frame, read.rgb if paired and read is not None else None)
            latency = time.perf_counter() - t0
            self.last_latency_s = latency
        return self.track(dets, ego, route, latency)

    def track(
        self,
        dets: list[FrameDetection] | None,
        ego: VehicleState,
        route: RouteAhead | None = None,
        latency_s: float = 0.0,
    ) -> PerceptionOutput:
        """Fold one frame's detections (None: no detection step this tick) into the tracks and
        report what they say in the ego frame of ``ego``."""
        if dets is not None:
            low = {"light": self.cfg.light_min_z_m, "sign": self.cfg.sign_min_z_m}
            dets = [d for d in dets if d.z is None or d.z >= low.get(d.group, -math.inf)]
            self._associate(dets, ego)
            self._last_detect_t = ego.t
        self._prune(ego)
        self._update_limit(ego)
        return self._output(ego, route, latency_s)

    # ---------------------------------------------------------------------- per frame
    def detect(
        self, frame: CameraFrame, read_rgb: np.ndarray | None = None
    ) -> list[FrameDetection]:
        """Boxes of one frame with classes, scores, classifier labels and ego-frame positions.
        ``read_rgb``: the same view from the classifier's camera (any size), where it has one
        of its own; its crops are cut from it."""
        return self.detect_cuts(frame, read_rgb, [(self.cfg.top_k, self.cfg.score_threshold)])[0]

    @torch.inference_mode()
    def detect_cuts(
        self,
        frame: CameraFrame,
        read_rgb: np.ndarray | None,
        cuts: list[tuple[int, float]],
    ) -> list[list[FrameDetection]]:
        """:meth:`detect`'s boxes at each ``(top_k, score_threshold)`` cut of the detector's
        heatmaps, from one run of the network: the evaluation's operating cut and the ranked
        list COCO scores (each the same as :meth:`detect` with those two settings)."""
        h0, w0 = frame.rgb.shape[:2]
        img = _image(frame.rgb, self.device)  # (1, 3, H0, W0)
        h, w = self.input_hw
        x = img if (h0, w0) == (h, w) else F.interpolate(img, size=(h, w), mode="area")
        pred = self.detector(x)

        @functools.cache
        def source() -> Tensor:
            # crops from the classifier's own camera where it has one, else the whole frame (a
            # larger camera gives the classifier more pixels); converted once, and only for a
            # frame with a sign or a head to read
            return img if read_rgb is None else _image(read_rgb, self.device)

        return [self._detections(frame, source, pred, k, t) for k, t in cuts]

    def _detections(
        self,
        frame: CameraFrame,
        source: Callable[[], Tensor],
        pred: dict[str, Tensor],
        top_k: int,
        score_threshold: float,
    ) -> list[FrameDetection]:
        """One cut of :meth:`detect_cuts`: decode the detector's outputs ``pred``, read signs
        and heads (their crops cut from ``source()``, the frame or the classifier's camera), place
        the boxes."""
        h0, w0 = frame.rgb.shape[:2]
        h, w = self.input_hw
        det: Detections = decode(
            pred,
            self.stride,
            top_k,
            score_threshold,
            self.cfg.nms_iou,
            self.cfg.nms_contain,
            self.cfg.vote_iou,
        )[0]
        sx, sy = w0 / w, h0 / h
        px = w0 / REFERENCE_WH[0]  # frame px per px of the settings' sizes
        boxes = det.boxes * torch.tensor([sx, sy, sx, sy], device=self.device)
        classes = [DetectionClass(int(c) + 1) for c in det.labels]
        labels: list[tuple[str | None, float]] = [(None, 1.0)] * len(classes)
        read = [i for i, c in enumerate(classes) if GROUP[c] in ("sign", "light")]
        heads = [False] * len(classes)  # whose crop the classifier finds a light head in
        if read:
            src = source()
            rx, ry = src.shape[3] / w0, src.shape[2] / h0
            crops = crop_boxes(
                src,
                boxes[read] * torch.tensor([rx, ry, rx, ry], device=self.device),
                torch.zeros(len(read), dtype=torch.long, device=self.device),
                self.ccfg.crop,
                self.ccfg.margin,
            )
            logits = self.classifier(crops)
            for k, i in enumerate(read):
                heads[i] = head_share(logits[k], self._masks["light"]) >= self.cfg.sign_head_share
                if cut_by_edge(boxes[i].tolist(), (w0, h0), self.cfg.edge_px * px):
                    continue  # half a head reads as anything: its track keeps the last reading
                labels[i] = reading(
                    logits[k], GROUP[classes[i]], self._masks, self.ccfg.labels, self.cfg
                )
        out = []
        bx = boxes.cpu().numpy()
        groups, scores = [GROUP[c] for c in classes], det.scores.tolist()
        overlap, sure = self.cfg.light_part_overlap, self.cfg.head_part_min_score
        parts = head_parts(bx, groups, scores, heads, overlap, sure)
        parts |= sign_twins(bx, groups, scores, heads, overlap, sure)
        for i, c in enumerate(classes):
            if i in parts:
                continue
            box = (float(bx[i, 0]), float(bx[i, 1]), float(bx[i, 2]), float(bx[i, 3]))
            pos = self.locate(frame, c, box, px)
            if pos is None:
                continue
            lab, prob = labels[i]
            score = float(det.scores[i])
            out.append(
                FrameDetection(GROUP[c], c, box, score, pos[0], pos[1], lab, prob, pos[2], px)
            )
        return out

    def locate(
        self,
        frame: CameraFrame,
        cls: DetectionClass,
        box: tuple[float, float, float, float],
        px: float = 1.0,
    ) -> tuple[float, float, float | None] | None:
        """Ego-frame ``(x, y, z)`` of a box's object: the centre of a vehicle or a person on the
        ground (``z`` None), the middle of a sign's or a light's box. ``px``: the frame's px
        per px of a 320×240 frame."""
        K, pose = frame.K, frame.pose
        x0, y0, x1, y1 = box
        u = (x0 + x1) / 2 - 0.5  # COCO edges -> pixel-centre coordinates
        group = GROUP[cls]
        h = frame.rgb.shape[0]
        if group in ("vehicle", "pedestrian"):
            p: np.ndarray | None = None
            # cut by the image's bottom: no ground contact
            if frame.depth is not None and y1 >= h - px:
                d = box_depth(frame.depth, box, 0.2)
                if d is not None:
                    p = point_at_depth(K, pose, u, (y0 + y1) / 2 - 0.5, d)[:2]
            if p is None:
                p = ground_point(K, pose, u, y1 - 0.5)
                # a box of an object's upper part has no ground contact either: where the depth
                # image puts the object much nearer than the ground plane, the depth places it
                d = box_depth(frame.depth, box, 0.5) if frame.depth is not None else None
                if d is not None:
                    q = point_at_depth(K, pose, u, (y0 + y1) / 2 - 0.5, d)[:2]
                    if p is None or _range(q, pose) < self.cfg.depth_nearer * _range(p, pose):
                        p = q
            if p is None:
                return None
            r = _range(p, pose)
            back = self.cfg.centre_behind_m.get(group, 0.0)
            dx, dy = (p[0] - pose[0, 3]) / max(r, 1e-6), (p[1] - pose[1, 3]) / max(r, 1e-6)
            return float(p[0] + back * dx), float(p[1] + back * dy), None
        v = (y0 + y1) / 2 - 0.5
        d = box_depth(frame.depth, box, 0.5) if frame.depth is not None else None
        if d is None:
            if group == "sign":
                d = depth_from_size(K[0, 0], SIGN_FACE_WIDTH_M, x1 - x0)
            else:
                d = depth_from_size(K[1, 1], LIGHT_HEAD_HEIGHT_M, y1 - y0)
        q = point_at_depth(K, pose, u, v, d)
        return float(q[0]), float(q[1]), float(q[2])

    # ----------------------------------------------------------------------- tracking
    def _associate(self, dets: list[FrameDetection], ego: VehicleState) -> None:
        t = ego.t
        cam = ego.to_map(self._cam_pose[None, :2, 3])[0]  # the camera's map position
        for group in ("vehicle", "pedestrian", "sign", "light"):
            ds = [d for d in dets if d.group == group]
            if group in ("vehicle", "pedestrian"):  # a part of an object boxed whole too
                boxes = [d.box for d in ds]
                parts = object_parts(boxes, self.cfg.part_overlap, self.cfg.part_rise)
                ds = [d for i, d in enumerate(ds) if i not in parts]
            elif group == "sign":  # one sign, one track: a sign boxed as two types took two
                # tracks at one place, and its readings split between them (town_small_tour 5)
                keep = one_box_per_sign(
                    [d.box for d in ds],
                    [d.score for d in ds],
                    self.cfg.nms_iou,
                    self.cfg.sign_contain,
                )
                ds = [ds[i] for i in keep]
            tr = [k for k in self.tracks if k.group == group]
            pts = ego.to_map(np.array([[d.x, d.y] for d in ds])) if ds else np.zeros((0, 2))
            matched_d: set[int] = set()
            if ds and tr:
                pred = np.array(
                    [[k.x + k.vx * (t - k.t_last), k.y + k.vy * (t - k.t_last)] for k in tr]
                )
                cost = np.hypot(
                    pts[:, None, 0] - pred[None, :, 0], pts[:, None, 1] - pred[None, :, 1]
                )
                rng = np.hypot(*(pts - (ego.x, ego.y)).T)
                gate = self.cfg.gate_m + self.cfg.gate_per_m * rng
                big = 1e6
                c = np.where(cost <= gate[:, None], cost, big)
                if group in ("vehicle", "pedestrian"):  # parts are used up: no match, no track
                    matched_d = self._parts_of_tracks(ds, tr, c < big, t)
                    c[sorted(matched_d)] = big
                rows, cols = linear_sum_assignment(c)
                for i, j in zip(rows, cols, strict=True):
                    if c[i, j] >= big:
                        continue
                    self._update_track(tr[j], ds[i], pts[i], t, (ego.x, ego.y), cam)
                    matched_d.add(i)
            for i, d in enumerate(ds):
                if i not in matched_d:
                    k = Track(
                        self._next_id,
                        group,
                        float(pts[i, 0]),
                        float(pts[i, 1]),
                        t,
                        t,
                        score=d.score,
                        box=d.box,
                        z=d.z,
                        t_seen=t,
                    )
                    if group in ("vehicle", "pedestrian"):  # at rest, give or take half the
                        # class's top speed
                        k.cov = np.zeros((4, 4))
                        k.cov[:2, :2] = self._noise(cam, pts[i])
                        k.cov[2, 2] = k.cov[3, 3] = (self.cfg.max_speed_mps[group] / 2.0) ** 2
                    self._next_id += 1
                    self._read(k, d, (ego.x, ego.y))
                    self.tracks.append(k)

    def _parts_of_tracks(
        self, ds: list[FrameDetection], tracks: list[Track], gated: np.ndarray, t: float
    ) -> set[int]:
        """Detections that are parts of a confirmed object, as its last box shows, placed
        outside its gate (``gated[i, j]``: detection i may be object j moved): each keeps its
        object reported (``t_seen``) and is neither matched nor starts a track. The object's
        position coasts on its last estimate until it is boxed whole again."""
        cfg = self.cfg
        objs = [
            (j, k.box)
            for j, k in enumerate(tracks)
            if k.hits >= cfg.confirm_hits and t - k.t_last <= cfg.part_hold_s and k.box is not None
        ]
        owners = part_owners(
            [d.box for d in ds], [b for _, b in objs], cfg.part_overlap, cfg.part_rise
        )
        parts: set[int] = set()
        for i, o in owners.items():
            j = objs[o][0]
            if not gated[i, j]:
                tracks[j].t_seen = t
                parts.add(i)
        return parts

    def _noise(self, cam: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Covariance of a position ``p`` measured from the camera at ``cam`` (map frame)."""
        cfg = self.cfg
        return kalman.monocular_noise(
            cam, p, cfg.range_sigma, self._bearing_sigma, cfg.place_sigma_m
        )

    def _update_track(
        self,
        k: Track,
        d: FrameDetection,
        p: np.ndarray,
        t: float,
        at: tuple[float, float],
        cam: np.ndarray,
    ) -> None:
        dt = t - k.t_last
        if k.group in ("vehicle", "pedestrian"):
            assert k.cov is not None  # set when the track began
            state = np.array([k.x, k.y, k.vx, k.vy])
            state, cov = kalman.predict(state, k.cov, dt, self.cfg.accel_sigma_mps2[k.group])
            state, k.cov = kalman.update(state, cov, p, self._noise(cam, p))
            k.x, k.y, k.vx, k.vy = (float(v) for v in state)
            sp, vmax = math.hypot(k.vx, k.vy), self.cfg.max_speed_mps[k.group]
            if sp > vmax:
                k.vx, k.vy = k.vx * vmax / sp, k.vy * vmax / sp
        else:  # signs and lights stand still: average every sighting
            w = 1.0 / (k.hits + 1)
            k.x, k.y = (1 - w) * k.x + w * float(p[0]), (1 - w) * k.y + w * float(p[1])
            if d.z is not None:
                k.z = d.z if k.z is None else (1 - w) * k.z + w * d.z
        k.t_last, k.t_seen, k.hits, k.score, k.box = t, t, k.hits + 1, d.score, d.box
        self._read(k, d, at)

    def _read(self, k: Track, d: FrameDetection, at: tuple[float, float]) -> None:
        """Fold a reading into its track: a light's state, or a sign's vote, made from ``at``,
        the ego's map position."""
        if d.label is None:
            return
        if k.group == "light":
            state = LightState[d.label.removeprefix("light_").upper()]
            if state == LightState.GREEN and d.label_prob < self.cfg.green_min_prob:
                state = LightState.UNKNOWN
            elif state == LightState.OFF and k.hits > 1 and k.state != LightState.OFF:
                # a head seen lit that reads dark is misread, not switched off: a dark head
                # would stop governing, and a red misread so was driven through
                state = LightState.UNKNOWN
            elif (
                state == LightState.RED
                and k.state == LightState.GREEN
                and k.t_last - k.t_sure <= self.cfg.light_hold_s
                and d.box[3] - d.box[1] < self.cfg.light_part_height * k.h_sure
            ):
                # a head goes green, yellow (3 s), red: red just after a sure green, in a
                # smaller box, is not a change but the head's top, its red lamp, boxed alone
                # as the head leaves the image (red_lights seed 0) and read as what it is
                state = LightState.UNKNOWN
            if state != LightState.UNKNOWN:
                k.t_sure, k.h_sure = k.t_last, d.box[3] - d.box[1]
            elif k.t_last - k.t_sure <= self.cfg.light_hold_s:
                state = k.state  # one doubtful reading does not undo a sure one just made
            k.state, k.t_read = state, k.t_last
            return
        side = min(d.box[2] - d.box[0], d.box[3] - d.box[1]) / d.px  # px at 320×240
        least = self.cfg.min_stop_yield_px if d.label in ("stop", "yield") else self.cfg.min_sign_px
        moved = k.read_at is None or math.dist(k.read_at, at) >= self.cfg.read_spacing_m
        if side >= least and moved:  # bigger, nearer signs are read better: weigh by area
            k.votes[d.label] = k.votes.get(d.label, 0.0) + side * side * d.label_prob
            k.reads[d.label] = k.reads.get(d.label, 0) + 1
            k.read_at = at

    def _prune(self, ego: VehicleState) -> None:
        keep = []
        for k in self.tracks:
            if k.group in ("vehicle", "pedestrian", "light"):
                if ego.t - k.t_seen <= self.cfg.drop_age_s:  # t_seen >= t_last
                    keep.append(k)
            elif float(ego.to_ego(np.array([[k.x, k.y]]))[0, 0]) > -self.cfg.sign_memory_m:
                keep.append(k)
        self.tracks = keep

    def _update_limit(self, ego: VehicleState) -> None:
        """The active limit: that of the last speed-limit sign the ego has reached and read. A
        sign reached counts once: one reached earlier, still tracked behind the ego, does not
        take the limit back. Of signs reached in the same update, the best read sets it (two
        tracks of one sign: the later one's "10" held for a "50", town_small_tour seed 1)."""
        reached: list[tuple[float, int, str]] = []  # (leading votes, track id, label)
        for k in self.tracks:
            lab = k.label()
            if (
                k.group != "sign"
                or lab is None
                or not lab.startswith("limit_")
                or k.id in self._limit_signs
            ):
                continue
            x = float(ego.to_ego(np.array([[k.x, k.y]]))[0, 0])
            lead, total = k.votes[lab], sum(k.votes.values())
            if (
                x <= self.cfg.limit_active_ahead_m
                and k.hits >= self.cfg.confirm_hits
                and lead >= self.cfg.limit_min_votes
                and k.reads[lab] >= self.cfg.limit_min_reads
                and lead >= self.cfg.limit_min_share * total
            ):
                reached.append((lead, k.id, lab))
        if reached:
            lab = max(reached)[2]
            self._limit_mps = float(lab.removeprefix("limit_")) * KMH
            self._limit_signs |= {i for _, i, _ in reached}
        self._limit_signs &= {k.id for k in self.tracks}

    # ------------------------------------------------------------------------- output
    def _output(
        self, ego: VehicleState, route: RouteAhead | None, latency: float
    ) -> PerceptionOutput:
        cfg = self.cfg
        objects: list[DetectedObject] = []
        signs: list[DetectedSign] = []
        lights_seen: list[tuple[Track, np.ndarray]] = []
        for k in self.tracks:
            age = ego.t - k.t_last
            pt = np.array([[k.x + k.vx * age, k.y + k.vy * age]])
            p = ego.to_ego(pt)[0]
            if k.group in ("vehicle", "pedestrian"):
                if k.hits < cfg.confirm_hits or ego.t - k.t_seen > cfg.report_age_s:
                    continue
                speed = math.hypot(k.vx, k.vy)
                c, s = math.cos(ego.yaw), math.sin(ego.yaw)
                yaw = math.atan2(-s * k.vx + c * k.vy, c * k.vx + s * k.vy) if speed > 1.0 else 0.0
                if speed < cfg.standstill_mps:
                    speed = 0.0
                length, width = (
                    cfg.vehicle_size_m if k.group == "vehicle" else cfg.pedestrian_size_m
                )
                kind = ActorKind.VEHICLE if k.group == "vehicle" else ActorKind.PEDESTRIAN
                objects.append(
                    DetectedObject(
                        k.id,
                        kind,
                        float(p[0]),
                        float(p[1]),
                        yaw,
                        speed,
                        length,
                        width,
                        k.score,
                        # the box is of the last detection step's frame: an object that step
                        # did not box coasts on its track and has none (its last box would
                        # stand where it was then, on an older frame)
                        k.box if k.t_last == self._last_detect_t else None,
                    )
                )
            elif k.group == "sign":
                lab = k.label()
                if lab is None or age > cfg.report_age_s or k.hits < cfg.confirm_hits:
                    continue
                if lab.startswith("limit_"):
                    sign = DetectedSign(
                        k.id,
                        SignType.SPEED_LIMIT,
                        float(lab[6:]),
                        float(p[0]),
                        float(p[1]),
                        k.score,
                    )
                else:
                    sign = DetectedSign(
                        k.id, SignType[lab.upper()], 0.0, float(p[0]), float(p[1]), k.score
                    )
                signs.append(sign)
            elif ego.t - k.t_read <= cfg.report_age_s and k.state != LightState.OFF:
                # a head seen only cut by the image's edge is not seen: its last state must not
                # hold a stopped ego for ever (the head of junction_turns seed 1 stood at the
                # edge, boxed each frame, red for 150 s), and one never read says nothing
                lights_seen.append((k, p))
        lights = self._governing_light(ego, route, lights_seen)
        return PerceptionOutput(
            ego.t, ego.frame, tuple(objects), tuple(signs), lights, self._limit_mps, latency
        )

    def _governing_light(
        self, ego: VehicleState, route: RouteAhead | None, seen: list[tuple[Track, np.ndarray]]
    ) -> tuple[DetectedLight, ...]:
        """The light of the ego's lane, its stop line at the route's next junction entry."""
        if route is not None and len(route.junction) and route.junction[0] < 0:
            ahead = np.flatnonzero(route.junction >= 0)
            if len(ahead) and seen:
                i_line = int(ahead[0])
                line = route.xy[i_line]
                yaw = float(route.yaw[i_line])
                normal = np.array([-math.sin(yaw), math.cos(yaw)])
                near = [
                    (k, p)
                    for k, p in seen
                    if np.hypot(*(p - line)) < self.cfg.light_to_line_max_m
                    and abs(float(normal @ (p - line))) < self.cfg.light_across_max_m
                    and p[0] > 0.0
                ]
                if near:
                    k, p = max(near, key=lambda kp: RESTRICTIVENESS[kp[0].state])
                    if k.state != LightState.GREEN:
                        line = self._line_in_view(route, i_line, p, k.z, ego.speed)
                    else:
                        self._in_view = None
                    m = ego.to_map(line[None])[0]
                    self._light_line = (float(m[0]), float(m[1]), k.id, k.state, ego.t)
        if self._light_line is None:
            return ()
        mx, my, lid, state, t_seen = self._light_line
        p = ego.to_ego(np.array([[mx, my]]))[0]
        if p[0] < -5.0 or ego.t - t_seen > self.cfg.light_memory_s:  # passed, or long unseen
            self._light_line = self._in_view = None
            return ()
        return (DetectedLight(lid, state, float(p[0]), float(p[1])),)

    def _line_in_view(
        self, route: RouteAhead, i_line: int, head: np.ndarray, head_z: float | None, speed: float
    ) -> np.ndarray:
        """The stop line to report for a light whose head is at ego-frame ``head``: the route's
        line, or earlier on the route where the camera, driven straight on, still sees the
        whole head ``light_in_view_margin_px`` inside the image; never nearer than the ego can
        stop at ``in_view_decel_mps2``.

        For one stop line, the point only ever moves back (towards the ego) until the light
        turns green or is dropped: a head estimate that drifts as the ego nears it, or a head
        cut by the image's edge, must not walk a stopped ego forward out of view.
        """
        cfg, cam = self.cfg, self.camera_spec
        z = cam.z if head_z is None else head_z  # unmeasured: only the sides can be checked
        dy, dz = LIGHT_HEAD_WIDTH_M / 2.0, LIGHT_HEAD_HEIGHT_M / 2.0
        corners = np.array(
            [[head[0], head[1] + sy * dy, z + sz * dz] for sy in (-1, 1) for sz in (-1, 1)]
        )
        travel = max_travel_in_view(
            self._cam_K,
            self._cam_pose,
            (cam.width, cam.height),
            corners,
            cfg.light_in_view_margin_px * cam.width / REFERENCE_WH[0],
        )
        # route distances from the route's first point, which is the ego's projection on it and
        # may lie a little ahead of the rear axle
        front = cfg.ego.length_m - cfg.ego.rear_overhang_m - float(route.xy[0, 0])
        s_route = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(route.xy, axis=0).T))])
        s_line = float(s_route[i_line])
        s_view = route.s0_m + travel + front
        line_at = route.s0_m + s_line
        if self._in_view is not None and abs(self._in_view[0] - line_at) < 2.0:
            s_view = min(s_view, self._in_view[1])  # the same line: never move forward
        self._in_view = (line_at, s_view)
        s_stop = front + speed**2 / (2.0 * cfg.in_view_decel_mps2)
        s = min(s_line, max(s_view - route.s0_m, s_stop))
        if s >= s_line:
            return route.xy[i_line]
        return np.array(
            [np.interp(s, s_route, route.xy[:, 0]), np.interp(s, s_route, route.xy[:, 1])]
        )


def _taken_at(frame: CameraFrame, t: float) -> bool:
    """Whether ``frame`` was taken at time ``t`` (s), not held on from an earlier capture."""
    return abs(frame.t - t) < 1e-6


def _image(rgb: np.ndarray, device: torch.device) -> Tensor:
    """An HWC uint8 RGB image as a (1, 3, H, W) float batch in [0, 1] on ``device``."""
    img = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
    return img.permute(2, 0, 1)[None].float() / 255.0


def _range(p: np.ndarray, pose: np.ndarray) -> float:
    """Ground distance (m) from the camera (``pose``) to an ego-frame point ``p``."""
    return math.hypot(float(p[0]) - pose[0, 3], float(p[1]) - pose[1, 3])


def cut_by_edge(box: list[float], size: tuple[int, int], edge_px: float) -> bool:
    """Whether a box (COCO edges) comes within ``edge_px`` of the edge of a ``(w, h)`` image."""
    x0, y0, x1, y1 = box
    w, h = size
    return x0 < edge_px or y0 < edge_px or x1 > w - edge_px or y1 > h - edge_px


def one_box_per_sign(
    boxes: list[tuple[float, float, float, float]], scores: list[float], iou: float, contain: float
) -> list[int]:
    """Indices of a frame's sign boxes kept by NMS across the sign classes: the detector boxes
    a sign as a speed limit and, from the same cell and so in the same box, again as a yield
    or stop sign (its own NMS is per class, as COCO's mAP wants), while the classifier, not
    the detector's class, reads what a sign says; and it boxes a near sign again in part, a box
    mostly inside the whole one (``contain``: the share of the smaller box's area)."""
    if not boxes:
        return []
    keep = nms(torch.tensor(boxes), torch.tensor(scores), torch.zeros(len(boxes)), iou, contain)
    return sorted(keep.tolist())


def reading(
    logits: Tensor,
    group: str,
    masks: dict[str, Tensor],
    labels: tuple[str, ...],
    cfg: PerceiverSettings,
) -> tuple[str | None, float]:
    """What the classifier's ``logits`` for a crop of a ``group`` box (``sign`` or ``light``)
    say: the best label of that group and its probability among the group's labels, or no
    label for a sign box whose crop shows a head (``sign_head_share``): a head boxed as a sign,
    not read, so its track keeps the readings it has. A light box is read however sign-like
    its crop: a red must not go unread."""
    if group == "sign" and head_share(logits, masks["light"]) >= cfg.sign_head_share:
        return None, 1.0
    p = torch.softmax(logits.masked_fill(~masks[group], -math.inf), 0)
    j = int(p.argmax())
    return labels[j], float(p[j])


def head_share(logits: Tensor, light_mask: Tensor) -> float:
    """The classifier's probability, over every label, that a crop shows a light head."""
    return float(torch.softmax(logits, 0)[light_mask].sum())


def head_parts(
    boxes: np.ndarray,
    groups: list[str],
    scores: list[float],
    heads: list[bool],
    overlap: float,
    sure: float,
) -> set[int]:
    """Indices of light and sign boxes that lie ``overlap`` (share of their area) or more inside
    a bigger light box: a part of a head the detector also boxed whole, as a light or as a sign.
    Signs and heads stand on poles of their own, so a sign's box inside a head's is the head's
    top, which the Transformer boxed as a stop sign beside a green head; read "stop", it held
    the ego at a signalised junction's line, out of the head's view, until the light was red
    (dense_traffic seed 5, traced 2026-12-05). A sign is a part only of a head scoring ``sure``
    or more whose crop the classifier finds a head in (``heads``): the detector also boxes a
    sign as a light, and the evaluation's COCO list, ranked down to a score of 0.01, lost most
    of its true signs to faint such boxes around them; on the unseen map's drives boxes scoring
    0.35 or more took some too, which the classifier does not find a head in."""
    idx = [i for i, g in enumerate(groups) if g in ("light", "sign")]
    wholes = [j for j in idx if groups[j] == "light"]
    area = {
        i: max(boxes[i, 2] - boxes[i, 0], 0.0) * max(boxes[i, 3] - boxes[i, 1], 0.0) for i in idx
    }
    parts = set()
    for i in idx:
        for j in wholes:
            if j == i or area[j] <= area[i]:
                continue
            if groups[i] == "sign" and (scores[j] < sure or not heads[j]):
                continue
            iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            if iw > 0 and ih > 0 and iw * ih >= overlap * area[i]:
                parts.add(i)
                break
    return parts


def sign_twins(
    boxes: np.ndarray,
    groups: list[str],
    scores: list[float],
    heads: list[bool],
    overlap: float,
    sure: float,
) -> set[int]:
    """Indices of light boxes that are a sign boxed again: a light box whose crop the classifier
    finds no head in (``heads``), sharing ``overlap`` or more of the larger box's area with a
    sign box scoring ``sure`` or more whose crop shows no head either. The CNN boxed the stop
    sign the ego stood at, 5 m ahead, as a stop sign (0.67) and as a light (0.37) in one frame;
    read "green" at 0.49, the light was reported doubtful, which the planner takes as red, and
    held the ego at the sign for 3.5 s more (town_loop seed 0, traced 2026-12-07). The mirror
    of ``head_parts``' rule for signs: a light box whose crop shows a head is never dropped, so
    a red head is read whatever else the detector boxes at its place."""
    lights = [i for i, g in enumerate(groups) if g == "light" and not heads[i]]
    signs = [j for j, g in enumerate(groups) if g == "sign" and not heads[j] and scores[j] >= sure]
    if not lights or not signs:
        return set()
    # each a part of the other (no rise asked): both share ``overlap`` of their area, so the
    # intersection is that share of the larger
    a, b = boxes[lights], boxes[signs]
    twin = part_of(a, b, overlap, -math.inf) & part_of(b, a, overlap, -math.inf).T
    return {lights[k] for k in np.flatnonzero(twin.any(axis=1))}


def part_of(parts: ArrayLike, wholes: ArrayLike, overlap: float, rise: float) -> NDArray[np.bool_]:
    """``[i, j]``: whether box i of ``parts`` is a part of box j of ``wholes``: at least
    ``overlap`` of the part's area lies inside the whole, and the part's bottom edge is at least
    ``rise`` of the whole's height above the whole's. The ground plane places such a part far
    behind the object: its "bottom" is the middle of the object. Boxes ``x0, y0, x1, y1`` px."""
    x0, y0, x1, y1 = np.asarray(parts, dtype=float).reshape(-1, 4).T[:, :, None]
    a0, b0, a1, b1 = np.asarray(wholes, dtype=float).reshape(-1, 4).T[:, None, :]
    area = np.clip(x1 - x0, 0.0, None) * np.clip(y1 - y0, 0.0, None)
    iw = np.minimum(x1, a1) - np.maximum(x0, a0)
    ih = np.minimum(y1, b1) - np.maximum(y0, b0)
    return (
        (area > 0)
        & (iw > 0)
        & (ih > 0)
        & (iw * ih >= overlap * area)
        & (b1 - y1 >= rise * (b1 - b0))
    )


def part_owners(
    parts: list[tuple[float, float, float, float]],
    wholes: list[tuple[float, float, float, float]],
    overlap: float,
    rise: float,
) -> dict[int, int]:
    """For each box of ``parts`` that is a part of a box of ``wholes`` (``part_of``), the index
    of the nearest such whole: the one with the lowest bottom edge, the first of equals."""
    if not len(parts) or not len(wholes):
        return {}
    owned = part_of(parts, wholes, overlap, rise)
    bottoms = np.asarray(wholes, dtype=float).reshape(-1, 4)[:, 3]
    nearest = np.where(owned, bottoms[None], -np.inf).argmax(axis=1)
    return {int(i): int(nearest[i]) for i in np.flatnonzero(owned.any(axis=1))}


def object_parts(
    boxes: list[tuple[float, float, float, float]], overlap: float, rise: float
) -> set[int]:
    """Indices of boxes of one frame that are parts of another box of it (``part_owners``)."""
    owners = part_owners(boxes, boxes, overlap, rise)
    return {i for i, j in owners.items() if j != i}
