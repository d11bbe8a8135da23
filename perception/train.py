"""Training of the detectors (``cnn``, ``transformer``) and the crop classifier (``stn``).

``python -m launch perception train --config cnn --data DIR --out DIR`` runs :func:`train`. A run
is self-describing: ``OUT/train_config.json`` holds every setting, ``OUT/tb/`` the TensorBoard
scalars (loss terms, learning rate, validation loss/accuracy), ``OUT/checkpoint.pt`` the state to
resume from (``--resume``) and, at the end, ``OUT/model.safetensors`` + ``OUT/model.json`` the
exported network (perception/export.py); with ``ema_decay`` set, the moving average of the
weights (:class:`WeightAverage`), the checkpoint holding both. All randomness comes from one
seed: the torch generator that shuffles batches, draws augmentations and jitters crops, and the
initial weights.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from tqdm import tqdm

from perception.data import (
    CLASS_NAMES,
    NUM_CLASSES,
    AugmentConfig,
    DatasetError,
    DetectionSet,
    augment,
    crop_targets,
    jitter_boxes,
    load_split,
    read_rgb,
)
from perception.export import (
    ARCHITECTURES,
    config_from_dict,
    config_to_dict,
    model_config,
    save_model,
)
from perception.models.centernet import centernet_loss, make_targets
from perception.models.stn_classifier import StnClassifierConfig, crop_boxes
from sim.errors import DrivestackError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
CONTEXT_PX = 64  # side of the stored context patch around each sign/light (classifier training)
CONTEXT_SCALE = 2.0  # the context patch spans this many box sizes


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (a YAML file under perception/configs/ or the user's)."""

    model: str = "cnn"  # cnn | transformer | stn
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of its config
    epochs: int = 10
    batch_size: int = 16  # images (detectors) or crops (stn)
    lr: float = 2e-3  # peak AdamW learning rate; linear warm-up then cosine decay
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimiser steps (smoke tests)
    train_split: str = "train"
    val_split: str | None = "val"  # None: no validation
    val_images: int | None = None  # validate each epoch on at most this many of the split's
    # images (detectors) or crops (stn), evenly spread over it (None: all). It changes the val/
    # curves alone, never the weights: validation draws no random numbers and updates nothing
    limit_images: int | None = None  # use only the first N images of each split
    crop_hw: tuple[int, int] | None = None  # detectors: train on random windows this size
    scale_range: tuple[float, float] | None = None  # detectors: each batch's frames zoomed by a
    # factor drawn from this range before the window is cut (None: not zoomed)
    whole_frame_epochs: int = 0  # detectors: the last N of the epochs on whole, unzoomed frames
    # (crop_hw and scale_range off), as the detector sees them when it runs; YOLOv8 likewise
    # turns its mosaics off for the last epochs (``close_mosaic``)
    flip_p: float = 0.0  # detectors: chance that an image is mirrored left to right
    ignore_below_px: float = 3.0  # detectors: boxes lower than this (input px) are not learnt
    ignore_occlusion: float = 0.8  # detectors: nor boxes hidden this much
    ignore_crowd: bool = False  # detectors: the dataset's crowd regions as "don't care" areas
    # (False: left out, their pixels taught as background; True cost vehicles' AP, see below)
    repeat_factor: float | None = None  # detectors: LVIS's repeat-factor sampling at this
    # threshold t: an image holding a class on a share f < t of the training images is drawn
    # sqrt(t / f) times as often (its rarest class counts); the epoch keeps its length (None: each
    # image once per epoch)
    class_weight: dict[str, float] = field(default_factory=dict)  # detectors: the heatmap loss
    # of a class ("pedestrian": 3.0) times this; a class not named weighs 1
    box_class_weight: dict[str, float] = field(default_factory=dict)  # detectors: likewise the
    # size, offset and GIoU losses of a class's boxes
    giou_weight: float = 2.0  # detectors: weight of the GIoU loss on the boxes around each centre
    # (0: CenterNet's L1 at the centre alone; 2.0 took test mAP from 0.258 to 0.336 at 8 epochs)
    ema_decay: float | None = None  # the weights exported and validated are an exponential
    # moving average of the trained ones at this decay (YOLOv5's ModelEMA; None: the last step's)
    balanced: bool = False  # stn: draw crops with weight 1/sqrt(count of their label)
    crop_min_side_px: float = 3.0  # stn: ignore signs/lights smaller than this (input px)
    crop_jitter: float = 0.15  # stn: boxes moved/rescaled by up to this share, as a detector errs
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        """Refuse what no run can use, in one line naming the field and what is allowed: an
        ``--epochs 0`` or ``--max-steps 0`` exported an untrained network, ``--batch-size 0``
        ended in a ZeroDivisionError."""
        n = _need(self, "TrainConfig")
        n("model", self.model in ARCHITECTURES, f"one of {list(ARCHITECTURES)}")
        n("epochs", _int(self.epochs, 1), "an integer of at least 1")
        n("batch_size", _int(self.batch_size, 1), "an integer of at least 1")
        n("lr", _num(self.lr) and self.lr > 0, "a number over 0")
        n("warmup_steps", _int(self.warmup_steps, 0), "an integer of at least 0")
        n(
            "weight_decay",
            _num(self.weight_decay) and self.weight_decay >= 0,
            "a number of at least 0",
        )
        n("grad_clip", _num(self.grad_clip) and self.grad_clip > 0, "a number over 0")
        n(
            "ema_decay",
            self.ema_decay is None or (_num(self.ema_decay) and 0 < self.ema_decay < 1),
            "null or a number between 0 and 1 (such as 0.999)",
        )
        n("seed", _int(self.seed, 0), "an integer of at least 0")
        n("max_steps", self.max_steps is None or _int(self.max_steps, 1), "null or at least 1")
        n(
            "limit_images",
            self.limit_images is None or _int(self.limit_images, 1),
            "null or at least 1",
        )
        n("threads", self.threads is None or _int(self.threads, 1), "null or at least 1")
        n("val_images", self.val_images is None or _int(self.val_images, 1), "null or at least 1")
        n(
            "crop_hw",
            self.crop_hw is None
            or (
                isinstance(self.crop_hw, tuple | list)
                and len(self.crop_hw) == 2
                and all(_int(v, 1) for v in self.crop_hw)
            ),
            "null or two integers of at least 1 (height, width)",
        )
        n(
            "scale_range",
            self.scale_range is None or _range(self.scale_range, above=0.0),
            "null or two numbers 0 < low <= high",
        )
        top = self.epochs if self.model != "stn" else 0
        n(
            "whole_frame_epochs",
            _int(self.whole_frame_epochs, 0) and self.whole_frame_epochs <= top,
            f"0 to epochs ({self.epochs}) for a detector, 0 for the stn",
        )
        for name in ("flip_p", "ignore_occlusion"):
            n(name, _share(getattr(self, name)), "a number from 0 to 1")
        n("crop_jitter", _share(self.crop_jitter) and self.crop_jitter < 1, "0 <= it < 1")
        n(
            "repeat_factor",
            self.repeat_factor is None
            or (_num(self.repeat_factor) and 0 < self.repeat_factor <= 1),
            "null or a share of the images over 0 and at most 1 (LVIS: 0.001)",
        )
        for name in ("class_weight", "box_class_weight"):
            m = getattr(self, name)
            n(
                name,
                isinstance(m, dict)
                and all(k in CLASS_NAMES and _num(v) and v > 0 for k, v in m.items()),
                f"a mapping of class names {list(CLASS_NAMES)} to numbers over 0",
            )
        for name in ("ignore_below_px", "giou_weight", "crop_min_side_px"):
            n(
                name,
                _num(getattr(self, name)) and getattr(self, name) >= 0,
                "a number of at least 0",
            )
        a, na = self.augment, _need(self.augment, "TrainConfig.augment")
        for name in ("brightness", "gamma", "blur_sigma"):
            na(name, _range(getattr(a, name), above=0.0), "two numbers 0 < low <= high")
        for name in ("contrast", "noise_std"):
            na(name, _range(getattr(a, name), at_least=0.0), "two numbers 0 <= low <= high")
        for name in ("blur_p", "noise_p"):
            na(name, _share(getattr(a, name)), "a number from 0 to 1")
        na("colour", _num(a.colour) and 0 <= a.colour < 1, "0 <= it < 1")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["crop_hw"] = list(self.crop_hw) if self.crop_hw else None
        d["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["augment"].items()}
        return d


def _need(obj: object, kind: str) -> Callable[[str, bool, str], None]:
    """A check of ``obj``'s settings: ``n(name, ok, allowed)`` refuses the field unless ok."""

    def need(name: str, ok: bool, allowed: str) -> None:
        if not ok:
            raise DrivestackError(f"{kind}.{name} {getattr(obj, name)!r}; allowed: {allowed}")

    return need


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _share(v: Any) -> bool:
    return _num(v) and 0.0 <= v <= 1.0


def _range(v: Any, above: float | None = None, at_least: float | None = None) -> bool:
    """Whether ``v`` is a ``(low, high)`` pair of numbers, low <= high, low over ``above`` or
    at least ``at_least``."""
    if not isinstance(v, tuple | list) or len(v) != 2 or not all(_num(x) for x in v):
        return False
    lo, hi = v
    return lo <= hi and (above is None or lo > above) and (at_least is None or lo >= at_least)


def load_train_config(name_or_path: str, **overrides: Any) -> TrainConfig:
    """A built-in config name (``cnn``, ``transformer``, ``stn``) or a YAML path, plus overrides."""
    path = Path(name_or_path)
    if not path.suffix and (CONFIG_DIR / f"{name_or_path}.yaml").is_file():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        builtin = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise DrivestackError(f"--config {name_or_path}: no such file; built-in: {builtin}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DrivestackError(f"{path}: not valid YAML ({exc})") from None
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise DrivestackError(f"{path}: unknown field(s) {unknown}; allowed: {sorted(fields)}")
    source = f"{path} with {', '.join(f'{k}={v}' for k, v in given.items())}" if given else path
    if not isinstance(data.get("augment") or {}, dict):
        raise DrivestackError(f"{path}: augment must be a mapping of AugmentConfig's fields")
    aug = data.pop("augment", None) or {}
    try:
        aug_values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()
        }
        augment_cfg = AugmentConfig(**aug_values)
        for key in ("crop_hw", "scale_range"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        cfg = TrainConfig(**data, augment=augment_cfg)
        config_from_dict(cfg.model, cfg.model_config, "model_config")
    except (TypeError, DrivestackError) as exc:
        raise DrivestackError(f"{source}: {exc}") from None
    return cfg


def build_model(cfg: TrainConfig) -> nn.Module:
    cls, _ = ARCHITECTURES[cfg.model]
    model_cfg = config_from_dict(cfg.model, cfg.model_config)
    if cfg.model != "stn" and model_cfg.num_classes != NUM_CLASSES:
        raise DrivestackError(f"model_config.num_classes must be {NUM_CLASSES} (DetectionClass)")
    return cls(model_cfg)


def _lr_lambda(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    return f


# ------------------------------------------------------------------------------ batches
def _class_weights(named: dict[str, float]) -> Tensor | None:
    """A weight per class index ``(C,)`` from a mapping of class names (1 where not named);
    None for an empty mapping, so the loss takes its unweighted path."""
    return torch.tensor([named.get(c, 1.0) for c in CLASS_NAMES]) if named else None


class DetectorBatches:
    """Shuffled image batches with their CenterNet targets.

    The dataset's crowd regions (objects too small or hidden to annotate) are left out unless
    ``ignore_crowd``: their pixels are taught as background, as before the collector wrote them.
    Taught as "don't care" instead, the CNN's vehicles fell from AP@.5 0.83 to 0.69 on the test
    split and from 0.61 to 0.41 on the unseen map at 8 epochs (docs/perception.md).
    """

    def __init__(self, data: DetectionSet, cfg: TrainConfig, stride: int, align: int = 16) -> None:
        # windows are cut at multiples of ``align`` px: the Transformer's token cell (stride ×
        # patch), so a window's tokens are the frame's and take their position embeddings
        self.data, self.cfg, self.stride, self.align = data, cfg, stride, align
        keep = [torch.ones_like(c) if cfg.ignore_crowd else ~c for c in data.crowd]
        self.crowd = [c[k] for c, k in zip(data.crowd, keep, strict=True)]
        self.boxes = [b[k] for b, k in zip(data.boxes, keep, strict=True)]
        self.labels = [x[k] for x, k in zip(data.labels, keep, strict=True)]
        self.occlusion = [x[k] for x, k in zip(data.occlusion, keep, strict=True)]
        self.class_weight = _class_weights(cfg.class_weight)
        self.box_class_weight = _class_weights(cfg.box_class_weight)

    def __len__(self) -> int:
        return max(1, len(self.data) // self.cfg.batch_size)

    def loss(
        self, model: nn.Module, idx: Tensor, gen: torch.Generator | None, dev: torch.device
    ) -> dict[str, Tensor]:
        d = self.data
        images = d.images[idx]
        boxes = [self.boxes[i] for i in idx]
        frame_h, frame_w = images.shape[-2:]
        origin = (0, 0)
        zoom = 1.0
        if gen is not None and self.cfg.scale_range is not None:
            lo, hi = self.cfg.scale_range
            if self.cfg.crop_hw is not None:  # never smaller than the window
                lo = max(lo, self.cfg.crop_hw[0] / frame_h, self.cfg.crop_hw[1] / frame_w)
            zoom = lo + (max(hi, lo) - lo) * float(torch.rand(1, generator=gen))
            images, boxes = rescale(images.to(dev).float() / 255.0, boxes, zoom)
        ignore = [
            ((b[:, 3] - b[:, 1]) < self.cfg.ignore_below_px)
            | (self.occlusion[i] >= self.cfg.ignore_occlusion)
            | self.crowd[i]
            for b, i in zip(boxes, idx, strict=True)
        ]
        if gen is not None and self.cfg.crop_hw is not None:
            images, boxes, ignore, origin = random_crop(
                images, boxes, ignore, self.cfg.crop_hw, gen, self.align
            )
            # the window's place in the unzoomed frame, for the Transformer's position embeddings
            ch, cw, a = *self.cfg.crop_hw, self.align
            origin = (
                min(round(origin[0] / zoom / a) * a, frame_h - ch),
                min(round(origin[1] / zoom / a) * a, frame_w - cw),
            )
        if images.dtype == torch.uint8:
            images = images.to(dev).float() / 255.0
        if gen is not None and self.cfg.flip_p > 0:
            flip = torch.rand(len(boxes), generator=gen) < self.cfg.flip_p
            images, boxes = hflip(images, boxes, flip)
        if gen is not None:
            images = augment(images, self.cfg.augment, gen)
        h, w = images.shape[-2:]
        t = make_targets(
            boxes,
            [self.labels[i] for i in idx],
            NUM_CLASSES,
            (h // self.stride, w // self.stride),
            self.stride,
            ignore,
        )
        t = type(t)(*(getattr(t, f.name).to(dev) for f in dataclasses.fields(t)))
        return centernet_loss(
            model(images, origin),
            t,
            giou_weight=self.cfg.giou_weight,
            class_weight=None if self.class_weight is None else self.class_weight.to(dev),
            box_class_weight=None
            if self.box_class_weight is None
            else self.box_class_weight.to(dev),
        )

    def repeat_factors(self) -> Tensor:
        """LVIS's repeat factor of each image (Gupta et al., 2019): ``max(1, sqrt(t / f))`` of
        its rarest class, ``f`` the share of the images that hold a box of that class (crowd
        regions aside)."""
        if self.cfg.repeat_factor is None:
            return torch.ones(len(self.labels))
        holds = torch.zeros(len(self.labels), NUM_CLASSES)
        for i, (lab, crowd) in enumerate(zip(self.labels, self.crowd, strict=True)):
            holds[i, lab[~crowd]] = 1.0
        share = holds.mean(0).clamp(min=1.0 / max(1, len(self.labels)))
        per_class = (self.cfg.repeat_factor / share).sqrt().clamp(min=1.0)
        return (holds * per_class).amax(1).clamp(min=1.0)

    def epoch(self, gen: torch.Generator) -> Iterator[Tensor]:
        if self.cfg.repeat_factor is None:
            perm = torch.randperm(len(self.data), generator=gen)
        else:
            # each image repeated r times (the fraction by chance, as LVIS's sampler), shuffled
            # and cut to the set's size: rare classes come more often, and an epoch costs the same
            r = self.repeat_factors()
            times = r.floor() + (torch.rand(len(r), generator=gen) < r - r.floor()).float()
            pool = torch.repeat_interleave(torch.arange(len(r)), times.long())
            perm = pool[torch.randperm(len(pool), generator=gen)][: len(self.data)]
        for k in range(len(self)):
            yield perm[k * self.cfg.batch_size : (k + 1) * self.cfg.batch_size]


def rescale(images: Tensor, boxes: list[Tensor], zoom: float) -> tuple[Tensor, list[Tensor]]:
    """A float batch and its boxes zoomed by ``zoom`` (area-averaged when shrinking)."""
    h, w = images.shape[-2:]
    size = (round(h * zoom), round(w * zoom))
    out = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=zoom < 1)
    sy, sx = size[0] / h, size[1] / w
    k = torch.tensor([sx, sy, sx, sy])
    return out, [b * k.to(b.dtype) for b in boxes]


def hflip(images: Tensor, boxes: list[Tensor], flip: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The images where ``flip`` is set mirrored left to right, with their boxes.

    The detector learns what a car, a head or a sign looks like, mirrored or not: the digits
    of a mirrored speed limit are the classifier's business, which never sees a flipped crop.
    """
    if not flip.any():
        return images, boxes
    w = images.shape[-1]
    images = images.clone()
    images[flip.to(images.device)] = images[flip.to(images.device)].flip(-1)
    out = []
    for b, f in zip(boxes, flip.tolist(), strict=True):
        out.append(torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1) if f else b)
    return images, out


def random_crop(
    images: Tensor,
    boxes: list[Tensor],
    ignore: list[Tensor],
    crop_hw: tuple[int, int],
    gen: torch.Generator,
    align: int = 16,
) -> tuple[Tensor, list[Tensor], list[Tensor], tuple[int, int]]:
    """One random window (aligned to ``align`` px) cut from a whole batch.

    Boxes are moved into the window and clipped; a box with less than half of it inside is
    kept as an ignored region, one wholly outside has no effect (zero-size boxes are ignored).
    :return: the crops, their boxes and ignore flags, and the window's origin ``(y, x)`` px
    """
    h, w = images.shape[-2:]
    ch, cw = crop_hw
    y0 = align * int(torch.randint(0, (h - ch) // align + 1, (1,), generator=gen))
    x0 = align * int(torch.randint(0, (w - cw) // align + 1, (1,), generator=gen))
    out_boxes, out_ignore = [], []
    for b, ig in zip(boxes, ignore, strict=True):
        area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clamp(min=1e-6)
        moved = b - torch.tensor([x0, y0, x0, y0], dtype=b.dtype)
        clipped = torch.stack(
            [
                moved[:, 0].clamp(0, cw),
                moved[:, 1].clamp(0, ch),
                moved[:, 2].clamp(0, cw),
                moved[:, 3].clamp(0, ch),
            ],
            1,
        )
        inside = ((clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])) / area
        out_boxes.append(clipped)
        out_ignore.append(ig | (inside < 0.5))
    return images[:, :, y0 : y0 + ch, x0 : x0 + cw], out_boxes, out_ignore, (y0, x0)


def context_patches(data: DetectionSet, img_idx: Tensor, ctx: Tensor) -> Tensor:
    """``CONTEXT_PX``-square patches of the regions ``ctx`` (input px) of the images
    ``img_idx``, as uint8. An image the set holds larger than the network's input (a 640×480
    view) is cut at its own size, as the perceiver cuts its crops from its classifier's camera,
    so the classifier learns the sharper crops it will read there."""
    out = torch.empty(len(ctx), 3, CONTEXT_PX, CONTEXT_PX, dtype=torch.uint8)
    # a set loaded without its pixels (``load_split(pixels=False)``) is cut from its files
    native = (data.scales != 1.0).any(1) | (not data.holds_pixels)
    at_input = [k for k in range(len(ctx)) if not native[img_idx[k]]]
    for s in range(0, len(at_input), 256):
        sel = torch.tensor(at_input[s : s + 256], dtype=torch.long)
        uniq, inv = torch.unique(img_idx[sel], return_inverse=True)
        imgs = data.images[uniq].float() / 255.0
        out[sel] = (crop_boxes(imgs, ctx[sel], inv, CONTEXT_PX, 0.0) * 255).round().to(torch.uint8)
    for i in torch.unique(img_idx[native[img_idx]]).tolist():
        sel = (img_idx == i).nonzero()[:, 0]
        img = torch.from_numpy(read_rgb(data.files[i])).permute(2, 0, 1)[None]
        sx, sy = (float(v) for v in data.scales[i])
        big = ctx[sel] * torch.tensor([sx, sy, sx, sy])
        crops = crop_boxes(img.float() / 255.0, big, torch.zeros(len(sel), dtype=torch.long),
                           CONTEXT_PX, 0.0)  # fmt: skip
        out[sel] = (crops * 255).round().to(torch.uint8)
    return out


class CropBatches:
    """Shuffled batches of sign/light crops, re-cut with a jittered box every time."""

    def __init__(
        self, data: DetectionSet, cfg: TrainConfig, model_cfg: StnClassifierConfig
    ) -> None:
        self.cfg, self.mcfg = cfg, model_cfg
        img_idx, boxes, self.labels = crop_targets(data, model_cfg, cfg.crop_min_side_px)
        if len(boxes) == 0:
            raise DatasetError(f"{data.source}: no sign or light boxes to train the classifier on")
        # Context patches around each box, cut once: re-cutting from full frames every batch
        # would convert hundreds of full images to float per step.
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
        c = (boxes[:, :2] + boxes[:, 2:]) / 2
        ctx = torch.cat([c - wh * CONTEXT_SCALE / 2, c + wh * CONTEXT_SCALE / 2], 1)
        self.patches = context_patches(data, img_idx, ctx)  # (N, 3, 64, 64) uint8
        half = CONTEXT_PX / (2 * CONTEXT_SCALE)
        centre = CONTEXT_PX / 2
        self.box = torch.tensor([centre - half, centre - half, centre + half, centre + half])

    def __len__(self) -> int:
        return max(1, len(self.labels) // self.cfg.batch_size)

    def crops(self, idx: Tensor, gen: torch.Generator | None, dev: torch.device) -> Tensor:
        patches = self.patches[idx].to(dev).float() / 255.0
        boxes = self.box.repeat(len(idx), 1)
        if gen is not None:
            boxes = jitter_boxes(boxes, self.cfg.crop_jitter, gen)
        crops = crop_boxes(
            patches,
            boxes.to(dev),
            torch.arange(len(idx), device=dev),
            self.mcfg.crop,
            self.mcfg.margin,
        )
        return augment(crops, self.cfg.augment, gen) if gen is not None else crops

    def loss(
        self, model: nn.Module, idx: Tensor, gen: torch.Generator | None, dev: torch.device
    ) -> dict[str, Tensor]:
        logits = model(self.crops(idx, gen, dev))
        y = self.labels[idx].to(dev)
        loss = nn.functional.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        return {"total": loss, "accuracy": acc.detach()}

    def epoch(self, gen: torch.Generator) -> Iterator[Tensor]:
        if self.cfg.balanced:
            # rare labels (a yellow light, a "limit_80") drawn more often: weight 1/sqrt(count)
            counts = torch.bincount(self.labels, minlength=self.mcfg.num_labels).float()
            weight = counts[self.labels].rsqrt()
            perm = torch.multinomial(weight, len(self.labels), replacement=True, generator=gen)
        else:
            perm = torch.randperm(len(self.labels), generator=gen)
        for k in range(len(self)):
            yield perm[k * self.cfg.batch_size : (k + 1) * self.cfg.batch_size]


def _batches(
    data: DetectionSet, cfg: TrainConfig, model: nn.Module
) -> DetectorBatches | CropBatches:
    if cfg.model == "stn":
        return CropBatches(data, cfg, model_config(model))
    mc = model_config(model)
    stride = int(mc.stride)
    return DetectorBatches(data, cfg, stride, max(16, stride * int(getattr(mc, "patch", 1))))


def _input_hw(model: nn.Module) -> tuple[int, int]:
    hw = getattr(model_config(model), "input_hw", (240, 320))
    return int(hw[0]), int(hw[1])


@torch.no_grad()
def _validate(
    model: nn.Module, batches: DetectorBatches | CropBatches, dev: torch.device
) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    size = len(batches.data) if isinstance(batches, DetectorBatches) else len(batches.labels)
    keep = torch.arange(size)
    cap = batches.cfg.val_images
    if cap is not None and cap < size:  # evenly spread, so each of the sets joined has its share
        keep = torch.linspace(0, size - 1, cap).round().long()
    for s in range(0, len(keep), batches.cfg.batch_size):
        idx = keep[s : s + batches.cfg.batch_size]
        for k, v in batches.loss(model, idx, None, dev).items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
        n += len(idx)
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics, updated
    after each optimiser step (YOLOv5's ``ModelEMA``, TensorFlow's ``ExponentialMovingAverage``
    with ``num_updates``): at step t the average keeps ``min(decay, (1 + t) / (10 + t))`` of
    itself, so it follows the weights closely early on and averages over about
    ``1 / (1 - decay)`` steps at the end. Integer buffers (batch norm's step count) are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        keep = min(self.decay, (1 + step) / (10 + step))
        mine = self.model.state_dict()
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                mine[k].lerp_(v.detach(), 1.0 - keep)
            else:
                mine[k].copy_(v)


# ------------------------------------------------------------------------------ training
def train(
    cfg: TrainConfig,
    data_dir: str | Path | list[str] | list[Path],
    out_dir: str | Path,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train one model; return the path of its exported ``model.safetensors``."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if device == "cuda" and not torch.cuda.is_available():
        raise DrivestackError("--device cuda: no CUDA device here; use --device cpu")
    dev = torch.device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg).to(dev)
    hw = _input_hw(model)
    t0 = time.perf_counter()
    pixels = cfg.model != "stn"  # the classifier cuts its crops from the files (context_patches)
    data = load_split(data_dir, cfg.train_split, hw, cfg.limit_images, pixels)
    batches = _batches(data, cfg, model)
    val = None
    if cfg.val_split:
        try:
            vdata = load_split(data_dir, cfg.val_split, hw, cfg.limit_images, pixels)
            val = _batches(
                vdata, dataclasses.replace(cfg, batch_size=max(cfg.batch_size, 32)), model
            )
        except DatasetError as exc:
            log.warning("no validation: %s", exc)
    log.info("loaded %d training images in %.1f s", len(data), time.perf_counter() - t0)
    steps_per_epoch = len(batches)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total))
    (out / "train_config.json").write_text(
        json.dumps(
            {
                "train": cfg.to_dict(),
                "model_config": config_to_dict(model_config(model)),
                "data": [str(d) for d in data_dir] if isinstance(data_dir, list) else str(data_dir),
                "device": device,
            },
            indent=2,
        )
        + "\n"
    )
    ckpt_path = out / "checkpoint.pt"
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    step, epoch0 = 0, 0
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=dev, weights_only=True)
        # a field newer than the checkpoint held its default then (ema_decay: None, off)
        made_with = {**TrainConfig(model=cfg.model).to_dict(), **ck["train"]}
        if made_with != cfg.to_dict():
            raise DrivestackError(
                f"{ckpt_path}: was made with another config; resume with the same one"
            )
        model.load_state_dict(ck["model"])
        if ema is not None:
            ema.model.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        step, epoch0 = int(ck["step"]), int(ck["epoch"])
        log.info("resumed at epoch %d, step %d", epoch0, step)
    writer = SummaryWriter(str(out / "tb"))
    writer.add_text("config", json.dumps(cfg.to_dict(), indent=2))
    model.train()
    bar = tqdm(
        total=total,
        initial=step,
        unit="step",
        file=sys.stderr,
        disable=not progress,
        mininterval=1.0,
    )
    whole = batches
    if cfg.whole_frame_epochs:
        whole = _batches(data, dataclasses.replace(cfg, crop_hw=None, scale_range=None), model)
    exported = ema.model if ema is not None else model  # what is validated and saved
    epoch = epoch0
    try:
        for epoch in range(epoch0, cfg.epochs):
            if step >= total:
                break
            if epoch >= cfg.epochs - cfg.whole_frame_epochs:
                batches = whole
            for idx in batches.epoch(gen):
                if step >= total:
                    break
                terms = batches.loss(model, idx, gen, dev)
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                step += 1
                if ema is not None:
                    ema.update(model, step)
                for k, v in terms.items():
                    writer.add_scalar(f"train/{k}", float(v.detach()), step)
                writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(terms['total'].detach()):.3f}")
            if val is not None:
                for k, value in _validate(exported, val, dev).items():
                    writer.add_scalar(f"val/{k}", value, step)
                    log.info("epoch %d val %s %.4f", epoch, k, value)
            torch.save(
                {
                    "model": model.state_dict(),
                    **({"ema": ema.model.state_dict()} if ema is not None else {}),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": gen.get_state(),
                    "step": step,
                    "epoch": epoch + 1,
                    "train": cfg.to_dict(),
                },
                ckpt_path,
            )
    finally:
        bar.close()
        writer.close()
    exported.eval()
    return save_model(
        exported.cpu(), out / "model.safetensors", extra={"train": cfg.to_dict(), "steps": step}
    )
