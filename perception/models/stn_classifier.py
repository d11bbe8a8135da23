"""A crop classifier with a spatial transformer: what a sign says, what a light shows.

The detector finds a sign or a light head; this network reads its crop (resized to 32×32) and
names it: a sign's type and value (``stop``, ``yield``, ``limit_30``, ...) or a light's state
(``light_red``, ``light_yellow``, ``light_green``, ``light_off``). One label space holds both
groups; the caller restricts the choice to the group the detector's class belongs to.

A spatial transformer (Jaderberg et al. 2015) comes first: a tiny localisation network looks at
the crop and predicts an affine warp (initialised to the identity) that re-centres and rescales
the content, so a loose or shifted detector box still yields a well-framed sign. The classifier
after it is a plain four-layer CNN whose head keeps a 4×4 grid of its features: a "30" and a
"70" differ in where the strokes are, which a mean over the whole crop would forget::

    crop (B, 3, 32, 32) ─▶ loc net ─▶ θ (B, 2, 3) ─▶ grid_sample ─▶ (B, 3, 32, 32)
      ─▶ conv 16 ─▶ conv 32 /2 ─▶ conv 32 ─▶ conv 64 /2 ─▶ 4×4 pool ─▶ linear 128 ─▶ linear
      ─▶ logits (B, L)

:func:`crop_boxes` cuts the crops out of full frames on any device with the same sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perception.models.centernet import ConvBNReLU

LIGHT_LABELS = ("light_red", "light_yellow", "light_green", "light_off")  # LightState 0..3


@dataclass(frozen=True)
class StnClassifierConfig:
    crop: int = 32  # side of the square crop (px)
    margin: float = 0.15  # the crop extends the box by this share of its size on every side
    speed_values_kmh: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130)
    width: int = 32  # channels of the classifier's middle layers
    grid: int = 4  # the head reads the features pooled to grid × grid cells
    hidden: int = 128  # units of the head's hidden layer

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label, signs first: stop, yield, limit_<v>..., then the light states."""
        limits = tuple(f"limit_{v}" for v in self.speed_values_kmh)
        return ("stop", "yield", *limits, *LIGHT_LABELS)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def group_mask(self, group: str) -> Tensor:
        """Boolean ``(L,)`` of the labels of ``group`` (``sign`` or ``light``)."""
        is_light = torch.tensor([lab.startswith("light_") for lab in self.labels])
        return is_light if group == "light" else ~is_light


class StnClassifier(nn.Module):
    """``forward(crops (B, 3, S, S) in [0, 1]) -> logits (B, L)``."""

    def __init__(self, cfg: StnClassifierConfig = StnClassifierConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.loc = nn.Sequential(
            ConvBNReLU(3, 8, stride=2),  # (B, 8, S/2, S/2)
            ConvBNReLU(8, 16, stride=2),  # (B, 16, S/4, S/4)
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(16 * 16, 32),
            nn.ReLU(inplace=True),
            nn.Linear(32, 6),
        )
        # Identity warp at the start: the transformer only learns to move what helps.
        last = self.loc[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        w = cfg.width
        self.features = nn.Sequential(
            ConvBNReLU(3, w // 2),
            ConvBNReLU(w // 2, w, stride=2),
            ConvBNReLU(w, w),
            ConvBNReLU(w, 2 * w, stride=2),
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(cfg.grid),
            nn.Flatten(),
            nn.Linear(2 * w * cfg.grid**2, cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.hidden, cfg.num_labels),
        )

    def warp(self, crops: Tensor) -> Tensor:
        """The crops as the spatial transformer re-frames them, ``(B, 3, S, S)``."""
        x = (crops - 0.5) / 0.25
        theta = self.loc(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(crops.shape), align_corners=False)
        return F.grid_sample(crops, grid, padding_mode="border", align_corners=False)

    def forward(self, crops: Tensor) -> Tensor:
        x = (self.warp(crops) - 0.5) / 0.25
        return self.head(self.features(x))


def crop_boxes(
    images: Tensor, boxes: Tensor, image_index: Tensor, size: int, margin: float
) -> Tensor:
    """Bilinear crops ``(N, 3, size, size)`` of boxes ``(N, 4)`` (px, COCO edges) of images.

    :param images: ``(B, 3, H, W)`` in [0, 1]
    :param image_index: ``(N,)`` which image each box belongs to
    :param margin: share of the box's width/height added on each side
    """
    if len(boxes) == 0:
        return images.new_zeros(0, 3, size, size)
    h, w = images.shape[-2:]
    bw = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0) * (1 + 2 * margin)
    bh = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0) * (1 + 2 * margin)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    theta = torch.zeros(len(boxes), 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = bw / w  # output [-1, 1] spans the box's width in normalised input units
    theta[:, 0, 2] = cx / w * 2 - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = cy / h * 2 - 1
    grid = F.affine_grid(theta, [len(boxes), 3, size, size], align_corners=False)
    # one image (the perceiver's frame): a view of it per box, not a copy
    src = images.expand(len(boxes), -1, -1, -1) if len(images) == 1 else images[image_index]
    return F.grid_sample(src, grid, padding_mode="border", align_corners=False)
