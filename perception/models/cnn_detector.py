"""A small single-stage CNN detector: a residual backbone, a top-down neck, CenterNet heads.

Shapes for the default 240×320 input::

    image                      (B, 3, 240, 320)
    stem    stride 2           (B,  8, 120, 160)
    stage 1 stride 4           (B, 16,  60,  80)  ─────────────┐
    stage 2 stride 8           (B, 32,  30,  40)  ───────┐     │
    stage 3 stride 16          (B, 64,  15,  20)         │     │
    neck    up ×2 + lateral    (B, 32,  30,  40)  ◀──────┘     │
            up ×2 + lateral    (B, 16,  60,  80)  ◀────────────┘
    heads   (centernet.py)     heatmap (B, C, 60, 80), size, offset

Stride 4 keeps a 6-pixel sign 1.5 cells wide, enough to find it; the backbone's stride 16 sees
far enough around a car to tell it from a wall. It is sized to run a 320×240 frame in a few
milliseconds on one CPU core.

With ``space_to_depth = 2`` (perception/configs/experiments/cnn640.yaml) a 640×480 frame's 2×2
pixel blocks are stacked as 12 channels before the stem (YOLOv5's Focus): the same network on
the same 320×240 grid, with every pixel of the larger frame under it, its heads at stride 8.

With ``fine`` the neck goes one level further down, onto the stem's stride-2 map, and the heads
read there (``stride`` 2)::

    neck    up ×2 + lateral    (B,  8, 120, 160)  ◀── stem
    heads                      heatmap (B, C, 120, 160), size, offset

A pedestrian 30 m away is 3-4 px wide at 320×240: under one stride-4 cell, and most of those
the stride-4 heads never box. The stride-2 level costs the network a quarter to a half more
time; with ``subpixel`` too the heads read at stride 4, the stem's map stacked in as channels,
and each cell predicts its 2×2 cells of the stride-2 maps, at the stride-4 network's cost. Both
box more of those pedestrians and lose elsewhere; neither is shipped (docs/perception.md,
"Heads at stride 2").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perception.models.centernet import (
    CenterHead,
    ConvBNReLU,
    ResBlock,
    check_space_to_depth,
)
from sim.errors import DrivestackError


@dataclass(frozen=True)
class CnnDetectorConfig:
    num_classes: int = 6  # DetectionClass values 1..6 map to indices 0..5
    input_hw: tuple[int, int] = (240, 320)  # (H, W) px the network sees; frames are resized
    stem: int = 8  # channels at stride 2
    widths: tuple[int, int, int] = (16, 32, 64)  # channels at strides 4, 8, 16
    blocks: tuple[int, int, int] = (0, 1, 2)  # residual blocks per stage (none at stride 4:
    # it is the costliest resolution; depth goes where the maps are small)
    head: int = 24  # channels of the shared head layer
    stride: int = 4  # output stride of the heads: 4 (the neck's; 2 with fine) × space_to_depth
    space_to_depth: int = 1  # the frame's s×s pixel blocks stacked as channels before the stem
    # (YOLOv5's Focus): at 2 a 640×480 frame runs on the 320×240 frame's grid with every pixel
    # under it, in 1.9 times its time (docs/perception.md, "The CNN on 640×480 frames")
    fine: bool = False  # the neck's last level on the stem's stride-2 map, the heads there
    subpixel: bool = False  # with fine: the stride-2 maps predicted from stride 4, each cell its
    # 2×2 sub-cells (CenterHead's upscale), the stem's map stacked in as channels: the stem's
    # pixels reach the heads at a fraction of a stride-2 head's cost

    def __post_init__(self) -> None:
        check_space_to_depth(self, self.space_to_depth, self.stride, 2 if self.fine else 4)
        if self.subpixel and not self.fine:
            raise DrivestackError("CnnDetectorConfig.subpixel needs fine: the heads at stride 2")


def _stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(
        ConvBNReLU(c_in, c_out, stride=2), *(ResBlock(c_out) for _ in range(blocks))
    )


class CnnDetector(nn.Module):
    """``forward(images (B, 3, H, W) in [0, 1]) -> {heatmap, size, offset}`` at stride 4
    (2 with ``fine``)."""

    def __init__(self, cfg: CnnDetectorConfig = CnnDetectorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w4, w8, w16 = cfg.widths
        self.stem = ConvBNReLU(3 * cfg.space_to_depth**2, cfg.stem, stride=2)
        self.s4 = _stage(cfg.stem, w4, cfg.blocks[0])
        self.s8 = _stage(w4, w8, cfg.blocks[1])
        self.s16 = _stage(w8, w16, cfg.blocks[2])
        self.lat8 = nn.Conv2d(w16, w8, 1)
        self.fuse8 = ConvBNReLU(w8, w8)
        self.lat4 = nn.Conv2d(w8, w4, 1)
        self.fuse4 = ConvBNReLU(w4, w4)
        if cfg.subpixel:  # the stem's 2×2 cells as channels beside the neck's, mixed 1×1
            self.mix4 = ConvBNReLU(w4 + 4 * cfg.stem, w4, k=1)
            self.head = CenterHead(w4, cfg.head, cfg.num_classes, upscale=2)
        elif cfg.fine:
            self.lat2 = nn.Conv2d(w4, cfg.stem, 1)
            self.fuse2 = ConvBNReLU(cfg.stem, cfg.stem)
            self.head = CenterHead(cfg.stem, cfg.head, cfg.num_classes)
        else:
            self.head = CenterHead(w4, cfg.head, cfg.num_classes)

    def forward(self, images: Tensor, origin: tuple[int, int] = (0, 0)) -> dict[str, Tensor]:
        """:param origin: where a training crop sits in the full frame (px); convolutions do
        not care, the argument keeps the detectors' signatures alike"""
        x = (images - 0.5) / 0.25  # roughly zero-mean, unit-variance pixels
        if self.cfg.space_to_depth > 1:
            x = F.pixel_unshuffle(x, self.cfg.space_to_depth)
        f2 = self.stem(x)  # (B, stem, H/2, W/2)
        f4 = self.s4(f2)  # (B, w4, H/4, W/4)
        f8 = self.s8(f4)  # (B, w8, H/8, W/8)
        f16 = self.s16(f8)  # (B, w16, H/16, W/16)
        up8 = F.interpolate(self.lat8(f16), size=f8.shape[-2:], mode="nearest")
        n8 = self.fuse8(f8 + up8)
        up4 = F.interpolate(self.lat4(n8), size=f4.shape[-2:], mode="nearest")
        n4 = self.fuse4(f4 + up4)
        if self.cfg.subpixel:
            return self.head(self.mix4(torch.cat([n4, F.pixel_unshuffle(f2, 2)], 1)))
        if not self.cfg.fine:
            return self.head(n4)
        up2 = F.interpolate(self.lat2(n4), size=f2.shape[-2:], mode="nearest")
        return self.head(self.fuse2(f2 + up2))
