"""``python -m launch replay FILE.mcap``: re-run stages over a recording, or re-simulate it.

- ``--mode open-loop --rerun perception|planning|control|all``: the recorded inputs go through
  freshly built stages (with ``--set STAGE.FIELD=VALUE`` changes, or another implementation);
  a stage downstream of a re-run one gets the new output, one upstream is taken as recorded.
  Each re-run stage's outputs are compared with the recorded ones: perception by detection
  average precision against the recorded ground truth, planning by path and speed differences,
  control by accel/steer differences. Unchanged stages give zero differences.
- ``--mode closed-loop``: the episode is simulated again from the recorded scenario, seed and
  configuration, every message re-encoded and compared byte for byte with the recording; the
  first frame where they differ is named with the channels and fields that differ.

Exit status: 0 identical / compared, 1 closed-loop divergence, 2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from launch.argtypes import add_weights_args, positive_int
from launch.record import (
    STAGES,
    build_configured_stack,
    parse_overrides,
    run_recorded,
)
from launch.stack import (
    CONTROLLERS,
    PERCEPTIONS,
    PLANNERS,
    StackConfig,
    make_world,
    weights_path,
)
from perception.dataset import SCORED_FROM_HEIGHT_PX, SCORED_HIDDEN_BELOW
from sim.errors import DrivestackError
from sim.messages import (
    ActorKind,
    Control,
    Observation,
    PerceptionOutput,
    Plan,
    VehicleState,
)
from sim.recording import Recorder, RecorderSettings, Recording, read_recording
from sim.recording.codec import unpack
from sim.recording.derive import DerivingSink
from sim.recording.writer import RESULT_TOPIC
from sim.scenario import Scenario

EXIT_DIVERGED = 1
INPUT_TOPICS = ("/scenario", "/config")  # inputs of a re-simulation, not its outputs


# ------------------------------------------------------------------------------ closed loop
@dataclass
class Divergence:
    frame: int
    t: float
    differences: list[tuple[str, str]]  # (topic, what differs)

    def describe(self) -> str:
        parts = "; ".join(f"{topic}: {what}" for topic, what in self.differences)
        return f"diverged at frame {self.frame} (t={self.t:.2f} s): {parts}"


class _Diverged(Exception):
    pass


class CompareSink:
    """A recorder sink that compares each message with the recording's instead of writing.

    On the first difference it notes the frame, keeps comparing that frame's other messages,
    and stops the episode (raises) at the next frame.
    """

    def __init__(self, rec: Recording, compare_result: bool) -> None:
        self.rec = rec
        self.compare_result = compare_result
        self.cursor: dict[str, int] = {}
        self.compared = 0
        self.divergence: Divergence | None = None
        self.divergence_ns = 0
        self.stopped = False
        self.exhausted: set[str] = set()

    def write(self, topic: str, schema: str, log_time_ns: int, data: bytes) -> None:
        del schema
        if self.stopped or topic in INPUT_TOPICS:
            return
        if topic == RESULT_TOPIC and not self.compare_result:
            return
        if self.divergence is not None and (
            log_time_ns > self.divergence_ns or topic == RESULT_TOPIC
        ):
            self.stopped = True  # the diverging frame is complete: end the episode here
            raise _Diverged
        recorded = self.rec.messages.get(topic, [])
        i = self.cursor.get(topic, 0)
        self.cursor[topic] = i + 1
        if i >= len(recorded):
            if not self.rec.complete:
                self.exhausted.add(topic)  # beyond the recording's last complete chunk
                return
            self._differ(topic, data, log_time_ns, "the replay has a message the recording lacks")
            return
        if recorded[i] == data:
            self.compared += 1
            return
        what = first_difference(json.loads(recorded[i]), json.loads(data))
        self._differ(topic, data, log_time_ns, what)

    def _differ(self, topic: str, data: bytes, log_time_ns: int, what: str) -> None:
        if self.divergence is None:
            frame = _frame_of(data)
            self.divergence = Divergence(frame if frame is not None else -1, log_time_ns / 1e9, [])
            self.divergence_ns = log_time_ns
        self.divergence.differences.append((topic, what))

    def metadata(self, name: str, data: dict[str, str]) -> None:
        """Metadata (creation time, end status) is not part of the episode."""

    def close(self) -> None:
        """Nothing to release."""

    def unreplayed(self) -> dict[str, int]:
        """Recorded messages the replay never produced, per topic."""
        out = {}
        for topic, msgs in self.rec.messages.items():
            if topic in INPUT_TOPICS or (topic == RESULT_TOPIC and not self.compare_result):
                continue
            left = len(msgs) - self.cursor.get(topic, 0)
            if left > 0:
                out[topic] = left
        return out


def _frame_of(data: bytes) -> int | None:
    try:
        d = json.loads(data)
    except ValueError:
        return None
    frame = d.get("frame") if isinstance(d, dict) else None
    return frame if isinstance(frame, int) else None


def first_difference(a: Any, b: Any, path: str = "") -> str:
    """Where two decoded messages first differ, e.g. ``ego.x: recorded 1.5, replayed 1.25``."""
    here = path or "(message)"
    if isinstance(a, dict) and isinstance(b, dict):
        if {"dtype", "shape", "data"} <= a.keys() and {"dtype", "shape", "data"} <= b.keys():
            x, y = unpack(a), unpack(b)
            if x.shape != y.shape:
                return f"{here}: shape recorded {x.shape}, replayed {y.shape}"
            idx = np.argwhere(
                ~((x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y)
            )
            if len(idx):
                i = tuple(int(k) for k in idx[0])
                return f"{here}{list(i)}: recorded {x[i].item()!r}, replayed {y[i].item()!r}"
            return f"{here}: same values, different encoding"
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{path + '.' if path else ''}{key}: present in only one of them"
            if a[key] != b[key]:
                return first_difference(a[key], b[key], f"{path + '.' if path else ''}{key}")
        return f"{here}: same values, different encoding"
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{here}: {len(a)} items recorded, {len(b)} replayed"
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{path}[{k}]")
    return f"{here}: recorded {a!r}, replayed {b!r}"


@dataclass
class ClosedLoopReport:
    identical: bool
    frames: int
    messages_compared: int
    summary: str
    divergence: Divergence | None = None
    unreplayed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "mode": "closed-loop",
            "identical": self.identical,
            "frames": self.frames,
            "messages_compared": self.messages_compared,
            "summary": self.summary,
        }
        if self.divergence is not None:
            d["divergence"] = {
                "frame": self.divergence.frame,
                "t": self.divergence.t,
                "differences": [{"topic": t, "what": w} for t, w in self.divergence.differences],
            }
        if self.unreplayed:
            d["unreplayed"] = self.unreplayed
        return d


def recorded_scenario(rec: Recording) -> Scenario:
    data = dict(rec.scenario)
    if rec.config.get("scenario_path"):
        data["path"] = rec.config["scenario_path"]
    try:
        return Scenario.model_validate(data)
    except ValueError as exc:
        first = str(exc).splitlines()[:3]
        raise DrivestackError(
            f"{rec.path}: the recorded scenario does not validate with this drivestack "
            f"({' '.join(s.strip() for s in first)})"
        ) from None


def closed_loop(
    rec: Recording,
    stack_cfg: StackConfig,
    overrides: dict[str, dict[str, Any]],
    max_steps: int | None,
) -> ClosedLoopReport:
    """Re-simulate the recording and compare every message with it."""
    scenario = recorded_scenario(rec)
    recorded_ticks = rec.count("/control")
    limit = rec.config.get("max_steps")
    if not rec.complete:
        limit = recorded_ticks  # nothing beyond the last complete chunk to compare with
    if max_steps is not None and (limit is None or max_steps < limit):
        limit = max_steps
    full_length = limit is None or limit >= recorded_ticks
    sink = CompareSink(rec, compare_result=full_length and rec.complete)
    # one tick at a time: the episode stops at the frame where it diverged
    settings = dataclasses.replace(
        RecorderSettings(**rec.config.get("recorder", {})), batch_ticks=1
    )
    recorder = Recorder(DerivingSink(sink, settings), settings)
    stack = build_configured_stack(stack_cfg, _recorded_settings(rec, stack_cfg), overrides)
    world = make_world(stack_cfg.backend)
    try:
        run_recorded(
            recorder,
            world,
            stack,
            stack_cfg,
            scenario,
            int(rec.config["seed"]),
            limit,
            config=rec.config,
        )
    except _Diverged:
        pass
    finally:
        world.close()
    frames = recorder.frames
    div = sink.divergence
    if div is not None:
        return ClosedLoopReport(False, frames, sink.compared, div.describe(), div)
    left = sink.unreplayed() if full_length and rec.complete else {}
    if left:
        return ClosedLoopReport(
            False,
            frames,
            sink.compared,
            f"the replayed episode ended after frame {recorder.last_frame}; the recording has "
            f"{max(left.values())} more frame(s)",
            unreplayed=left,
        )
    scope = "" if full_length else f" (the first {limit} steps of {recorded_ticks})"
    if not rec.complete:
        scope = f" (up to the recording's last complete chunk, {recorded_ticks} steps)"
    return ClosedLoopReport(
        True,
        frames,
        sink.compared,
        f"bit-identical: {sink.compared} messages over {frames} frames{scope}",
    )


def _recorded_settings(rec: Recording, cfg: StackConfig) -> dict[str, dict[str, Any]]:
    """The recorded settings of the stages whose implementation is unchanged."""
    recorded = StackConfig(**rec.config["stack"])
    settings = rec.config.get("settings", {})
    same = {
        "perception": recorded.perception == cfg.perception,
        "planning": recorded.planner == cfg.planner,
        "control": recorded.controller == cfg.controller,
    }
    out = {stage: dict(settings.get(stage, {})) for stage in STAGES if same[stage]}
    learned = recorded.perception in ("cnn", "transformer") and "perception" in out
    if learned and "read_scale" not in out["perception"]:
        # recorded before the classifier had a camera of its own (2026-12-06): it read the
        # detector's, and the recording holds no other
        out["perception"]["read_scale"] = out["perception"].get("camera_scale") or 1
    return out


# -------------------------------------------------------------------------------- open loop
def average_precision(scores: list[float], hits: list[bool], n_truth: int) -> float | None:
    """All-point interpolated AP (VOC 2010+/COCO style) of detections ranked by score."""
    if n_truth == 0:
        return None
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(hits, dtype=np.float64)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = ctp / n_truth
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


@dataclass
class _APAccumulator:
    """Detections matched to truth frame by frame, per class."""

    scores: dict[int, list[float]] = field(default_factory=dict)
    hits: dict[int, list[bool]] = field(default_factory=dict)
    truth: dict[int, int] = field(default_factory=dict)

    def add(self, cls: int, det_scores: list[float], matched: list[bool], n_truth: int) -> None:
        self.scores.setdefault(cls, []).extend(det_scores)
        self.hits.setdefault(cls, []).extend(matched)
        self.truth[cls] = self.truth.get(cls, 0) + n_truth

    def mean_ap(self) -> tuple[float | None, dict[str, float | None]]:
        per = {
            ActorKind(c).name.lower(): average_precision(
                self.scores.get(c, []), self.hits.get(c, []), n
            )
            for c, n in sorted(self.truth.items())
        }
        valid = [v for v in per.values() if v is not None]
        return (float(np.mean(valid)) if valid else None), per


def _greedy_match(
    det: np.ndarray, det_scores: np.ndarray, truth: np.ndarray, close: Any
) -> list[bool]:
    """Highest score first, each detection takes the best free truth ``close`` accepts."""
    used = np.zeros(len(truth), dtype=bool)
    matched = [False] * len(det)
    for i in np.argsort(-det_scores, kind="stable"):
        if not len(truth):
            break
        quality = close(det[i], truth)  # (T,) larger is better, -inf when not acceptable
        quality[used] = -np.inf
        j = int(np.argmax(quality))
        if np.isfinite(quality[j]):
            used[j] = True
            matched[i] = True
    return matched


def _bev_frame(
    acc: _APAccumulator, obs: Observation, p: PerceptionOutput, cfg: OpenLoopSettings
) -> None:
    """Ego-frame centre-distance matching (nuScenes-style) of detections to the actors
    ahead of the ego within ``cfg.eval_range_m``."""
    a = obs.ground_truth.actors
    local = obs.ego.to_ego(np.stack([a.x, a.y], -1)) if len(a) else np.zeros((0, 2))
    # recorded actors are box centres; detections are box centres too
    in_region = (local[:, 0] > 0.0) & (np.hypot(local[:, 0], local[:, 1]) < cfg.eval_range_m)
    for kind in (ActorKind.VEHICLE, ActorKind.PEDESTRIAN):
        truth = local[in_region & (a.kind == int(kind))]
        dets = [
            o
            for o in p.objects
            if o.kind == kind and o.x > 0.0 and math.hypot(o.x, o.y) < cfg.eval_range_m
        ]
        det_xy = np.array([[o.x, o.y] for o in dets]).reshape(-1, 2)
        det_s = np.array([o.score for o in dets])

        def close(d: np.ndarray, t: np.ndarray) -> np.ndarray:
            dist = np.hypot(t[:, 0] - d[0], t[:, 1] - d[1])
            return np.where(dist <= cfg.match_distance_m, -dist, -np.inf)

        matched = _greedy_match(det_xy, det_s, truth, close)
        acc.add(int(kind), det_s.tolist(), matched, len(truth))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _image_frame(
    acc: _APAccumulator, obs: Observation, p: PerceptionOutput, cfg: OpenLoopSettings
) -> bool:
    """Image-box IoU ≥ 0.5 matching against the camera's ground-truth boxes, those too small
    or hidden to score ignored (``cfg``); False when the tick has no labelled camera frame
    taken at it (a camera with a ``sensor_tick`` holds its frame on between captures: that
    frame counts once) or the detections carry no image boxes."""
    cams = [
        c
        for c in obs.sensors.values()
        if c.frame == obs.frame and c.boxes is not None and c.box_class is not None
    ]
    if not cams or not any(o.box is not None for o in p.objects):
        return False
    cam = cams[0]
    assert cam.boxes is not None and cam.box_class is not None
    boxes = np.asarray(cam.boxes, dtype=np.float64).reshape(-1, 4)
    hidden = np.zeros(len(boxes)) if cam.box_occlusion is None else np.asarray(cam.box_occlusion)
    height = (boxes[:, 3] - boxes[:, 1]) * 240.0 / cam.rgb.shape[0]
    scored = (height >= cfg.image_min_height_px) & (hidden < cfg.image_hidden)

    def close(d: np.ndarray, t: np.ndarray) -> np.ndarray:
        iou = _iou(d, t)
        return np.where(iou >= 0.5, iou, -np.inf)

    for kind in (ActorKind.VEHICLE, ActorKind.PEDESTRIAN):
        mine = np.asarray(cam.box_class) == int(kind)
        truth, ignored = boxes[mine & scored], boxes[mine & ~scored]
        dets = [o for o in p.objects if o.kind == kind and o.box is not None]
        det_b = np.array([o.box for o in dets], dtype=np.float64).reshape(-1, 4)
        det_s = np.array([o.score for o in dets])
        hit = _greedy_match(det_b, det_s, truth, close)
        kept = [
            i for i in range(len(dets)) if hit[i] or not np.isfinite(close(det_b[i], ignored)).any()
        ]
        acc.add(int(kind), [float(det_s[i]) for i in kept], [hit[i] for i in kept], len(truth))
    return True


@dataclass(frozen=True)
class OpenLoopSettings:
    eval_range_m: float = 50.0  # ground truth ahead of the ego within this range counts
    match_distance_m: float = 2.0  # centre distance for a detection to match (nuScenes' 2 m)
    # image boxes too small or too hidden to score are ignored, as `perception eval` ignores
    # them (COCO's crowd regions): a detection on one is neither a hit nor a false positive
    image_min_height_px: float = SCORED_FROM_HEIGHT_PX  # box height at 240 image rows
    image_hidden: float = SCORED_HIDDEN_BELOW  # occlusion share


@dataclass
class _Diff:
    """Running statistics of an absolute difference."""

    n: int = 0
    differing: int = 0
    sq: float = 0.0
    max: float = 0.0

    def add(self, d: float) -> None:
        self.n += 1
        d = abs(d)
        if d > 0 or math.isnan(d):
            self.differing += 1
        self.sq += d * d
        self.max = max(self.max, d)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.n,
            "frames_differing": self.differing,
            "rms": math.sqrt(self.sq / self.n) if self.n else 0.0,
            "max": self.max,
        }


def _path_difference(a: Plan, b: Plan) -> float:
    """Largest distance (m) between the two paths' points over their common length, with
    ``b`` expressed in ``a``'s frame."""
    n = min(len(a.path), len(b.path))
    if n == 0:
        return 0.0 if len(a.path) == len(b.path) else math.inf
    ax, ay, ayaw = a.origin
    frame_a = VehicleState(a.t, a.frame, ax, ay, ayaw, 0.0)
    pb = b.path_in(frame_a)[:n]
    return float(np.max(np.hypot(*(np.asarray(a.path[:n]) - pb).T)))


def open_loop(
    rec: Recording,
    stack_cfg: StackConfig,
    overrides: dict[str, dict[str, Any]],
    rerun: str,
    max_steps: int | None,
    cfg: OpenLoopSettings = OpenLoopSettings(),
) -> dict[str, Any]:
    """Feed the recorded inputs to the chosen stages and compare their outputs."""
    chosen = set(STAGES) if rerun == "all" else {rerun}
    stack = build_configured_stack(stack_cfg, _recorded_settings(rec, stack_cfg), overrides)
    stack.reset()
    perceptions, plans, controls = rec.perceptions(), rec.plans(), rec.controls()
    n = min(len(perceptions), len(plans), len(controls))
    if max_steps is not None:
        n = min(n, max_steps)
    if n == 0:
        raise DrivestackError(f"{rec.path}: no complete tick recorded: nothing to replay")
    ap_recorded, ap_new = _APAccumulator(), _APAccumulator()
    img_recorded, img_new = _APAccumulator(), _APAccumulator()
    image_frames = 0
    perc_changed = 0
    objects = {"recorded": 0, "replayed": 0}
    limit_diff, plan_speed, plan_path = _Diff(), _Diff(), _Diff()
    accel, steer = _Diff(), _Diff()
    fallbacks = {"recorded": 0, "replayed": 0}
    with_images = "perception" in chosen
    for k, obs in enumerate(rec.observations(with_images=with_images)):
        if k >= n:
            break
        p_rec, plan_rec, c_rec = perceptions[k], plans[k], controls[k]
        p = stack.perceiver.update(obs) if "perception" in chosen else p_rec
        if "perception" in chosen:
            _bev_frame(ap_recorded, obs, p_rec, cfg)
            _bev_frame(ap_new, obs, p, cfg)
            if _image_frame(img_recorded, obs, p_rec, cfg) | _image_frame(img_new, obs, p, cfg):
                image_frames += 1
            # the latency is the run's timing, not an output: it differs on every re-run
            perc_changed += dataclasses.replace(p, latency_s=0.0) != dataclasses.replace(
                p_rec, latency_s=0.0
            )
            objects["recorded"] += len(p_rec.objects)
            objects["replayed"] += len(p.objects)
            a = p_rec.speed_limit_mps if p_rec.speed_limit_mps is not None else math.nan
            b = p.speed_limit_mps if p.speed_limit_mps is not None else math.nan
            limit_diff.add(0.0 if (math.isnan(a) and math.isnan(b)) else b - a)
        replan = "planning" in chosen
        plan = stack.planner.update(p, obs.route, obs.ego) if replan else plan_rec
        if replan:
            plan_speed.add(_first(plan.speed) - _first(plan_rec.speed))
            plan_path.add(_path_difference(plan_rec, plan))
        control: Control = stack.controller.update(plan, obs.ego) if "control" in chosen else c_rec
        if "control" in chosen:
            accel.add(control.accel - c_rec.accel)
            steer.add(control.steer - c_rec.steer)
            fallbacks["recorded"] += not c_rec.valid
            fallbacks["replayed"] += not control.valid
    out: dict[str, Any] = {
        "mode": "open-loop",
        "rerun": sorted(chosen, key=STAGES.index),
        "frames": n,
        "stack": {
            "recorded": rec.config["stack"],
            "replayed": stack_cfg.to_dict(),
        },
        "overrides": overrides,
    }
    if "perception" in chosen:
        m_rec, per_rec = ap_recorded.mean_ap()
        m_new, per_new = ap_new.mean_ap()
        out["perception"] = {
            "frames_differing": perc_changed,
            "objects_per_frame": {k: v / n for k, v in objects.items()},
            "bev_map": {
                "recorded": m_rec,
                "replayed": m_new,
                "per_class_recorded": per_rec,
                "per_class_replayed": per_new,
                "range_m": cfg.eval_range_m,
                "match_distance_m": cfg.match_distance_m,
            },
            "speed_limit_mps_difference": limit_diff.to_dict(),
        }
        if rec.cameras:
            out["perception"]["camera_inputs"] = {
                "images": rec.config.get("recorder", {}).get("image_format", "jpeg"),
                "depth": all(rec.has_depth(c) for c in rec.cameras),
            }
        if image_frames:
            i_rec, ip_rec = img_recorded.mean_ap()
            i_new, ip_new = img_new.mean_ap()
            out["perception"]["image_map50"] = {
                "frames": image_frames,
                "recorded": i_rec,
                "replayed": i_new,
                "per_class_recorded": ip_rec,
                "per_class_replayed": ip_new,
            }
    if "planning" in chosen:
        out["planning"] = {
            "speed_now_mps_difference": plan_speed.to_dict(),
            "path_max_m_difference": plan_path.to_dict(),
        }
    if "control" in chosen:
        out["control"] = {
            "accel_mps2_difference": accel.to_dict(),
            "steer_rad_difference": steer.to_dict(),
            "fallbacks": fallbacks,
        }
    return out


def _first(a: np.ndarray) -> float:
    return float(a[0]) if len(a) else math.nan


def _most(a: dict[str, Any], b: dict[str, Any]) -> int:
    return max(int(a["frames_differing"]), int(b["frames_differing"]))


def _camera_inputs(p: dict[str, Any]) -> list[str]:
    """The line saying what of the live perceiver's inputs the recording holds."""
    if "camera_inputs" not in p:
        return []
    ci = p["camera_inputs"]
    exact = ci["images"] == "png" and ci["depth"]
    what = f"{ci['images']} images, {'with' if ci['depth'] else 'no'} depth"
    hint = "" if exact else " (--record-images png --record-depth keep all the live run saw)"
    return [f"  camera inputs                   {what}{hint}"]


def format_open_loop(r: dict[str, Any]) -> str:
    lines = [
        f"open-loop replay of {r['frames']} frames, re-running {', '.join(r['rerun'])}",
    ]
    if r["overrides"] and any(r["overrides"].values()):
        lines.append(
            f"settings changed: {json.dumps({k: v for k, v in r['overrides'].items() if v})}"
        )

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    if "perception" in r:
        p = r["perception"]
        bev = p["bev_map"]
        lines += [
            "perception",
            f"  frames with a different output  {p['frames_differing']} of {r['frames']}",
            *_camera_inputs(p),
            f"  objects per frame               recorded {p['objects_per_frame']['recorded']:.2f}"
            f", replayed {p['objects_per_frame']['replayed']:.2f}",
            f"  BEV mAP (centre ≤ {bev['match_distance_m']:g} m, ≤ {bev['range_m']:g} m ahead)"
            f"  recorded {fmt(bev['recorded'])}, replayed {fmt(bev['replayed'])}",
        ]
        if "image_map50" in p:
            im = p["image_map50"]
            lines.append(
                f"  image mAP@0.5 ({im['frames']} camera frames)  recorded {fmt(im['recorded'])}, "
                f"replayed {fmt(im['replayed'])}"
            )
        d = p["speed_limit_mps_difference"]
        lines.append(f"  speed limit difference          max {d['max']:.3f} m/s")
    if "planning" in r:
        s, pa = r["planning"]["speed_now_mps_difference"], r["planning"]["path_max_m_difference"]
        lines += [
            "planning",
            f"  frames with a different plan    {_most(s, pa)} of {r['frames']}",
            f"  reference speed now             rms {s['rms']:.4f}, max {s['max']:.4f} m/s",
            f"  path                            rms {pa['rms']:.4f}, max {pa['max']:.4f} m",
        ]
    if "control" in r:
        a, st = r["control"]["accel_mps2_difference"], r["control"]["steer_rad_difference"]
        fb = r["control"]["fallbacks"]
        lines += [
            "control",
            f"  frames with a different control {_most(a, st)} of {r['frames']}",
            f"  accel                           rms {a['rms']:.4f}, max {a['max']:.4f} m/s²",
            f"  steer                           rms {st['rms']:.5f}, max {st['max']:.5f} rad",
            f"  fallbacks (invalid controls)    recorded {fb['recorded']}, "
            f"replayed {fb['replayed']}",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- command
def _stack_config(rec: Recording, args: argparse.Namespace) -> StackConfig:
    try:
        recorded = StackConfig(**rec.config["stack"])
    except TypeError as exc:
        raise DrivestackError(f"{rec.path}: unreadable stack configuration ({exc})") from None
    perception = args.perception or recorded.perception
    same = perception == recorded.perception  # another perception: not the recorded weights
    return dataclasses.replace(
        recorded,
        perception=perception,
        planner=args.planner or recorded.planner,
        controller=args.controller or recorded.controller,
        detector=weights_path(args.detector) or (recorded.detector if same else ""),
        classifier=weights_path(args.classifier) or (recorded.classifier if same else ""),
    )


def cmd_replay(args: argparse.Namespace) -> int:
    rec = read_recording(args.recording)
    if not rec.complete:
        print(f"warning: {rec.path}: {rec.status}", file=sys.stderr)
    cfg = _stack_config(rec, args)
    overrides = parse_overrides(args.set)
    if args.mode == "closed-loop":
        report = closed_loop(rec, cfg, overrides, args.max_steps)
        result = report.to_dict()
        print(f"closed-loop replay of {rec.path}: {report.summary}")
        code = 0 if report.identical else EXIT_DIVERGED
    else:
        result = open_loop(rec, cfg, overrides, args.rerun, args.max_steps)
        print(format_open_loop(result))
        code = 0
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return code


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run stages over a recording (open loop) or re-simulate it (closed loop)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("recording", help="an MCAP file written by run --record")
    p.add_argument("--mode", choices=("open-loop", "closed-loop"), default="open-loop")
    p.add_argument(
        "--rerun",
        choices=(*STAGES, "all"),
        default="all",
        help="open loop: the stage(s) to run again on the recorded inputs",
    )
    p.add_argument("--perception", choices=PERCEPTIONS, help="replace the recorded perception")
    p.add_argument("--planner", choices=PLANNERS, help="replace the recorded planner")
    p.add_argument("--controller", choices=CONTROLLERS, help="replace the recorded controller")
    add_weights_args(p, "the recorded ones")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.FIELD=VALUE",
        help="change a stage setting, e.g. --set planning.a_max=1.5 (repeatable)",
    )
    p.add_argument("--max-steps", type=positive_int, help="replay only the first N steps")
    p.add_argument("--out", help="also write the comparison as JSON to this file")
    p.set_defaults(func=cmd_replay)
