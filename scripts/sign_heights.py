"""How high the learned perceiver places its sign boxes, on true signs and on anything else.

    python scripts/sign_heights.py DATA [DATA ...] [--perception cnn|transformer]
                                   [--detector F] [--classifier F]

Runs the perceiver's detection step (the boxes it acts on, each placed in the ego frame) on
every image of collected sets (`perception collect`), matches each sign box to the set's
annotations (IoU ≥ 0.3), and prints the quantiles of the boxes' centre heights by what they
lie on: a true sign, another annotated class, or nothing. `PerceiverSettings.sign_min_z_m`
drops sign boxes placed lower (docs/perception.md, "Three closed-loop failures traced").
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from perception.data import load_split
from perception.evaluate import dataset_frame
from perception.models.centernet import box_iou
from perception.perceiver import DETECTORS, default_perceiver
from sim.errors import DrivestackError
from sim.messages import DetectionClass

SIGNS = {DetectionClass.SPEED_LIMIT_SIGN, DetectionClass.STOP_SIGN, DetectionClass.YIELD_SIGN}
QUANTILES = (0, 1, 5, 50, 95, 100)


def main() -> None:
    try:
        run()
    except DrivestackError as e:  # a missing set or weights file: one line, not a traceback
        raise SystemExit(f"error: {e}") from None


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+", help="folders written by `perception collect`")
    ap.add_argument("--perception", default="cnn", choices=DETECTORS)
    ap.add_argument("--detector", default="", help="weights file (default: the shipped one)")
    ap.add_argument("--classifier", default="", help="weights file (default: the shipped one)")
    args = ap.parse_args()
    perceiver = default_perceiver(args.perception, "cpu", args.detector, args.classifier)
    cut = (perceiver.cfg.top_k, perceiver.cfg.score_threshold)
    heights: dict[str, list[float]] = defaultdict(list)
    for folder in args.data:
        data = load_split(folder, "all", perceiver.input_hw)
        for i in range(len(data)):
            frame, _ = dataset_frame(data, i)
            (dets,) = perceiver.detect_cuts(frame, None, [cut])
            boxes, labels = data.boxes[i].numpy(), data.labels[i].numpy()
            for d in dets:
                if d.group != "sign" or d.z is None:
                    continue
                what = "nothing"
                if len(boxes):
                    overlap = box_iou(torch.tensor([d.box]), torch.from_numpy(boxes))[0]
                    j = int(overlap.argmax())
                    if float(overlap[j]) >= 0.3:
                        cls = DetectionClass(int(labels[j]) + 1)
                        what = "a true sign" if cls in SIGNS else cls.name.lower()
                heights[what].append(d.z)
    low = perceiver.cfg.sign_min_z_m
    print(f"sign boxes' centre heights (m), quantiles {QUANTILES} %:")
    for what, z in sorted(heights.items()):
        q = ", ".join(f"{v:.2f}" for v in np.percentile(z, QUANTILES))
        below = sum(v < low for v in z)
        print(f"  on {what}: {len(z)} boxes, {q}; under {low} m: {below}")


if __name__ == "__main__":
    main()
