"""Datasets in COCO format (written by ``python -m launch perception collect``) and augmentations.

:func:`load_split` reads ``annotations.json`` and the images of one split into memory, resized to
the network's input size: a few thousand 320×240 frames are a few hundred MB of ``uint8``, and
holding them avoids decoding PNGs every epoch on a 2-core machine.

Annotations are COCO's (``bbox`` = ``[x, y, w, h]`` in pixels, ``category_id`` = a
:class:`~sim.messages.DetectionClass` value) with the collector's extra fields: the sign's speed
value (km/h), the light's :class:`~sim.messages.LightState`, occlusion and truncation shares and,
where present, the object's position in the ego frame. The dataset's ``splits`` maps a split name
to its image ids.

Augmentations here are photometric (lighting, colour cast, gamma, blur, sensor noise): a flipped
crop would mirror the digits on a sign. The detectors' trainer can also mirror and zoom whole
frames (``flip_p``, ``scale_range`` in perception/train.py; off in the shipped configs).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from perception.models.stn_classifier import StnClassifierConfig
from sim.errors import DrivestackError
from sim.messages import DetectionClass

NUM_CLASSES = len(DetectionClass)
CLASS_NAMES = tuple(c.name.lower() for c in DetectionClass)  # index = category_id - 1
SIGN_CLASSES = (
    DetectionClass.SPEED_LIMIT_SIGN,
    DetectionClass.STOP_SIGN,
    DetectionClass.YIELD_SIGN,
)

# Extra annotation fields, by the names the collector may give them (first found wins).
VALUE_KEYS = ("sign_value", "value", "speed_limit_kmh")
STATE_KEYS = ("light_state", "state")
OCCLUSION_KEYS = ("occlusion", "occluded")
TRUNCATION_KEYS = ("truncation", "truncated")
READABLE_SHARE = 0.5  # a sign or light at least this hidden, or this far out of the image, is
# not read: a head more than half outside the frame may show none of its lamps (KITTI's "hard"
# stops at half truncated, too)
POSITION_KEYS = ("position_ego", "ego_xyz", "position")


class DatasetError(DrivestackError):
    """A dataset folder that cannot be read."""


def _first(ann: dict[str, Any], keys: tuple[str, ...], default: Any) -> Any:
    for k in keys:
        if k in ann and ann[k] is not None:
            return ann[k]
    return default


@dataclass
class DetectionSet:
    """One split in memory, at the network's input size.

    Per-image lists hold ``(n_i, ...)`` tensors; box coordinates are input pixels (COCO edges).
    """

    images: Tensor  # (N, 3, H, W) uint8
    boxes: list[Tensor]  # (n_i, 4) x0, y0, x1, y1
    labels: list[Tensor]  # (n_i,) class index 0..C-1 (DetectionClass value - 1)
    values: list[Tensor]  # (n_i,) speed value of a sign (km/h), else 0
    states: list[Tensor]  # (n_i,) LightState of a light, else -1
    occlusion: list[Tensor]  # (n_i,) share of the object hidden
    truncation: list[Tensor]  # (n_i,) share of the object outside the image
    crowd: list[Tensor]  # (n_i,) bool: too small or hidden to annotate, a "don't care" region
    positions: list[Tensor]  # (n_i, 3) ego-frame position (m), NaN where unknown
    image_ids: list[int]
    scales: Tensor  # (N, 2) original / input size, x and y
    intrinsics: list[np.ndarray | None]  # (3, 3) K of the original image, if given
    poses: list[np.ndarray | None]  # (4, 4) camera-to-ego, if given
    source: Path
    files: list[Path] = field(default_factory=list)  # each image's file, at its own size

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def holds_pixels(self) -> bool:
        """False for a set read with ``load_split(pixels=False)``: its boxes alone."""
        return self.images.shape[-1] > 0


def read_annotations(data_dir: str | Path) -> dict[str, Any]:
    path = Path(data_dir) / "annotations.json"
    if not path.is_file():
        raise DatasetError(f"{data_dir}: no annotations.json (make one with perception collect)")
    try:
        coco: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    for key in ("images", "annotations"):
        if key not in coco:
            raise DatasetError(f"{path}: not COCO detection format (no '{key}')")
    return coco


def split_ids(coco: dict[str, Any], split: str, source: str = "dataset") -> list[int]:
    """Image ids of a split; ``all`` is every image."""
    if split == "all":
        return [int(im["id"]) for im in coco["images"]]
    splits = coco.get("splits") or {}
    if split not in splits:
        raise DatasetError(f"{source}: no split {split!r}; it has: {[*sorted(splits), 'all']}")
    ids = splits[split]
    return [int(i) for i in (ids["image_ids"] if isinstance(ids, dict) else ids)]


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HWC uint8 RGB at its own size."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path}: missing or not an image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def load_split(
    data_dir: str | Path | list[str] | list[Path],
    split: str,
    input_hw: tuple[int, int],
    limit: int | None = None,
    pixels: bool = True,
) -> DetectionSet:
    """Read one split's images and boxes, resized to ``input_hw`` (H, W); several dataset
    folders are read one after another into one set, their images into one tensor from the
    start (joined after reading, they were held twice while copied: the train split of
    make-default-weights' three 640×480 sets, 7.5 GB of pixels, peaked at 15.0 GB, now 7.8).

    ``pixels=False`` reads the boxes alone (``images`` is ``(N, 3, 0, 0)``; sizes from the
    annotations' ``width`` and ``height``): the classifier cuts its crops from the files at their
    own size (perception/train.py's ``context_patches``), so holding its 13,000 640×480 views
    averaged down cost a minute and a half of decoding and 3 GB it never read."""
    dirs = data_dir if isinstance(data_dir, list) else [data_dir]
    plans = []
    for d in dirs:
        root = Path(d)
        coco = read_annotations(root)
        ids = split_ids(coco, split, str(root))
        if limit is not None:
            ids = ids[:limit]
        if not ids:
            raise DatasetError(f"{root}: split {split!r} has no images")
        plans.append((root, coco, ids))
    h, w = input_hw
    n = sum(len(ids) for _, _, ids in plans)
    images = torch.empty(n, 3, *((h, w) if pixels else (0, 0)), dtype=torch.uint8)
    sets, at = [], 0
    for root, coco, ids in plans:
        part = images[at : at + len(ids)]
        sets.append(_read_split(root, coco, ids, split, part, input_hw))
        at += len(ids)
    return concat_sets(sets, images)


def _read_split(
    root: Path,
    coco: dict[str, Any],
    ids: list[int],
    split: str,
    images: Tensor,
    input_hw: tuple[int, int],
) -> DetectionSet:
    """The images ``ids`` of the dataset at ``root`` (its annotations ``coco``) read into
    ``images`` (N, 3, H, W) uint8 at ``input_hw``, with their boxes; ``images`` of size 0 (N, 3,
    0, 0): the boxes alone, scaled to ``input_hw`` by the annotated image size."""
    by_id = {int(im["id"]): im for im in coco["images"]}
    anns: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for a in coco["annotations"]:
        if int(a["image_id"]) in anns:
            anns[int(a["image_id"])].append(a)
    h, w = input_hw
    out = DetectionSet(
        images, [], [], [], [], [], [], [], [], ids, torch.empty(len(ids), 2), [], [], root
    )
    pixels = out.holds_pixels
    for n, image_id in enumerate(ids):
        im = by_id.get(image_id)
        if im is None:
            raise DatasetError(f"{root}: split {split!r} names image {image_id}, which is missing")
        out.files.append(root / im["file_name"])
        if pixels or not {"width", "height"} <= im.keys():
            rgb = read_rgb(root / im["file_name"])
            oh, ow = rgb.shape[:2]
        else:
            oh, ow = int(im["height"]), int(im["width"])
        if pixels:
            if (oh, ow) != (h, w):
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            images[n] = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        sx, sy = ow / w, oh / h
        out.scales[n] = torch.tensor([sx, sy])
        b, lab, val, st, occ, trunc, crowd, pos = [], [], [], [], [], [], [], []
        for a in anns[image_id]:
            x, y, bw, bh = (float(v) for v in a["bbox"])
            b.append([x / sx, y / sy, (x + bw) / sx, (y + bh) / sy])
            lab.append(int(a["category_id"]) - 1)
            val.append(float(_first(a, VALUE_KEYS, 0.0)))
            st.append(int(_first(a, STATE_KEYS, -1)))
            occ.append(float(_first(a, OCCLUSION_KEYS, 0.0)))
            trunc.append(float(_first(a, TRUNCATION_KEYS, 0.0)))
            crowd.append(bool(a.get("iscrowd", 0)))
            p = _first(a, POSITION_KEYS, None)
            pos.append([float(v) for v in p][:3] if p is not None else [math.nan] * 3)
        out.boxes.append(torch.tensor(b, dtype=torch.float32).reshape(-1, 4))
        out.labels.append(torch.tensor(lab, dtype=torch.long))
        out.values.append(torch.tensor(val, dtype=torch.float32))
        out.states.append(torch.tensor(st, dtype=torch.long))
        out.occlusion.append(torch.tensor(occ, dtype=torch.float32))
        out.truncation.append(torch.tensor(trunc, dtype=torch.float32))
        out.crowd.append(torch.tensor(crowd, dtype=torch.bool))
        out.positions.append(torch.tensor(pos, dtype=torch.float32).reshape(-1, 3))
        k = im.get("K") or im.get("intrinsics")
        pose = im.get("pose") or im.get("camera_pose")
        out.intrinsics.append(np.asarray(k, dtype=np.float64) if k is not None else None)
        out.poses.append(np.asarray(pose, dtype=np.float64) if pose is not None else None)
    return out


def concat_sets(sets: list[DetectionSet], images: Tensor | None = None) -> DetectionSet:
    """Several sets as one (image ids stay those of their own datasets); ``images``: their
    images already in one tensor, in order (else they are copied into one)."""
    first = sets[0]
    if len(sets) == 1:
        return first
    out = DetectionSet(
        torch.cat([s.images for s in sets]) if images is None else images,
        [], [], [], [], [], [], [], [], [],
        torch.cat([s.scales for s in sets]), [], [], first.source,
    )  # fmt: skip
    for s in sets:
        out.boxes += s.boxes
        out.labels += s.labels
        out.values += s.values
        out.states += s.states
        out.occlusion += s.occlusion
        out.truncation += s.truncation
        out.crowd += s.crowd
        out.positions += s.positions
        out.image_ids += s.image_ids
        out.intrinsics += s.intrinsics
        out.poses += s.poses
        out.files += s.files
    return out


# -------------------------------------------------------------------------- crop labels
def crop_label(cfg: StnClassifierConfig, cls_index: int, value: float, state: int) -> int:
    """The classifier label index of a box, or -1 if it is not a sign or light it knows."""
    c = DetectionClass(cls_index + 1)
    labels = cfg.labels
    if c == DetectionClass.STOP_SIGN:
        return labels.index("stop")
    if c == DetectionClass.YIELD_SIGN:
        return labels.index("yield")
    if c == DetectionClass.SPEED_LIMIT_SIGN:
        name = f"limit_{round(value)}"
        return labels.index(name) if name in labels else -1
    if c == DetectionClass.TRAFFIC_LIGHT and 0 <= state < 4:
        return len(labels) - 4 + state
    return -1


def readable(data: DetectionSet, i: int, j: int) -> bool:
    """Whether box ``j`` of image ``i`` shows enough of its object to read a sign or light."""
    return (
        not bool(data.crowd[i][j])
        and float(data.occlusion[i][j]) < READABLE_SHARE
        and float(data.truncation[i][j]) < READABLE_SHARE
    )


def crop_targets(
    data: DetectionSet, cfg: StnClassifierConfig, min_side_px: float
) -> tuple[Tensor, Tensor, Tensor]:
    """All sign and light boxes of a set that the classifier should read.

    :return: ``image_index (N,)``, ``boxes (N, 4)`` (input px) and ``labels (N,)``
    """
    idx, boxes, labels = [], [], []
    for i in range(len(data)):
        for j in range(len(data.boxes[i])):
            b = data.boxes[i][j]
            if min(float(b[2] - b[0]), float(b[3] - b[1])) < min_side_px:
                continue
            lab = crop_label(
                cfg, int(data.labels[i][j]), float(data.values[i][j]), int(data.states[i][j])
            )
            if lab >= 0 and readable(data, i, j):
                idx.append(i)
                boxes.append(b)
                labels.append(lab)
    if not boxes:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    return torch.tensor(idx), torch.stack(boxes), torch.tensor(labels)


def jitter_boxes(boxes: Tensor, amount: float, gen: torch.Generator) -> Tensor:
    """Boxes shifted and rescaled by up to ``amount`` of their size, as a detector errs."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    shift = (torch.rand(len(boxes), 2, generator=gen) * 2 - 1) * amount * wh
    scale = 1 + (torch.rand(len(boxes), 2, generator=gen) * 2 - 1) * amount
    half = wh * scale / 2
    c = centre + shift
    return torch.cat([c - half, c + half], 1)


# ------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class AugmentConfig:
    brightness: tuple[float, float] = (0.55, 1.45)  # gain on all channels
    contrast: tuple[float, float] = (0.7, 1.3)
    colour: float = 0.08  # per-channel gain spread
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_p: float = 0.3  # chance of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.3, 1.2)  # px
    noise_p: float = 0.5  # chance of Gaussian pixel noise
    noise_std: tuple[float, float] = (0.0, 0.04)  # of the [0, 1] range


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def augment(images: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    """Photometric augmentation of a float batch ``(B, 3, H, W)`` in [0, 1] (on CPU draws)."""
    b = images.shape[0]
    dev = images.device

    def draw(lo: float, hi: float, *shape: int) -> Tensor:
        return _uniform(gen, b * math.prod(shape), lo, hi).reshape(b, *shape).to(dev)

    x = images ** draw(*cfg.gamma, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * draw(*cfg.contrast, 1, 1, 1) + mean
    x = x * draw(*cfg.brightness, 1, 1, 1) * draw(1 - cfg.colour, 1 + cfg.colour, 3, 1, 1)
    blur = torch.rand(b, generator=gen) < cfg.blur_p
    if blur.any():
        sigma = float(_uniform(gen, 1, *cfg.blur_sigma))
        x[blur.to(dev)] = gaussian_blur(x[blur.to(dev)], sigma)
    noisy = (torch.rand(b, generator=gen) < cfg.noise_p).float().reshape(b, 1, 1, 1).to(dev)
    std = draw(*cfg.noise_std, 1, 1, 1) * noisy
    noise = torch.randn(x.shape, generator=gen).to(dev)
    return (x + noise * std).clamp(0.0, 1.0)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with standard deviation ``sigma`` px."""
    r = max(1, math.ceil(2.5 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(
        F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c
    )
    return F.conv2d(
        F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c
    )
