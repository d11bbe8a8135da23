"""Detection datasets from camera frames: images plus COCO-format ``annotations.json``.

The file is standard COCO detection (``images``, ``annotations``, ``categories``; loads with
``pycocotools.coco.COCO`` and evaluates with ``COCOeval``) with extra fields that COCO tools
ignore (docs/camera.md):

- per annotation: ``track_id`` (actor or landmark id), ``sign_value`` (km/h on a speed-limit
  sign, else null), ``light_state`` (a traffic light's :class:`LightState` value: 0 red,
  1 yellow, 2 green, 3 off; else null), ``occlusion``, ``truncation``, ``visible_px`` and
  ``position_ego`` (the object's centre in the ego frame, m, where known);
- per image: ``scenario``, ``seed``, ``episode``, ``frame``, ``t``, ``split``, ``map`` and the
  camera's ``K`` and ``pose`` (optical frame to ego frame);
- top level: ``splits`` (``train``/``val``/``test`` image ids) and ``episodes``. Splits are by
  episode (scenario and seed), so frames of one drive never land in two splits.

COCO boxes are ``[x, y, w, h]`` with pixel ``i`` covering ``[i, i + 1)``; camera frames use
pixel centres at integers, so a frame's ``x0`` becomes ``x0 + 0.5`` here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sim.messages import CameraFrame, DetectionClass, LightState

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CATEGORIES = [
    {"id": int(DetectionClass.VEHICLE), "name": "vehicle", "supercategory": "actor"},
    {"id": int(DetectionClass.PEDESTRIAN), "name": "pedestrian", "supercategory": "actor"},
    {"id": int(DetectionClass.TRAFFIC_LIGHT), "name": "traffic_light", "supercategory": "light"},
    {
        "id": int(DetectionClass.SPEED_LIMIT_SIGN),
        "name": "speed_limit_sign",
        "supercategory": "sign",
    },
    {"id": int(DetectionClass.STOP_SIGN), "name": "stop_sign", "supercategory": "sign"},
    {"id": int(DetectionClass.YIELD_SIGN), "name": "yield_sign", "supercategory": "sign"},
]


@dataclass(frozen=True)
class DatasetSettings:
    """Which camera boxes become annotations, and how episodes are split.

    :param min_visible_px: fewer visible pixels than this: too small or hidden to annotate
    :param max_occlusion: more of the object hidden than this share: not annotated
    :param min_box_px: boxes narrower or lower than this (px) are not annotated
    :param val_fraction: share of episodes for validation; ``test_fraction`` likewise
    :param reference_width: the pixel counts above are those of a frame this wide (the
        detectors' 320×240 input); a frame ``k > 1`` times as wide scales them by ``k``
        (sides) and ``k²`` (visible pixels), so a 640×480 set annotates what a 320×240 set of
        the same views does, and the detectors are scored on what they can see at their input
        (a narrower frame keeps them: a box under 3 px is no annotation at any size)

    An object in view that is not annotated by these rules is written as a COCO crowd region
    (``iscrowd: 1``, KITTI's "don't care"): a car on the horizon 3 px tall is still a car, and
    a detector that finds it is not scored as raising a false alarm (the detectors' trainer
    still teaches its pixels as background unless ``ignore_crowd``: docs/perception.md).
    """

    min_visible_px: int = 12
    max_occlusion: float = 0.8
    min_box_px: float = 3.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    reference_width: int = 320


# Scoring, not annotation: an annotated box hidden from this share on, or lower than this at 240
# image rows, is an ignored region when detections are scored (`perception eval`, a replay's
# image mAP): a detection on it is neither a hit nor a false positive.
SCORED_HIDDEN_BELOW = 0.7
SCORED_FROM_HEIGHT_PX = 4.0


def coco_box(xyxy: np.ndarray) -> list[float]:
    """A camera box ``x0, y0, x1, y1`` (pixel centres at integers) as COCO ``[x, y, w, h]``."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    return [round(x0 + 0.5, 3), round(y0 + 0.5, 3), round(x1 - x0, 3), round(y1 - y0, 3)]


def frame_annotations(
    frame: CameraFrame,
    image_id: int,
    first_id: int,
    settings: DatasetSettings,
    positions: dict[int, tuple[float, float, float]] | None = None,
) -> list[dict[str, Any]]:
    """COCO annotations of a frame's boxes that pass the settings' filters.

    :param positions: ego-frame centres (m) by actor or landmark id, added as ``position_ego``
    """
    if frame.boxes is None or frame.box_class is None or frame.box_id is None:
        return []
    n = len(frame.boxes)
    occ = frame.box_occlusion if frame.box_occlusion is not None else np.zeros(n)
    trunc = frame.box_truncation if frame.box_truncation is not None else np.zeros(n)
    vis = frame.box_visible_px if frame.box_visible_px is not None else np.full(n, 10**9)
    value = frame.box_value if frame.box_value is not None else np.zeros(n)
    state = frame.box_state if frame.box_state is not None else np.full(n, -1)
    k = max(1.0, frame.rgb.shape[1] / settings.reference_width)
    out: list[dict[str, Any]] = []
    for i in range(n):
        bbox = coco_box(frame.boxes[i])
        if vis[i] < 1:  # wholly hidden
            continue
        crowd = (
            vis[i] < settings.min_visible_px * k * k
            or occ[i] > settings.max_occlusion
            or min(bbox[2], bbox[3]) < settings.min_box_px * k
        )
        cls = DetectionClass(int(frame.box_class[i]))
        out.append(
            {
                "id": first_id + len(out),
                "image_id": image_id,
                "category_id": int(cls),
                "bbox": bbox,
                "area": round(bbox[2] * bbox[3], 3),
                "iscrowd": int(crowd),
                "track_id": int(frame.box_id[i]),
                "occlusion": round(float(occ[i]), 4),
                # rounded down: a box in the image has some of it inside, though a car
                # alongside the lens may show 1e-5 of its projected extent
                "truncation": math.floor(float(trunc[i]) * 1e4) / 1e4,
                "visible_px": int(vis[i]),
                "sign_value": float(value[i]) if cls == DetectionClass.SPEED_LIMIT_SIGN else None,
                "light_state": (
                    int(LightState(int(state[i]))) if cls == DetectionClass.TRAFFIC_LIGHT else None
                ),
            }
        )
        pos = positions.get(int(frame.box_id[i])) if positions else None
        if pos is not None:
            out[-1]["position_ego"] = [round(float(v), 3) for v in pos]
    return out


def assign_splits(
    episodes: list[tuple[str, int]], settings: DatasetSettings, seed: int
) -> dict[tuple[str, int], str]:
    """Each episode ``(scenario, seed)`` to ``train``, ``val`` or ``test``.

    An episode's split is where a hash of the base ``seed`` and its name falls in [0, 1): below
    ``test_fraction`` test, below ``test_fraction + val_fraction`` val, train above. It depends
    on no other episode, so the assignment does not depend on the order they were driven in, and
    a larger set collected from the same base seed (more episodes of each scenario) keeps every
    episode of a smaller one in its split: a test split grows, and no test episode moves into
    train. Small sets are the exception: with three or more episodes val and test get at least
    one each (the episodes nearest their thresholds move there); with two, one is test; with
    one, it is train.
    """

    def draw(ep: tuple[str, int]) -> float:
        digest = hashlib.sha256(f"{seed}/{ep[0]}/{ep[1]}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    u = {ep: draw(ep) for ep in set(episodes)}
    order = sorted(u, key=u.__getitem__)
    if len(order) <= 2:
        return {ep: "test" if i == 0 and len(order) == 2 else "train" for i, ep in enumerate(order)}
    test, val = settings.test_fraction, settings.test_fraction + settings.val_fraction
    out = {ep: "test" if u[ep] < test else "val" if u[ep] < val else "train" for ep in order}
    if "test" not in out.values():
        out[order[0]] = "test"
    if "val" not in out.values():
        out[next(ep for ep in order if out[ep] != "test")] = "val"
    return out


@dataclass
class CocoWriter:
    """Writes frames as PNG images under ``out/images`` and collects their annotations.

    Call :meth:`add` per frame, then :meth:`finish` once to write ``out/annotations.json``.
    """

    out: Path
    settings: DatasetSettings = field(default_factory=DatasetSettings)
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.out / "images").mkdir(parents=True, exist_ok=True)

    def add(
        self,
        frame: CameraFrame,
        scenario: str,
        seed: int,
        episode: int,
        map_name: str,
        positions: dict[int, tuple[float, float, float]] | None = None,
    ) -> int:
        """Write one frame; return its image id. ``positions``: see :func:`frame_annotations`."""
        image_id = len(self.images) + 1
        name = f"images/{scenario}__seed{seed}__{frame.frame:06d}.png"
        cv2.imwrite(str(self.out / name), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        h, w = frame.rgb.shape[:2]
        self.images.append(
            {
                "id": image_id,
                "file_name": name,
                "width": int(w),
                "height": int(h),
                "scenario": scenario,
                "seed": int(seed),
                "episode": int(episode),
                "map": map_name,
                "frame": int(frame.frame),
                "t": round(float(frame.t), 4),
                "K": np.round(frame.K, 6).tolist(),
                "pose": np.round(frame.pose, 6).tolist(),
            }
        )
        anns = frame_annotations(
            frame, image_id, len(self.annotations) + 1, self.settings, positions
        )
        self.annotations += anns
        return image_id

    def finish(self, base_seed: int, extra_info: dict[str, Any] | None = None) -> Path:
        """Assign splits and write ``annotations.json``; return its path."""
        episodes = [(im["scenario"], im["seed"]) for im in self.images]
        split_of = assign_splits(episodes, self.settings, base_seed)
        splits: dict[str, list[int]] = {s: [] for s in SPLITS}
        for im in self.images:
            im["split"] = split_of[(im["scenario"], im["seed"])]
            splits[im["split"]].append(im["id"])
        eps = [
            {
                "scenario": sc,
                "seed": sd,
                "split": sp,
                "images": sum(1 for im in self.images if (im["scenario"], im["seed"]) == (sc, sd)),
            }
            for (sc, sd), sp in sorted(split_of.items())
        ]
        data = {
            "info": {
                "description": "drivestack camera dataset (embedded world)",
                "version": "1",
                "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
                "settings": asdict(self.settings),
                **(extra_info or {}),
            },
            "licenses": [],
            "categories": CATEGORIES,
            "images": self.images,
            "annotations": self.annotations,
            "splits": splits,
            "episodes": eps,
        }
        path = self.out / "annotations.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        tmp.replace(path)
        log.info(
            "wrote %d images, %d annotations to %s", len(self.images), len(self.annotations), path
        )
        return path
