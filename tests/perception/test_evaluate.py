"""The COCO figures of ``perception eval`` score the detector's whole ranked list."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from perception.evaluate import EvalSettings, _coco_map
from perception.perceiver import FrameDetection
from sim.messages import DetectionClass


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


def test_a_low_scored_true_box_still_counts_and_a_missing_one_halves_recall() -> None:
    data: Any = SimpleNamespace(image_ids=[0], scales=[(1.0, 1.0)])
    gt = _gt([[10.0, 100.0, 20.0, 20.0], [200.0, 100.0, 20.0, 20.0]])
    both = _coco_map(data, gt, [[_det(10.0, 0.9), _det(200.0, 0.05)]], EvalSettings())
    assert both["mAP"] == pytest.approx(1.0)
    # cut at an operating threshold the second car is never ranked: recall stops at half
    cut = _coco_map(data, gt, [[_det(10.0, 0.9)]], EvalSettings())
    assert cut["mAP"] == pytest.approx(0.5, abs=0.01)
    assert both["per_class"]["vehicle"]["instances"] == 2
