"""The classifier on the same signs and heads cut from two renders of the same views.

``python scripts/read_at_scale.py SMALL LARGE [--split S] [--classifier W]``: SMALL and LARGE
are two datasets collected with the same command but for ``--width/--height`` (``perception
collect ... --width 320 --height 240`` and ``... --width 640 --height 480``: the same seeds
give the same views). For every sign and light head annotated in both (in SMALL's split S,
default all), at least 6 px across in SMALL, less than half hidden and less than half outside
the image (``perception eval``'s rule), the classifier reads the true box cut from each
render; the table gives the share read right by the box's smaller side in SMALL, and red
heads read a sure green. Boxes are matched by image file name and track id.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import torch

from perception.data import split_ids
from perception.evaluate import EvalSettings
from perception.models.stn_classifier import crop_boxes
from perception.perceiver import WEIGHTS_DIR, LearnedPerceiver
from sim.messages import LightState

BINS = ("6-8", "8-12", "12-16", "16+")
SIGNS = {4: "speed_limit_sign", 5: "stop_sign", 6: "yield_sign"}
LIGHT = 3


def _truth(a: dict[str, Any]) -> tuple[str, str] | None:
    """(group, label) of a sign or light annotation, None for anything else."""
    c = int(a["category_id"])
    if c == 4:
        return "sign", f"limit_{round(a['sign_value'])}"
    if c in (5, 6):
        return "sign", {5: "stop", 6: "yield"}[c]
    if c == LIGHT and a.get("light_state") is not None and 0 <= a["light_state"] < 4:
        return "light", f"light_{LightState(a['light_state']).name.lower()}"
    return None


def _bin(side: float) -> str:
    return "6-8" if side < 8 else "8-12" if side < 12 else "12-16" if side < 16 else "16+"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("small", type=Path)
    ap.add_argument("large", type=Path)
    ap.add_argument("--split", default="all", help="the split of SMALL to read (default: all)")
    ap.add_argument("--classifier", default=None, help="STN weights (default: the shipped)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    stn = args.classifier or str(WEIGHTS_DIR / "stn.safetensors")
    p = LearnedPerceiver.from_files(str(WEIGHTS_DIR / "cnn.safetensors"), stn)
    ccfg, rule = p.ccfg, EvalSettings()
    sets = [json.loads((d / "annotations.json").read_text()) for d in (args.small, args.large)]
    ids = set(split_ids(sets[0], args.split, str(args.small)))
    by_name = [{im["file_name"]: im for im in s["images"]} for s in sets]
    by_name[0] = {n: im for n, im in by_name[0].items() if int(im["id"]) in ids}
    anns: list[dict[int, list[dict[str, Any]]]] = [defaultdict(list), defaultdict(list)]
    for k, s in enumerate(sets):
        for a in s["annotations"]:
            anns[k][int(a["image_id"])].append(a)
    # group -> bin -> [boxes, read right in SMALL, read right in LARGE]; red read sure green
    tally = {g: {b: [0, 0, 0] for b in BINS} for g in ("sign", "light")}
    red_green = [0, 0]
    for name, small in by_name[0].items():
        large = by_name[1].get(name)
        if large is None:
            continue
        big = {a["track_id"]: a for a in anns[1][int(large["id"])]}
        pairs = []
        for a in anns[0][int(small["id"])]:
            t, twin = _truth(a), big.get(a["track_id"])
            side = min(a["bbox"][2], a["bbox"][3])
            if t is None or twin is None or a["iscrowd"] or side < rule.min_read_px:
                continue
            if a.get("occlusion", 0) >= 0.5 or a.get("truncation", 0) >= 0.5:
                continue
            pairs.append((t, side, a["bbox"], twin["bbox"]))
        if not pairs:
            continue
        for k, (root, im) in enumerate(((args.small, small), (args.large, large))):
            bgr = cv2.imread(str(root / im["file_name"]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit(f"{root / im['file_name']}: missing or not an image")
            img = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
            boxes = [q[3] if k else q[2] for q in pairs]
            xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes])
            index = torch.zeros(len(pairs), dtype=torch.long)
            crops = crop_boxes(img, xyxy, index, ccfg.crop, ccfg.margin)
            with torch.inference_mode():
                logits = p.classifier(crops)
            for (t, side, _, _), lg in zip(pairs, logits, strict=True):
                group, label = t
                prob = torch.softmax(lg.masked_fill(~p._masks[group], -math.inf), 0)
                read = ccfg.labels[int(prob.argmax())]
                row = tally[group][_bin(side)]
                row[0] += k == 0
                row[1 + k] += read == label
                sure = read == "light_green" and float(prob.max()) >= p.cfg.green_min_prob
                red_green[k] += label == "light_red" and sure
    print(f"{'':6s} {'':6s} {'boxes':>6s} {args.small.name:>24s} {args.large.name:>24s}")
    for group, rows in tally.items():
        total = [sum(r[i] for r in rows.values()) for i in range(3)]
        for b, (n, s, g) in [*rows.items(), ("all", total)]:
            if n:
                print(f"{group:6s} {b:6s} {n:6d} {100 * s / n:23.1f}% {100 * g / n:23.1f}%")
    print(f"red read a sure green: {red_green[0]} (small), {red_green[1]} (large)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
