"""A tiny synthetic COCO dataset in the collector's format, for tests that must not render.

Flat-coloured shapes on a grey road: boxes for vehicles and pedestrians, red-rimmed circles with
a number for speed limits, red octagons for stop, white triangles for yield, and dark light heads
with one lit lamp. Labels are exact by construction.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from sim.messages import DetectionClass, LightState

LAMP = {
    LightState.RED: (230, 30, 30),
    LightState.YELLOW: (240, 200, 20),
    LightState.GREEN: (30, 220, 60),
}


def make_dataset(
    root: Path, n_images: int = 12, size: tuple[int, int] = (160, 120), seed: int = 0
) -> Path:
    """Write ``n_images`` images and ``annotations.json`` (splits train/val/test) under ``root``."""
    rng = np.random.default_rng(seed)
    w, h = size
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    f = w / 2.0
    K = [[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]
    pose = [[0, 0, 1, 1.5], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]]
    for i in range(n_images):
        img = np.full((h, w, 3), 110, np.uint8)
        img[: h // 2] = (150, 190, 230)  # sky
        boxes = []
        for _ in range(3):
            kind = DetectionClass(int(rng.integers(1, 7)))
            s = int(rng.integers(10, 22))
            x = int(rng.integers(0, w - 2 * s))
            y = int(rng.integers(h // 4, h - 2 * s))
            value, state = 0.0, -1
            if kind == DetectionClass.VEHICLE:
                bw, bh = 2 * s, s
                cv2.rectangle(
                    img,
                    (x, y),
                    (x + bw - 1, y + bh - 1),
                    tuple(int(c) for c in rng.integers(0, 255, 3)),
                    -1,
                )
            elif kind == DetectionClass.PEDESTRIAN:
                bw, bh = s // 2, 2 * s
                cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), (60, 40, 120), -1)
            elif kind == DetectionClass.TRAFFIC_LIGHT:
                bw, bh = s // 2, 3 * s // 2
                st = LightState(int(rng.integers(0, 3)))
                state = int(st)
                cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), (30, 30, 30), -1)
                cy = y + bh // 6 + int(st) * bh // 3
                cv2.circle(img, (x + bw // 2, cy), max(bw // 3, 1), LAMP[st], -1)
            else:
                bw = bh = s
                c = (x + s // 2, y + s // 2)
                if kind == DetectionClass.SPEED_LIMIT_SIGN:
                    value = float(rng.choice([30, 50]))
                    cv2.circle(img, c, s // 2, (220, 20, 30), -1)
                    cv2.circle(img, c, s // 3, (245, 245, 245), -1)
                    cv2.putText(
                        img,
                        str(int(value))[0],
                        (c[0] - 3, c[1] + 3),
                        cv2.FONT_HERSHEY_PLAIN,
                        0.6,
                        (0, 0, 0),
                        1,
                    )
                elif kind == DetectionClass.STOP_SIGN:
                    a = (np.arange(8) + 0.5) * 2 * math.pi / 8
                    pts = np.stack([c[0] + s / 2 * np.cos(a), c[1] + s / 2 * np.sin(a)], -1)
                    cv2.fillConvexPoly(img, pts.astype(np.int32), (200, 20, 30))
                else:
                    pts = np.array([[x, y], [x + s - 1, y], [c[0], y + s - 1]], np.int32)
                    cv2.fillConvexPoly(img, pts, (245, 245, 245))
            boxes.append((x, y, bw, bh, kind, value, state))
        name = f"images/{i:05d}.png"
        cv2.imwrite(str(root / name), img[:, :, ::-1])
        images.append(
            {"id": i + 1, "file_name": name, "width": w, "height": h, "K": K, "pose": pose}
        )
        for x, y, bw, bh, kind, value, state in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(kind),
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                    "sign_value": value,
                    "light_state": state,
                    "occlusion": 0.0,
                    "truncation": 0.0,
                }
            )
    ids = [im["id"] for im in images]
    n_val = max(1, n_images // 6)
    splits = {"train": ids[: -2 * n_val], "val": ids[-2 * n_val : -n_val], "test": ids[-n_val:]}
    coco = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": int(c), "name": c.name.lower()} for c in DetectionClass],
        "splits": splits,
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    return root
