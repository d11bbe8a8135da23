"""Evaluation of a detector + classifier on a dataset split: the figures of docs/perception.md.

``python -m launch perception eval --weights DET.safetensors --data DIR --out FILE.json``:

- COCO mAP@[.5:.95] and mAP@.5, overall and per class (pycocotools' ``COCOeval``, boxes in the
  dataset's pixels), on the detector's ranked list as COCO scores it: up to ``coco_top_k``
  boxes per image down to ``coco_score_threshold``, not only those the perceiver acts on.
  Scored twice: ``coco``, the boxes the perceiver reports with their classes (``as_reported``:
  a sign is of the type the classifier reads in its box, one box per sign, and a vehicle's or
  pedestrian's box that is a part of another is dropped), and ``coco_detector``, every box
  with the detector's own class.
  Boxes the collector marks as crowds (too small or hidden to annotate, perception/dataset.py)
  or that are mostly hidden (occlusion ≥ ``hidden``) or too small to see (height <
  ``min_height_px`` at 240 rows) are COCO "crowd" regions: a detection on them is neither a hit
  nor a false alarm, as KITTI and COCO treat their hard cases.
- sign type/value accuracy and light state accuracy, two ways: end to end (a ground-truth box
  matched by a detection of its group at IoU ≥ 0.5, read from the detection's crop as the
  perceiver reads it) and the classifier alone on ground-truth boxes; with the number of red
  lights called green, and both by the box's smaller side. Signs and lights are read where they
  are at least ``min_read_px`` across and less than half hidden and less than half outside the
  image. A detected box at the image's edge is not read by the perceiver (half a head reads as
  anything); it is counted apart (``detected_not_read``), not as a reading.
- vehicles and pedestrians found, by the box's height: the share of them a box of the perceiver
  (score ≥ its threshold, the right group, IoU ≥ 0.5) finds. The closed loop hangs on this at
  the sizes where an object must be found in time, and mAP, an average over six classes, hardly
  moves when a few pedestrians are found later (a wider CNN did so, docs/perception.md);
- ego-frame position error (m) of matched vehicles and pedestrians, where the dataset gives
  positions;
- latency per frame at batch 1 on the chosen device (detector, decoding, classifier, placing),
  with the chip it ran on.

With ``read_dir`` (``--read-data``), a second set of the same views at another size (collected
with the same command but for ``--width/--height``), the classifier cuts every crop, detected
and true, from that set's image of the view, as the perceiver does from its own camera at
``PerceiverSettings.read_scale``; the detector and every box stay those of ``data_dir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from perception.data import (
    CLASS_NAMES,
    DatasetError,
    DetectionSet,
    load_split,
    read_annotations,
    read_rgb,
    readable,
    split_ids,
)
from perception.dataset import SCORED_FROM_HEIGHT_PX, SCORED_HIDDEN_BELOW
from perception.models.centernet import box_iou
from perception.models.stn_classifier import StnClassifierConfig, crop_boxes
from perception.perceiver import (
    GROUP,
    REFERENCE_WH,
    FrameDetection,
    LearnedPerceiver,
    PerceiverSettings,
    one_box_per_sign,
    part_of,
)
from sim.messages import CameraFrame, DetectionClass, LightState


@dataclass(frozen=True)
class EvalSettings:
    split: str = "test"
    hidden: float = SCORED_HIDDEN_BELOW  # occlusion share from which a box is an ignored region
    min_height_px: float = SCORED_FROM_HEIGHT_PX  # boxes lower at 240 rows are ignored too
    min_read_px: float = 6.0  # signs/lights narrower than this are not scored as read (px of a
    # 320×240 frame, as every size here: perceiver.REFERENCE_WH, whatever the network's input)
    read_bins_px: tuple[float, ...] = (8.0, 12.0, 16.0)  # readings also by min side: 6-8, 8-12...
    found_bins_px: tuple[float, ...] = (8.0, 16.0, 32.0)  # road users found by height: 4-8, ...
    latency_frames: int = 100
    limit: int | None = None  # evaluate only the first N images
    # COCO's AP integrates precision over the whole ranked list (its protocol: 100 boxes per
    # image); cutting the list at the perceiver's operating threshold (0.35) would cut the
    # recall axis there. The readings, positions and latency use the operating threshold.
    coco_score_threshold: float = 0.01
    coco_top_k: int = 100


def _native(data: DetectionSet, i: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The i-th image as its camera gave it (HWC RGB, its own size) where the set knows its
    file, else at the network's input size; with its px per input px (x, y)."""
    sx, sy = (float(v) for v in data.scales[i])
    if data.files and (sx, sy) != (1.0, 1.0):
        return read_rgb(data.files[i]), (sx, sy)
    return np.ascontiguousarray(data.images[i].permute(1, 2, 0).numpy()), (1.0, 1.0)


def dataset_frame(data: DetectionSet, i: int) -> tuple[CameraFrame, tuple[float, float]]:
    """The i-th image as a camera frame at its own size, with its px per input px: the
    perceiver averages it down to the network's input as it does a camera's frame, cuts the
    classifier's crops from it, and gives its boxes in its px."""
    rgb, scale = _native(data, i)
    K = data.intrinsics[i]
    pose = data.poses[i]
    sx, sy = (float(v) / k for v, k in zip(data.scales[i], scale, strict=True))
    if K is not None and (sx, sy) != (1.0, 1.0):  # the image at the input size: K rescaled
        K = K.copy()
        K[0, 0], K[1, 1] = K[0, 0] / sx, K[1, 1] / sy
        K[0, 2], K[1, 2] = (K[0, 2] + 0.5) / sx - 0.5, (K[1, 2] + 0.5) / sy - 0.5
    elif K is None:  # no calibration in the dataset: a 90° camera 1.5 m up, only for latency runs
        h, w = rgb.shape[:2]
        K = np.array([[w / 2, 0, w / 2], [0, w / 2, h / 2], [0, 0, 1.0]])
    if pose is None:
        pose = np.array([[0, 0, 1, 1.5], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1.0]])
    return CameraFrame(0.0, i, rgb, K, pose), scale


def read_files(data: DetectionSet, read_dir: str | Path) -> list[Path]:
    """Each image's view in ``read_dir``, a set of the same views at another size: the file of
    the same name and image id there."""
    root = Path(read_dir)
    names = {str(im["file_name"]): int(im["id"]) for im in read_annotations(root)["images"]}
    out = []
    for f, image_id in zip(data.files, data.image_ids, strict=True):
        name = f.relative_to(data.source).as_posix()
        if names.get(name) != image_id:
            raise DatasetError(
                f"--read-data {root}: no image {name} with id {image_id}; it must be a set of "
                f"the same views as {data.source} (the same collect command but for the size)"
            )
        out.append(root / name)
    return out


def _sign_label(cls: int, value: float) -> str | None:
    c = DetectionClass(cls + 1)
    if c == DetectionClass.STOP_SIGN:
        return "stop"
    if c == DetectionClass.YIELD_SIGN:
        return "yield"
    if c == DetectionClass.SPEED_LIMIT_SIGN:
        return f"limit_{round(value)}"
    return None


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def evaluate(
    detector: str | Path,
    classifier: str | Path,
    data_dir: str | Path,
    settings: EvalSettings = EvalSettings(),
    device: str = "cpu",
    read_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run every figure of the module docstring; return them as a JSON-ready dict."""
    perceiver = LearnedPerceiver.from_files(
        str(detector), str(classifier), PerceiverSettings(), device
    )
    cuts = [
        (perceiver.cfg.top_k, perceiver.cfg.score_threshold),  # what the perceiver acts on
        (settings.coco_top_k, settings.coco_score_threshold),  # every box COCO ranks
    ]
    data = load_split(data_dir, settings.split, perceiver.input_hw, settings.limit)
    coco_all = read_annotations(data_dir)
    reads = read_files(data, read_dir) if read_dir is not None else None
    dets: list[list[FrameDetection]] = []
    ranked_dets: list[list[FrameDetection]] = []
    ref = _ref_px(data)
    for i in range(len(data)):
        frame, scale = dataset_frame(data, i)
        read = read_rgb(reads[i]) if reads is not None else None
        acted, ranked = perceiver.detect_cuts(frame, read, cuts)
        dets.append(_in_input_px(acted, scale, ref))
        ranked_dets.append(_in_input_px(ranked, scale, ref))
    result: dict[str, Any] = {
        "detector": str(detector),
        "classifier": str(classifier),
        "data": str(data_dir),
        "read_data": None if read_dir is None else str(read_dir),
        "split": settings.split,
        "images": len(data),
        "settings": dataclasses.asdict(settings),
    }
    reported = [as_reported(ds, perceiver.cfg) for ds in ranked_dets]
    result["coco"] = _coco_map(data, coco_all, reported, settings)
    result["coco_detector"] = _coco_map(data, coco_all, ranked_dets, settings)
    result.update(_reading(data, dets, perceiver, settings, reads))
    result["found"] = _found(data, dets, settings)
    result["position_error_m"] = _position_error(data, dets)
    result["latency_ms"] = _latency(perceiver, data, settings.latency_frames, reads)
    result["device"] = device
    result["threads"] = torch.get_num_threads()
    result["processor"] = processor(device)  # the latency is this chip's: two of the
    # project's VMs timed the same CNN at 9 and 23 ms a frame (docs/perception.md)
    return result


def _ref_px(data: DetectionSet) -> float:
    """The set's images' px (the network's input px) per px of a 320×240 frame, the unit of
    every size in ``EvalSettings``."""
    return data.images.shape[3] / REFERENCE_WH[0]


def _in_input_px(
    dets: list[FrameDetection], scale: tuple[float, float], ref: float
) -> list[FrameDetection]:
    """Detections with their boxes in the network's input px, as the set's boxes are (``ref``
    of those per px of a 320×240 frame)."""
    if scale == (1.0, 1.0):
        return dets
    sx, sy = scale
    return [
        dataclasses.replace(
            d, box=(d.box[0] / sx, d.box[1] / sy, d.box[2] / sx, d.box[3] / sy), px=ref
        )
        for d in dets
    ]


_SIGN_CLASS = {"stop": DetectionClass.STOP_SIGN, "yield": DetectionClass.YIELD_SIGN}


def as_reported(ds: list[FrameDetection], cfg: PerceiverSettings) -> list[FrameDetection]:
    """A frame's detections with the classes the perceiver reports: its sign boxes reduced to
    one per sign (``one_box_per_sign``, as the tracker takes them) and each of the type the
    classifier read in it (a ``limit_*`` reading is a speed-limit sign). The detector's sign
    class only proposes: it boxes one sign as a limit and again, from the same cell, as a stop
    sign, and the classifier's reading is what the perceiver reports (``PerceptionOutput``'s
    signs). A box the classifier did not read (at the image's edge, or a head boxed as a sign)
    keeps the detector's class. A vehicle's or pedestrian's box that is a part of another box
    of its group is dropped, as the perceiver drops it before tracking (``ranked_parts``). Light
    boxes are as the detector gave them."""
    out = [d for d in ds if d.group == "light"]
    for group in ("vehicle", "pedestrian"):
        objs = [d for d in ds if d.group == group]
        parts = ranked_parts(
            np.array([d.box for d in objs]).reshape(-1, 4),
            np.array([d.score for d in objs]),
            cfg.score_threshold,
            cfg.part_overlap,
            cfg.part_rise,
        )
        out += [d for i, d in enumerate(objs) if i not in parts]
    signs = [d for d in ds if d.group == "sign"]
    keep = one_box_per_sign(
        [d.box for d in signs], [d.score for d in signs], cfg.nms_iou, cfg.sign_contain
    )
    for d in (signs[i] for i in keep):
        if d.label is None:
            out.append(d)
        elif d.label.startswith("limit_"):
            out.append(dataclasses.replace(d, cls=DetectionClass.SPEED_LIMIT_SIGN))
        else:
            out.append(dataclasses.replace(d, cls=_SIGN_CLASS[d.label]))
    return out


def ranked_parts(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, overlap: float, rise: float
) -> set[int]:
    """Indices of the boxes of one group of a frame's ranked list that the perceiver drops as
    parts of another box (``object_parts``) at any cut of the list that holds them: box i is a
    part of a box j (``part_of``) whose score is at least i's or the operating ``threshold``,
    whichever is lower. At the operating cut this is ``object_parts`` of the boxes over it;
    below it, the perceiver run at i's score. ``boxes`` (n, 4) ``x0, y0, x1, y1``."""
    part = part_of(boxes, boxes, overlap, rise)  # [i, j]: box i is a part of box j
    np.fill_diagonal(part, False)
    held = scores[None] >= np.minimum(scores, threshold)[:, None]  # [i, j]: j is in i's cut
    return {int(i) for i in np.flatnonzero((part & held).any(axis=1))}


def _coco_map(
    data: DetectionSet, coco_all: dict[str, Any], dets: list[list[FrameDetection]], s: EvalSettings
) -> dict[str, Any]:
    ids = set(data.image_ids)
    images = [im for im in coco_all["images"] if int(im["id"]) in ids]
    anns = []
    for a in coco_all["annotations"]:
        if int(a["image_id"]) not in ids:
            continue
        a = dict(a)
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        anns.append(a)
    by_id = {int(im["id"]): im for im in images}
    for a in anns:
        h = float(by_id[int(a["image_id"])].get("height", 240))
        occ = float(a.get("occlusion", 0.0) or 0.0)
        small = a["bbox"][3] * 240.0 / h < s.min_height_px
        a["iscrowd"] = int(bool(a.get("iscrowd", 0)) or occ >= s.hidden or small)
    gt = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": int(c), "name": c.name.lower()} for c in DetectionClass],
    }
    results = []
    for i, ds in enumerate(dets):
        sx, sy = (float(v) for v in data.scales[i])
        for d in ds:
            x0, y0, x1, y1 = d.box  # network input px
            results.append(
                {
                    "image_id": data.image_ids[i],
                    "category_id": int(d.cls),
                    "bbox": [x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy],
                    "score": d.score,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        if not results:
            return {"mAP": 0.0, "mAP50": 0.0, "per_class": {}}
        cd = cg.loadRes(results)
        ev = COCOeval(cg, cd, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]  # (T, R, K, A, M)
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, -1]
        n_gt = sum(1 for a in anns if a["category_id"] == cat and not a["iscrowd"])
        if n_gt == 0:
            continue
        ap = float(np.mean(p[p > -1])) if (p > -1).any() else 0.0
        p50 = prec[0, :, k, 0, -1]
        ap50 = float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else 0.0
        per_class[CLASS_NAMES[cat - 1]] = {"AP": ap, "AP50": ap50, "instances": n_gt}
    return {
        "mAP": float(ev.stats[0]),
        "mAP50": float(ev.stats[1]),
        "per_class": per_class,
        "ignored_regions": sum(a["iscrowd"] for a in anns),
    }


def _match(gt_boxes: torch.Tensor, det_boxes: torch.Tensor) -> list[int]:
    """Greedy IoU ≥ 0.5 match: for each ground-truth box the detection index, or -1."""
    out = [-1] * len(gt_boxes)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return out
    iou = box_iou(gt_boxes, det_boxes)
    used: set[int] = set()
    for flat in torch.argsort(iou.flatten(), descending=True).tolist():
        g, d = divmod(flat, len(det_boxes))
        if iou[g, d] < 0.5:
            break
        if out[g] == -1 and d not in used:
            out[g] = d
            used.add(d)
    return out


def _size_bins(low: float, cuts: tuple[float, ...]) -> tuple[Callable[[float], str], list[str]]:
    """Size bins from ``low`` up, cut at ``cuts`` (px): a function naming a size's bin (sizes
    are at least ``low``), and the names in order: ``6-8``, ``8-12``, ..., ``16+``."""
    edges = (low, *cuts, math.inf)
    names = [f"{a:g}-{b:g}" if b < math.inf else f"{a:g}+" for a, b in itertools.pairwise(edges)]

    def size_bin(size: float) -> str:
        return names[max(k for k in range(len(names)) if size >= edges[k])]

    return size_bin, names


def _reading(
    data: DetectionSet,
    dets: list[list[FrameDetection]],
    perceiver: LearnedPerceiver,
    s: EvalSettings,
    reads: list[Path] | None = None,
) -> dict[str, Any]:
    ccfg: StnClassifierConfig = perceiver.ccfg
    red_as_green = {"detected": 0, "gt": 0}
    confusion: dict[str, dict[str, int]] = {}
    size_bin, names = _size_bins(s.min_read_px, s.read_bins_px)
    ref = _ref_px(data)
    # per group and size bin: instances, read right on true boxes, detected and read, read right,
    # detected but not read (the perceiver reads no box at the image's edge)
    by_size = {g: {n: [0, 0, 0, 0, 0] for n in names} for g in ("sign", "light")}

    def sure_green(label: str | None, prob: float) -> bool:
        return label == "light_green" and prob >= perceiver.cfg.green_min_prob

    for i in range(len(data)):
        boxes, labels = data.boxes[i], data.labels[i]
        keep = [
            j for j in range(len(boxes))
            if GROUP[DetectionClass(int(labels[j]) + 1)] in ("sign", "light")
            and readable(data, i, j)
            and float(min(boxes[j, 2:] - boxes[j, :2])) / ref >= s.min_read_px
        ]  # fmt: skip
        if not keep:
            continue
        ds = dets[i]
        det_boxes = torch.tensor([d.box for d in ds]).reshape(-1, 4)
        match = _match(boxes[keep], det_boxes)
        # the true boxes cut from the image at its own size, as the perceiver cuts its boxes
        # (from the classifier's own set of the views where there is one)
        rgb, (sx, sy) = _native(data, i)
        if reads is not None:
            rgb = read_rgb(reads[i])
            sx, sy = rgb.shape[1] / data.images.shape[3], rgb.shape[0] / data.images.shape[2]
        img = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        crops = crop_boxes(
            img.float().to(perceiver.device) / 255.0,
            (boxes[keep] * torch.tensor([sx, sy, sx, sy])).to(perceiver.device),
            torch.zeros(len(keep), dtype=torch.long, device=perceiver.device),
            ccfg.crop,
            ccfg.margin,
        )
        with torch.inference_mode():
            logits = perceiver.classifier(crops)
        for n, j in enumerate(keep):
            cls = int(labels[j])
            group = GROUP[DetectionClass(cls + 1)]
            mask = perceiver._masks[group]
            p = torch.softmax(logits[n].masked_fill(~mask, -math.inf), 0)
            gt_read = ccfg.labels[int(p.argmax())]
            red = False
            if group == "sign":
                truth = _sign_label(cls, float(data.values[i][j]))
            else:
                state = int(data.states[i][j])
                if not 0 <= state < 4:
                    continue
                truth = f"light_{LightState(state).name.lower()}"
                red = state == LightState.RED
                red_as_green["gt"] += red and sure_green(gt_read, float(p.max()))
            tally = by_size[group][size_bin(float(min(boxes[j, 2:] - boxes[j, :2])) / ref)]
            tally[0] += 1
            tally[1] += gt_read == truth
            if match[n] < 0 or ds[match[n]].group != group:
                continue
            d = ds[match[n]]
            if d.label is None:
                tally[4] += 1
                continue
            tally[2] += 1
            tally[3] += d.label == truth
            red_as_green["detected"] += red and sure_green(d.label, d.label_prob)
            row = confusion.setdefault(str(truth), {})
            row[str(d.label)] = row.get(str(d.label), 0) + 1

    def summary(group: str) -> dict[str, Any]:
        n, gt_ok, m, ok, unread = (sum(col) for col in zip(*by_size[group].values(), strict=True))
        return {
            "instances": n,
            "detected": m,
            "accuracy_detected": _ratio(ok, m),
            "detected_not_read": unread,
            "accuracy_gt_boxes": _ratio(gt_ok, n),
            "by_min_side_px": {
                name: {
                    "instances": bn,
                    "accuracy_gt_boxes": _ratio(bgt, bn),
                    "detected": bm,
                    "accuracy_detected": _ratio(bok, bm),
                    "detected_not_read": bun,
                }
                for name, (bn, bgt, bm, bok, bun) in by_size[group].items()
            },
        }

    return {
        "signs": {**summary("sign"), "min_side_px": s.min_read_px},
        "lights": {
            **summary("light"),
            "red_called_green": red_as_green["detected"],
            "red_called_green_gt_boxes": red_as_green["gt"],
        },
        "confusion": confusion,
    }


def _found(data: DetectionSet, dets: list[list[FrameDetection]], s: EvalSettings) -> dict[str, Any]:
    """Per road-user group and box height (px): annotated boxes, and those the perceiver's boxes
    find (its group, IoU ≥ 0.5). Crowds, boxes hidden from ``s.hidden`` on and boxes under
    ``s.min_height_px`` are COCO's ignored regions; they count for neither."""
    size_bin, names = _size_bins(s.min_height_px, s.found_bins_px)
    tally = {g: {n: [0, 0] for n in names} for g in ("vehicle", "pedestrian")}
    for i in range(len(data)):
        boxes = data.boxes[i]
        heights = (boxes[:, 3] - boxes[:, 1]) / _ref_px(data)  # px of a 320×240 frame
        ignored = data.crowd[i] | (data.occlusion[i] >= s.hidden) | (heights < s.min_height_px)
        groups = [GROUP[DetectionClass(int(c) + 1)] for c in data.labels[i]]
        for group, bins in tally.items():  # matched within the group: another's box finds none
            theirs = torch.tensor([g == group for g in groups], dtype=torch.bool)
            gt_boxes = boxes.masked_fill((ignored | ~theirs)[:, None], 0.0)  # zero: matches none
            det_boxes = torch.tensor([d.box for d in dets[i] if d.group == group]).reshape(-1, 4)
            for j, m in enumerate(_match(gt_boxes, det_boxes)):
                if groups[j] == group and not bool(ignored[j]):
                    cell = bins[size_bin(float(heights[j]))]
                    cell[0] += 1
                    cell[1] += m >= 0
    out: dict[str, Any] = {}
    for g, bins in tally.items():
        n, found = sum(v[0] for v in bins.values()), sum(v[1] for v in bins.values())
        by_height = {
            k: {"instances": v[0], "found": v[1], "recall": _ratio(v[1], v[0])}
            for k, v in bins.items()
        }
        out[g] = {"instances": n, "found": found, "recall": _ratio(found, n)}
        out[g]["by_height_px"] = by_height
    return out


def _position_error(data: DetectionSet, dets: list[list[FrameDetection]]) -> dict[str, Any]:
    errs: dict[str, list[tuple[float, float]]] = {"vehicle": [], "pedestrian": []}
    for i in range(len(data)):
        pos = data.positions[i]
        if len(pos) == 0 or data.intrinsics[i] is None:
            continue
        ds = dets[i]
        det_boxes = torch.tensor([d.box for d in ds]).reshape(-1, 4)
        gt_boxes = data.boxes[i].masked_fill(data.crowd[i][:, None], 0.0)  # crowds match nothing
        match = _match(gt_boxes, det_boxes)
        for j, m in enumerate(match):
            group = GROUP[DetectionClass(int(data.labels[i][j]) + 1)]
            if m < 0 or group not in errs or not torch.isfinite(pos[j]).all():
                continue
            if float(data.occlusion[i][j]) >= 0.5:
                continue
            gx, gy = float(pos[j, 0]), float(pos[j, 1])
            errs[group].append((math.hypot(ds[m].x - gx, ds[m].y - gy), math.hypot(gx, gy)))
    out: dict[str, Any] = {}
    for g, e in errs.items():
        if not e:
            out[g] = None
            continue
        a = np.array(e)
        bins = {}
        for lo, hi in ((0, 20), (20, 40), (40, 1000)):
            sel = (a[:, 1] >= lo) & (a[:, 1] < hi)
            if sel.any():
                bins[f"{lo}-{hi if hi < 1000 else 'inf'}m"] = {
                    "n": int(sel.sum()),
                    "median": float(np.median(a[sel, 0])),
                    "rel_median": float(np.median(a[sel, 0] / np.maximum(a[sel, 1], 1.0))),
                }
        out[g] = {"n": len(a), "median": float(np.median(a[:, 0])), "mean": float(a[:, 0].mean()),
                  "p90": float(np.quantile(a[:, 0], 0.9)), "by_range": bins}  # fmt: skip
    return out


def _latency(
    perceiver: LearnedPerceiver, data: DetectionSet, n: int, reads: list[Path] | None = None
) -> dict[str, Any]:
    picks = [i % len(data) for i in range(min(n, max(len(data), 1) * 10))]
    frames = [dataset_frame(data, i)[0] for i in picks]
    rgbs = [read_rgb(reads[i]) if reads is not None else None for i in picks]
    for f, r in zip(frames[:5], rgbs[:5], strict=True):
        perceiver.detect(f, r)  # warm-up
    times = []
    for f, r in zip(frames, rgbs, strict=True):
        t0 = time.perf_counter()
        perceiver.detect(f, r)
        if perceiver.device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    x = torch.zeros(1, 3, *perceiver.input_hw, device=perceiver.device)
    det_times = []
    with torch.inference_mode():
        for _ in range(len(frames)):
            t0 = time.perf_counter()
            perceiver.detector(x)
            det_times.append((time.perf_counter() - t0) * 1000)
    return {
        "frames": len(times),
        "median": float(np.median(times)),
        "p95": float(np.quantile(times, 0.95)),
        "detector_only_median": float(np.median(det_times)),
        "input_hw": list(perceiver.input_hw),
    }


def processor(device: str) -> str:
    """The chip the latency was measured on: the GPU's name, or the CPU's model and the
    vector instructions torch uses on it."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def format_table(r: dict[str, Any]) -> str:
    """The figures as a plain-text table for people."""
    c = r["coco"]
    cd = r["coco_detector"]  # the same true boxes, so the same classes
    lines = [
        f"{r['detector']}  on {r['data']} [{r['split']}]  ({r['images']} images)"
        + (f", signs and lights read from {r['read_data']}" if r.get("read_data") else ""),
        f"{'class':<18}{'AP@[.5:.95]':>12}{'AP@.5':>8}{'instances':>11}"
        f"{'detector, own classes:':>26}{'AP@[.5:.95]':>12}{'AP@.5':>8}",
    ]
    for name, v in c["per_class"].items():
        d = cd["per_class"][name]
        lines.append(
            f"{name:<18}{v['AP']:>12.3f}{v['AP50']:>8.3f}{v['instances']:>11d}"
            f"{'':>26}{d['AP']:>12.3f}{d['AP50']:>8.3f}"
        )
    lines.append(
        f"{'all':<18}{c['mAP']:>12.3f}{c['mAP50']:>8.3f}{'':>37}{cd['mAP']:>12.3f}{cd['mAP50']:>8.3f}"
    )
    sg, lt = r["signs"], r["lights"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f} %"

    lines += [
        f"sign type/value   {pct(sg['accuracy_detected'])} of {sg['detected']} detected "
        f"(classifier on true boxes {pct(sg['accuracy_gt_boxes'])} of {sg['instances']})",
        f"light state       {pct(lt['accuracy_detected'])} of {lt['detected']} detected "
        f"(true boxes {pct(lt['accuracy_gt_boxes'])} of {lt['instances']}); red called green: "
        f"{lt['red_called_green']} (true boxes {lt['red_called_green_gt_boxes']})",
        f"not read          {sg['detected_not_read']} detected signs and "
        f"{lt['detected_not_read']} lights at the image's edge (the perceiver reads none)",
    ]
    for name, group in (("signs", sg), ("lights", lt)):
        cells = [
            f"{k} px {pct(v['accuracy_detected'])} of {v['detected']}"
            for k, v in group.get("by_min_side_px", {}).items()
            if v["detected"]
        ]
        if cells:
            lines.append(f"  {name} by min side, detected: " + "; ".join(cells))
    for g, f in r.get("found", {}).items():
        if f["instances"]:
            cells = [
                f"{k} px {v['found']} of {v['instances']}"
                for k, v in f["by_height_px"].items()
                if v["instances"]
            ]
            lines.append(f"found {g:<12}{pct(f['recall'])}; by height: " + "; ".join(cells))
    for g, e in r["position_error_m"].items():
        if e:
            lines.append(
                f"position {g:<9} median {e['median']:.2f} m, p90 {e['p90']:.2f} m "
                f"({e['n']} matched)"
            )
    la = r["latency_ms"]
    lines.append(
        f"latency           median {la['median']:.1f} ms, p95 {la['p95']:.1f} ms per frame "
        f"(detector alone {la['detector_only_median']:.1f} ms; {r['device']}, "
        f"{r['threads']} thread(s), {r['processor']})"
    )
    return "\n".join(lines)


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=2) + "\n")


__all__ = ["EvalSettings", "evaluate", "format_table", "split_ids", "write_json"]
