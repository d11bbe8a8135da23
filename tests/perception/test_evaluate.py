"""``perception eval``: COCO figures on the detector's whole ranked list, crowds ignored, and
readings counted as the perceiver makes them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from perception import evaluate as evaluate_module
from perception import perceiver as perceiver_module
from perception.data import DatasetError, DetectionSet
from perception.evaluate import (
    EvalSettings,
    _coco_map,
    _found,
    _reading,
    as_reported,
    evaluate,
    ranked_parts,
)
from perception.models.stn_classifier import StnClassifier, StnClassifierConfig, crop_boxes
from perception.perceiver import WEIGHTS_DIR, FrameDetection, PerceiverSettings, object_parts
from sim.messages import DetectionClass, LightState
from tests.perception.synthetic import make_dataset


def _gt(boxes: list[list[float]]) -> dict[str, Any]:
    anns = [
        {"id": k + 1, "image_id": 0, "category_id": int(DetectionClass.VEHICLE), "bbox": b}
        for k, b in enumerate(boxes)
    ]
    return {"images": [{"id": 0, "width": 320, "height": 240}], "annotations": anns}


def _det(x: float, score: float) -> FrameDetection:
    return FrameDetection(
        "vehicle", DetectionClass.VEHICLE, (x, 100.0, x + 20.0, 120.0), score, 10.0, 0.0
    )


def _one_image(
    boxes: torch.Tensor,
    classes: list[DetectionClass],
    states: list[int] | None = None,
    crowd: list[bool] | None = None,
    scale: int = 1,
) -> DetectionSet:
    n = len(boxes)
    return DetectionSet(
        images=torch.zeros(1, 3, 240 * scale, 320 * scale, dtype=torch.uint8),
        boxes=[boxes],
        labels=[torch.tensor([int(c) - 1 for c in classes])],
        values=[torch.zeros(n)],
        states=[torch.tensor(states or [-1] * n)],
        occlusion=[torch.zeros(n)],
        truncation=[torch.zeros(n)],
        crowd=[torch.tensor(crowd or [False] * n)],
        positions=[torch.full((n, 3), float("nan"))],
        image_ids=[0],
        scales=torch.ones(1, 2),
        intrinsics=[None],
        poses=[None],
        source=Path("synthetic"),
    )


def test_a_low_scored_true_box_still_counts_and_a_missing_one_halves_recall() -> None:
    data: Any = SimpleNamespace(image_ids=[0], scales=[(1.0, 1.0)])
    gt = _gt([[10.0, 100.0, 20.0, 20.0], [200.0, 100.0, 20.0, 20.0]])
    both = _coco_map(data, gt, [[_det(10.0, 0.9), _det(200.0, 0.05)]], EvalSettings())
    assert both["mAP"] == pytest.approx(1.0)
    # cut at an operating threshold the second car is never ranked: recall stops at half
    cut = _coco_map(data, gt, [[_det(10.0, 0.9)]], EvalSettings())
    assert cut["mAP"] == pytest.approx(0.5, abs=0.01)
    assert both["per_class"]["vehicle"]["instances"] == 2


def test_a_detection_on_a_crowd_region_is_neither_hit_nor_false_alarm() -> None:
    data: Any = SimpleNamespace(image_ids=[0], scales=[(1.0, 1.0)])
    gt = _gt([[10.0, 100.0, 20.0, 20.0], [200.0, 100.0, 20.0, 20.0]])
    dets = [[_det(10.0, 0.5), _det(200.0, 0.9)]]  # the far car scores higher
    assert _coco_map(data, gt, dets, EvalSettings())["mAP"] == pytest.approx(1.0)
    gt["annotations"][1]["iscrowd"] = 1  # the collector found it too small to annotate
    seen = _coco_map(data, gt, dets, EvalSettings())
    assert seen["mAP"] == pytest.approx(1.0) and seen["per_class"]["vehicle"]["instances"] == 1
    gt["annotations"].pop(1)  # left out, as the collector did before: the car is a false alarm
    assert _coco_map(data, gt, dets, EvalSettings())["mAP"] < 0.6


def _sign(cls: DetectionClass, x: float, score: float, label: str | None) -> FrameDetection:
    return FrameDetection("sign", cls, (x, 50.0, x + 12.0, 62.0), score, 20.0, 3.0, label)


def test_a_sign_is_scored_as_the_type_the_classifier_reads_in_its_one_box() -> None:
    """The detector boxes a stop sign as a limit (0.6) and, from the same cell, as a stop sign
    (0.3); the classifier reads "stop" in both. Reported: one box, a stop sign, scored 0.6."""
    data: Any = SimpleNamespace(image_ids=[0], scales=[(1.0, 1.0)])
    gt = _gt([[10.0, 100.0, 20.0, 20.0]])
    gt["annotations"].append(
        {
            "id": 2,
            "image_id": 0,
            "category_id": int(DetectionClass.STOP_SIGN),
            "bbox": [100.0, 50.0, 12.0, 12.0],
        }
    )
    dets = [
        _det(10.0, 0.9),
        _sign(DetectionClass.SPEED_LIMIT_SIGN, 100.0, 0.6, "stop"),
        _sign(DetectionClass.STOP_SIGN, 100.0, 0.3, "stop"),
    ]
    reported = as_reported(dets, PerceiverSettings())
    assert [(d.cls, d.score) for d in reported] == [
        (DetectionClass.VEHICLE, 0.9),
        (DetectionClass.STOP_SIGN, 0.6),
    ]
    assert _coco_map(data, gt, [reported], EvalSettings())["mAP"] == pytest.approx(1.0)
    # with the detector's own classes, a sign boxed only as a limit misses the stop sign
    own = _coco_map(data, gt, [dets[:2]], EvalSettings())["per_class"]
    assert own["stop_sign"]["AP"] == 0.0
    assert _coco_map(data, gt, [as_reported(dets[:2], PerceiverSettings())], EvalSettings())[
        "mAP"
    ] == pytest.approx(1.0)


def test_a_sign_box_not_read_keeps_the_detectors_class_and_limits_are_speed_limit_signs() -> None:
    dets = [
        _sign(DetectionClass.STOP_SIGN, 0.0, 0.5, None),  # at the image's edge: not read
        _sign(DetectionClass.STOP_SIGN, 100.0, 0.5, "limit_30"),
        _sign(DetectionClass.SPEED_LIMIT_SIGN, 200.0, 0.5, "yield"),
    ]
    reported = as_reported(dets, PerceiverSettings())
    assert [d.cls for d in reported] == [
        DetectionClass.STOP_SIGN,
        DetectionClass.SPEED_LIMIT_SIGN,
        DetectionClass.YIELD_SIGN,
    ]
    assert [d.box for d in reported] == [d.box for d in dets]


def test_ranked_parts_at_the_operating_cut_are_the_perceivers_object_parts() -> None:
    cfg = PerceiverSettings()
    rng = np.random.default_rng(0)
    dropped = 0
    for _ in range(200):
        n = int(rng.integers(2, 9))
        xy = rng.uniform(0.0, 60.0, (n, 2))
        wh = rng.uniform(2.0, 40.0, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        scores = rng.uniform(cfg.score_threshold, 1.0, n)
        want = object_parts([tuple(b) for b in boxes], cfg.part_overlap, cfg.part_rise)
        got = ranked_parts(boxes, scores, cfg.score_threshold, cfg.part_overlap, cfg.part_rise)
        assert got == want
        dropped += len(got)
    assert dropped > 20  # the draw holds parts to drop


def test_a_part_is_dropped_at_every_cut_that_holds_its_whole() -> None:
    """A person's upper half (y 0-10) inside the whole box (y 0-20). Over the operating cut
    (0.35) the part goes whenever the whole is over it too; under it, the perceiver run at the
    part's score would hold the whole only if it scores at least as much."""
    boxes = np.array([[0.0, 0.0, 10.0, 20.0], [1.0, 0.0, 9.0, 10.0]])

    def parts(whole: float, part: float) -> set[int]:
        return ranked_parts(boxes, np.array([whole, part]), 0.35, 0.7, 0.25)

    assert parts(0.5, 0.9) == {1}  # both acted on: the perceiver drops the part
    assert parts(0.2, 0.9) == set()  # the whole under the cut: the part is reported
    assert parts(0.2, 0.1) == {1}
    assert parts(0.05, 0.1) == set()
    assert ranked_parts(boxes[::-1], np.array([0.9, 0.5]), 0.35, 0.7, 0.25) == {0}


def test_a_vehicles_part_is_not_scored_as_a_false_alarm() -> None:
    """The detector boxes a car whole (0.8) and its upper half (0.9, above the whole's): with
    the detector's list the half is a false alarm ranked first; the perceiver drops it."""
    data: Any = SimpleNamespace(image_ids=[0], scales=[(1.0, 1.0)])
    gt = _gt([[10.0, 100.0, 20.0, 20.0]])
    whole = _det(10.0, 0.8)
    half = FrameDetection(
        "vehicle", DetectionClass.VEHICLE, (11.0, 100.0, 29.0, 108.0), 0.9, 10.0, 0.0
    )
    own = _coco_map(data, gt, [[whole, half]], EvalSettings())
    assert own["mAP"] == pytest.approx(0.5, abs=0.01)
    reported = as_reported([whole, half], PerceiverSettings())
    assert reported == [whole]
    assert _coco_map(data, gt, [reported], EvalSettings())["mAP"] == pytest.approx(1.0)


@pytest.mark.parametrize("scale", [1, 2])
def test_a_head_detected_at_the_image_edge_is_not_read_and_not_scored_as_a_reading(
    scale: int,
) -> None:
    """... and a head narrower than ``min_read_px`` (px of a 320×240 frame) is not scored, at
    twice the size too."""
    ccfg = StnClassifierConfig()
    perceiver: Any = SimpleNamespace(
        ccfg=ccfg,
        classifier=StnClassifier(ccfg).eval(),
        device=torch.device("cpu"),
        cfg=PerceiverSettings(),
        _masks={g: ccfg.group_mask(g) for g in ("sign", "light")},
    )
    heads = scale * torch.tensor(
        [[0.0, 40.0, 10.0, 60.0], [100.0, 40.0, 110.0, 60.0], [200.0, 40.0, 205.0, 55.0]]
    )
    red = int(LightState.RED)
    data = _one_image(heads, [DetectionClass.TRAFFIC_LIGHT] * 3, states=[red] * 3, scale=scale)

    def det(box: list[float], label: str | None) -> FrameDetection:
        b = (box[0], box[1], box[2], box[3])
        return FrameDetection("light", DetectionClass.TRAFFIC_LIGHT, b, 0.9, 20.0, 0.0, label, 0.99)

    dets = [[det(heads[0].tolist(), None), det(heads[1].tolist(), "light_red")]]
    lights = _reading(data, dets, perceiver, EvalSettings())["lights"]
    assert lights["detected"] == 1 and lights["accuracy_detected"] == 1.0
    assert lights["detected_not_read"] == 1 and lights["instances"] == 2


@pytest.mark.parametrize("scale", [1, 2])
def test_road_users_found_by_height_count_only_boxes_of_their_group(scale: int) -> None:
    """... with heights in px of a 320×240 frame: a set at twice the size (a detector on
    640×480 frames) is scored as its 320×240 twin."""
    ped, car = DetectionClass.PEDESTRIAN, DetectionClass.VEHICLE
    boxes = scale * torch.tensor(
        [
            [100.0, 100.0, 103.0, 111.0],  # a pedestrian 11 px tall, 25 m away: found
            [150.0, 100.0, 156.0, 120.0],  # 20 px tall, boxed as a vehicle: not found
            [10.0, 100.0, 70.0, 140.0],  # a car 40 px tall, not boxed
            [200.0, 100.0, 202.0, 106.0],  # a crowd region: neither
        ]
    )
    data = _one_image(boxes, [ped, ped, car, ped], crowd=[False, False, False, True], scale=scale)

    def det(box: torch.Tensor, cls: DetectionClass) -> FrameDetection:
        b = tuple(float(v) for v in box)
        return FrameDetection(cls.name.lower(), cls, (b[0], b[1], b[2], b[3]), 0.9, 10.0, 0.0)

    # the pedestrian is also boxed as a car, tighter: its own group's box still finds it
    ped_box = boxes[0] + scale * torch.tensor([0.0, 0.0, 0.0, 1.0])
    dets = [[det(boxes[0], car), det(ped_box, ped), det(boxes[1], car), det(boxes[3], ped)]]
    found = _found(data, dets, EvalSettings())
    assert found["pedestrian"]["instances"] == 2 and found["pedestrian"]["found"] == 1
    assert found["pedestrian"]["by_height_px"]["8-16"] == {
        "instances": 1,
        "found": 1,
        "recall": 1.0,
    }
    assert found["pedestrian"]["by_height_px"]["16-32"]["found"] == 0
    assert found["vehicle"]["by_height_px"]["32+"] == {"instances": 1, "found": 0, "recall": 0.0}
    assert found["vehicle"]["by_height_px"]["4-8"]["recall"] is None


def _twice_as_large(src: Path, dst: Path) -> Path:
    """A copy of a dataset with every image and box twice the size (each pixel made 2×2): the
    perceiver, averaging a frame down to its detector's input, sees the original images."""
    coco = json.loads((src / "annotations.json").read_text())
    (dst / "images").mkdir(parents=True)
    for im in coco["images"]:
        img = cv2.imread(str(src / im["file_name"]))
        assert img is not None
        big = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
        cv2.imwrite(str(dst / im["file_name"]), big)
        im["width"], im["height"] = 2 * im["width"], 2 * im["height"]
        K = np.array(im["K"])  # pixel centres at integers: c' = 2 (c + 1/2) - 1/2
        K[:2, :2] *= 2
        K[:2, 2] = 2 * (K[:2, 2] + 0.5) - 0.5
        im["K"] = K.tolist()
    for a in coco["annotations"]:
        a["bbox"] = [2 * v for v in a["bbox"]]
        a["area"] = 4 * a["area"]
    (dst / "annotations.json").write_text(json.dumps(coco))
    return dst


def test_a_set_at_twice_the_detectors_size_is_scored_in_its_own_pixels(tmp_path: Path) -> None:
    # The shipped networks on a synthetic set at the detector's 320×240 and on the same set at
    # 640×480: the detector sees the same images (each 2×2 block averages to its pixel), so
    # every COCO figure, road user found and position is the same; boxes are scored in each
    # set's own pixels.
    small = make_dataset(tmp_path / "small", n_images=6, size=(320, 240))
    large = _twice_as_large(small, tmp_path / "large")
    settings = EvalSettings(split="all", latency_frames=1)
    a, b = (
        evaluate(WEIGHTS_DIR / "cnn.safetensors", WEIGHTS_DIR / "stn.safetensors", d, settings)
        for d in (small, large)
    )
    assert a["coco"]["per_class"] and b["coco"]["per_class"].keys() == a["coco"]["per_class"].keys()
    for name, ap in a["coco"]["per_class"].items():
        assert b["coco"]["per_class"][name] == pytest.approx(ap, abs=1e-6), name
    assert (b["coco"]["mAP"], b["coco"]["mAP50"]) == pytest.approx(
        (a["coco"]["mAP"], a["coco"]["mAP50"])
    )
    assert b["found"] == a["found"]
    assert b["position_error_m"] == pytest.approx(a["position_error_m"], abs=1e-3)
    for group in ("signs", "lights"):  # read on the same boxes, cut from the larger images
        assert b[group]["instances"] == a[group]["instances"]


def test_a_second_set_of_the_views_gives_the_classifier_its_crops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --read-data: the detector boxes the 320×240 set, the classifier reads the 640×480 set's
    # images of the same views. The detector's COCO figures are the small set's, and the
    # readings (and the signs' types in the reported boxes' COCO) those the perceiver makes of
    # the large set (whose frames the detector sees averaged to the small).
    small = make_dataset(tmp_path / "small", n_images=6, size=(320, 240), seed=0)
    large = _twice_as_large(small, tmp_path / "large")
    settings = EvalSettings(split="all", latency_frames=1)
    det, clf = WEIGHTS_DIR / "cnn.safetensors", WEIGHTS_DIR / "stn.safetensors"
    cut_from: list[tuple[int, int]] = []  # (rows, columns) of each image crops are cut from

    def crops(images: torch.Tensor, *args: Any) -> torch.Tensor:
        cut_from.append((images.shape[-2], images.shape[-1]))
        return crop_boxes(images, *args)

    for module in (evaluate_module, perceiver_module):  # true boxes, and the detector's
        monkeypatch.setattr(module, "crop_boxes", crops)
    a = evaluate(det, clf, small, settings)
    assert cut_from and set(cut_from) == {(240, 320)}
    cut_from.clear()
    r = evaluate(det, clf, small, settings, read_dir=large)
    assert cut_from and set(cut_from) == {(480, 640)}
    b = evaluate(det, clf, large, settings)
    assert r["read_data"] == str(large) and a["read_data"] is None
    assert r["coco_detector"] == a["coco_detector"] and r["found"] == a["found"]
    assert r["position_error_m"] == a["position_error_m"]
    for group in ("signs", "lights"):
        assert r[group] == b[group], group
    assert r["confusion"] == b["confusion"]
    # a set of other views is refused, naming the image it lacks
    coco = json.loads((large / "annotations.json").read_text())
    coco["images"][0]["file_name"] = "images/elsewhere.png"
    (large / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=r"--read-data .*: no image images/.* with id"):
        evaluate(det, clf, small, settings, read_dir=large)
