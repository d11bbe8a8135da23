"""``perception collect``: a COCO file pycocotools loads and COCOeval scores, split by episode."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from launch.cli import main
from perception.data import crop_label, crop_targets, load_split
from perception.dataset import DatasetSettings, assign_splits, coco_box, frame_annotations
from perception.models.stn_classifier import StnClassifierConfig
from sim.messages import CameraFrame, DetectionClass, LightState
from tests.perception.synthetic import make_dataset


def _collect(out: Path) -> dict[str, Any]:
    args = ["perception", "collect", "--scenario", "town_small_tour", "--scenario", "red_lights"]
    args += ["--frames", "3", "--episodes", "2", "--every", "20", "--seed", "4"]
    args += ["--width", "320", "--height", "240", "--out", str(out)]
    assert main(args) == 0
    return json.loads((out / "annotations.json").read_text())


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("data")
    return out, _collect(out)


def test_the_file_loads_with_pycocotools_and_gt_as_detections_scores_ap_1(
    collected: tuple[Path, dict[str, Any]],
) -> None:
    out, data = collected
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out / "annotations.json"))
    assert len(gt.getImgIds()) == 12  # 2 scenarios × 2 episodes × 3 frames
    assert len(gt.getAnnIds()) > 10
    assert {c["id"] for c in data["categories"]} == {int(c) for c in DetectionClass}
    for im in data["images"]:
        assert (out / im["file_name"]).is_file()
    dets = [{**a, "score": 1.0} for a in data["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    assert ev.stats[1] == pytest.approx(1.0)  # AP@.5


def test_annotations_carry_sign_values_light_states_and_labels(
    collected: tuple[Path, dict[str, Any]],
) -> None:
    _, data = collected
    anns = data["annotations"]
    by_cat: dict[int, list[dict[str, Any]]] = {}
    for a in anns:
        by_cat.setdefault(a["category_id"], []).append(a)
        w, h = a["bbox"][2:]
        assert a["area"] == pytest.approx(w * h, abs=1e-2) and len(a["position_ego"]) == 3
        assert 0 <= a["occlusion"] <= 1 and 0 <= a["truncation"] < 1 and a["visible_px"] >= 1
        annotated = w >= 3 and h >= 3 and a["occlusion"] <= 0.8 and a["visible_px"] >= 12
        assert a["iscrowd"] == int(not annotated)
    assert DetectionClass.VEHICLE in by_cat and len(by_cat) >= 2
    for a in by_cat.get(DetectionClass.SPEED_LIMIT_SIGN, []):
        assert a["sign_value"] in (30.0, 40.0, 50.0)
    for a in by_cat.get(DetectionClass.TRAFFIC_LIGHT, []):
        assert a["light_state"] in {int(s) for s in LightState}
    assert all(a["light_state"] is None for a in by_cat[DetectionClass.VEHICLE])
    assert all(a["sign_value"] is None for a in by_cat[DetectionClass.VEHICLE])
    im = data["images"][0]
    assert np.asarray(im["K"]).shape == (3, 3) and np.asarray(im["pose"]).shape == (4, 4)


def test_splits_are_by_episode(collected: tuple[Path, dict[str, Any]]) -> None:
    _, data = collected
    splits = data["splits"]
    assert set(splits) == {"train", "val", "test"}
    assert all(splits[s] for s in ("train", "val", "test"))  # 4 episodes: each split has one
    all_ids = [i for s in splits.values() for i in s]
    assert sorted(all_ids) == sorted(im["id"] for im in data["images"])
    split_of_episode: dict[tuple[str, int], set[str]] = {}
    for im in data["images"]:
        split_of_episode.setdefault((im["scenario"], im["seed"]), set()).add(im["split"])
    assert len(split_of_episode) == 4
    assert all(len(s) == 1 for s in split_of_episode.values())  # no episode in two splits


def test_split_assignment_is_deterministic_and_order_free() -> None:
    eps = [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1), ("d", 0)]
    s = DatasetSettings()
    one = assign_splits(eps, s, seed=3)
    assert one == assign_splits(list(reversed(eps)), s, seed=3)
    assert sorted(one.values()).count("test") >= 1 and sorted(one.values()).count("val") >= 1
    assert set(assign_splits([("a", 0)], s, 0).values()) == {"train"}
    assert sorted(assign_splits([("a", 0), ("a", 1)], s, 0).values()) == ["test", "train"]


def test_a_larger_set_keeps_each_episode_of_a_smaller_one_in_its_split() -> None:
    """More episodes of each scenario from the same base seed add episodes to every split and move
    none: a test episode of a 4-episode set is a test episode of the 24-episode set."""
    s = DatasetSettings()
    scenarios = [f"scenario_{i}" for i in range(10)]
    small = assign_splits([(n, k) for n in scenarios for k in range(4)], s, seed=0)
    large = assign_splits([(n, k) for n in scenarios for k in range(24)], s, seed=0)
    assert {ep: large[ep] for ep in small} == small
    shares = {
        split: list(large.values()).count(split) / len(large) for split in set(large.values())
    }
    assert abs(shares["test"] - 0.15) < 0.06 and abs(shares["val"] - 0.15) < 0.06
    # a set too small to fill val and test by the hash alone still gets one of each
    few = assign_splits(
        [("a", 0), ("a", 1), ("a", 2)],
        DatasetSettings(val_fraction=0.01, test_fraction=0.01),
        seed=0,
    )
    assert sorted(few.values()) == ["test", "train", "val"]


def test_coco_boxes_move_pixel_centres_to_pixel_corners() -> None:
    assert coco_box(np.array([10.0, 20.0, 30.0, 25.0])) == [10.5, 20.5, 20.0, 5.0]
    assert coco_box(np.array([-0.5, -0.5, 639.5, 479.5])) == [0.0, 0.0, 640.0, 480.0]


def test_frame_annotations_keep_values_and_states_and_mark_unannotatable_boxes_crowd() -> None:
    boxes = np.array(
        [[10, 10, 30, 40], [50, 5, 60, 15], [70, 5, 80, 15], [0, 0, 20, 20], [90, 50, 102, 52],
         [100, 5, 110, 15]], float,
    )  # fmt: skip
    frame = CameraFrame(
        t=1.0,
        frame=20,
        rgb=np.zeros((120, 160, 3), dtype=np.uint8),
        K=np.eye(3),
        pose=np.eye(4),
        boxes=boxes,
        box_class=np.array([3, 4, 1, 1, 1, 1]),
        box_id=np.array([5, 6, 7, 8, 9, 10]),
        box_occlusion=np.array([0.0, 0.1, 0.95, 0.0, 0.0, 1.0]),
        box_truncation=np.zeros(6),
        box_visible_px=np.array([600, 80, 5, 400, 24, 0]),
        box_value=np.array([0.0, 50.0, 0.0, 0.0, 0.0, 0.0]),
        box_state=np.array([int(LightState.RED), -1, -1, -1, -1, -1]),
    )
    anns = frame_annotations(frame, 3, 10, DatasetSettings(), {5: (20.0, -3.0, 2.5)})
    assert [a["track_id"] for a in anns] == [5, 6, 7, 8, 9]  # 10 is wholly hidden
    light, sign, _, car, far = anns
    assert light["light_state"] == LightState.RED and light["sign_value"] is None
    assert light["position_ego"] == [20.0, -3.0, 2.5] and "position_ego" not in sign
    assert sign["sign_value"] == 50.0 and sign["light_state"] is None
    assert [a["id"] for a in anns] == [10, 11, 12, 13, 14] and car["image_id"] == 3
    # 95 % hidden, and a car 2 px tall on the horizon: in view, too little to annotate
    assert [a["iscrowd"] for a in anns] == [0, 0, 1, 0, 1]
    assert far["bbox"][3] == 2.0


def test_the_classifier_learns_and_is_scored_only_on_signs_and_lights_it_can_see(
    tmp_path: Path,
) -> None:
    """A head more than half out of the image (or hidden) shows no lamp to read: no crop."""
    root = make_dataset(tmp_path / "d", n_images=12)
    coco = json.loads((root / "annotations.json").read_text())
    cfg = StnClassifierConfig()
    full = load_split(root, "all", (120, 160))
    n = len(crop_targets(full, cfg, 3.0)[2])
    assert n > 2
    readable_anns = [
        a
        for a in coco["annotations"]
        if crop_label(cfg, a["category_id"] - 1, a["sign_value"] or 0.0, a["light_state"]) >= 0
    ]
    readable_anns[0]["truncation"] = 0.6
    readable_anns[1]["occlusion"] = 0.5
    (root / "annotations.json").write_text(json.dumps(coco))
    assert len(crop_targets(load_split(root, "all", (120, 160)), cfg, 3.0)[2]) == n - 2


def test_a_frame_twice_as_wide_annotates_what_the_detectors_size_does() -> None:
    # the rules' pixel counts are those of a 320-px-wide frame: at 640 px the same objects
    # have twice the sides and four times the visible pixels, and are annotated alike
    boxes = np.array([[10, 10, 30, 40], [50, 5, 52.5, 30], [70, 5, 80, 15], [90, 50, 102, 52]])
    visible = np.array([600, 40, 10, 24])

    def crowds(k: int) -> list[int]:
        frame = CameraFrame(
            t=0.0,
            frame=0,
            rgb=np.zeros((240 * k, 320 * k, 3), dtype=np.uint8),
            K=np.eye(3),
            pose=np.eye(4),
            boxes=boxes * k,
            box_class=np.ones(4, int),
            box_id=np.arange(4),
            box_visible_px=visible * k * k,
        )
        return [a["iscrowd"] for a in frame_annotations(frame, 0, 0, DatasetSettings())]

    # too thin (2.5 px), too few pixels (10), too low (2 px) at 320 columns: crowds at both
    assert crowds(1) == crowds(2) == [0, 1, 1, 1]
    # counted in its own pixels, the 640-px frame would annotate all three
    wide = DatasetSettings(reference_width=640)
    frame = CameraFrame(0.0, 0, np.zeros((480, 640, 3), np.uint8), np.eye(3), np.eye(4),
                        boxes=boxes * 2, box_class=np.ones(4, int), box_id=np.arange(4),
                        box_visible_px=visible * 4)  # fmt: skip
    assert [a["iscrowd"] for a in frame_annotations(frame, 0, 0, wide)] == [0, 0, 0, 0]


def test_several_folders_load_as_one_set_of_each_in_turn(tmp_path: Path) -> None:
    """Read into one tensor from the start, the joined set is each folder's set in order."""
    a = make_dataset(tmp_path / "a", n_images=6, seed=1)
    b = make_dataset(tmp_path / "b", n_images=4, seed=2)
    both = load_split([a, b], "all", (120, 160))
    one, two = load_split(a, "all", (120, 160)), load_split(b, "all", (120, 160))
    assert torch.equal(both.images, torch.cat([one.images, two.images]))
    assert both.image_ids == one.image_ids + two.image_ids
    assert both.files == one.files + two.files
    for x, y in zip(both.boxes, one.boxes + two.boxes, strict=True):
        assert torch.equal(x, y)
    assert torch.equal(both.scales, torch.cat([one.scales, two.scales]))
    assert len(load_split([a, b], "all", (120, 160), limit=2)) == 4
