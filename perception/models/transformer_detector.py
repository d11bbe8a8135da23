"""A Transformer detector: a ViT encoder over image patches under the CenterNet heads.

The backbone is a hybrid ViT (Dosovitskiy et al. 2021, "hybrid" variant): a two-layer conv stem
makes a stride-4 feature map, a strided convolution cuts it into 16×16-pixel patch tokens, and a
stack of pre-norm Transformer encoder blocks lets every patch attend to every other. The tokens
are folded back into a map, upsampled to stride 4, added to the stem's features (which keep the
fine detail a 6-pixel sign needs) and fed to the same heads as the CNN (centernet.py), so the two
detectors differ only in how they see context: convolutions versus global self-attention.

Shapes for the default 240×320 input and ``dim = 96``::

    image                          (B, 3, 240, 320)
    stem          stride 4         (B, 24, 60, 80)  ───────────────────────┐
    patch embed   stride 16        (B, 300, 96)      tokens + 2D position  │
    encoder × depth                (B, 300, 96)                            │
    fold + up ×4 + 1×1             (B, 24, 60, 80)  ◀──────────────────────┘ (sum)
    heads                          heatmap (B, C, 60, 80), size, offset

With ``s8`` (channels; 0 by default) a stride-8 stage sits between the stem and the patches,
as the hybrid ViT's ResNet stages do, and the way back has the CNN's stride-8 level::

    stem          stride 4         (B, 24, 60, 80)  ───────────────────────────────┐
    stage         stride 8         (B, s8, 30, 40)  ────────────────────────┐      │
    patch embed   stride 16        (B, 300, 96)  → encoder × depth          │      │
    fold + up ×2 + 1×1             (B, s8, 30, 40)  ◀───────────────────────┘ sum  │
    3×3, 1×1 + up ×2               (B, 24, 60, 80)  ◀──────────────────────────────┘ sum

A DETR-style set decoder was the alternative; its Hungarian-matched training needs hundreds of
epochs, which a 2-core CPU cannot give, so the encoder sits under dense heads instead.
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
class TransformerDetectorConfig:
    num_classes: int = 6  # DetectionClass values 1..6 map to indices 0..5
    input_hw: tuple[int, int] = (240, 320)  # (H, W) px; multiples of stride × patch (16)
    stem: int = 24  # channels of the stride-4 stem
    stem_blocks: int = 0  # residual blocks at the end of the stem, at stride 4
    s8: int = 0  # channels of a stride-8 stage (a strided conv and a residual block) between the
    # stem and the tokens, and of a stride-8 level on the way back (the CNN's top-down neck);
    # 0: none, the patches are cut from the stride-4 stem and the tokens go back to it at once
    patch: int = 4  # patch size on the stem map: 4 cells × stride 4 = 16 px
    dim: int = 96  # token width
    depth: int = 4  # encoder blocks
    heads: int = 4  # attention heads
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    head: int = 24  # channels of the shared head layer
    stride: int = 4  # output stride of the heads: 4 (the stem's) times space_to_depth
    space_to_depth: int = 1  # the frame's s×s pixel blocks stacked as channels before the stem,
    # as the CNN's (cnn_detector.py): at 2 a 640×480 frame gives the 320×240 frame's 300 tokens

    def __post_init__(self) -> None:
        check_space_to_depth(self, self.space_to_depth, self.stride)
        for name in ("stem_blocks", "s8"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise DrivestackError(
                    f"TransformerDetectorConfig.{name} {v!r}; allowed: an integer of at least 0"
                )
        if self.s8 and self.patch % 2:
            raise DrivestackError(
                f"TransformerDetectorConfig.patch {self.patch} with s8 {self.s8}; a stride-8"
                " stage takes an even patch (cells of the stride-4 map)"
            )


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TransformerDetector(nn.Module):
    """``forward(images (B, 3, H, W) in [0, 1]) -> {heatmap, size, offset}`` at stride 4."""

    def __init__(self, cfg: TransformerDetectorConfig = TransformerDetectorConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        h, w = cfg.input_hw
        cell = cfg.stride * cfg.patch
        if h % cell or w % cell:
            raise ValueError(f"input_hw {cfg.input_hw} must be multiples of {cell}")
        self.grid = (h // cell, w // cell)  # (15, 20) tokens by default
        self.stem = nn.Sequential(
            ConvBNReLU(3 * cfg.space_to_depth**2, cfg.stem // 2, stride=2),
            ConvBNReLU(cfg.stem // 2, cfg.stem, stride=2),
            *(ResBlock(cfg.stem) for _ in range(cfg.stem_blocks)),
        )
        self.s8: nn.Module | None = None
        if cfg.s8:  # stride 8, then patches of patch/2 cells of it
            self.s8 = nn.Sequential(ConvBNReLU(cfg.stem, cfg.s8, stride=2), ResBlock(cfg.s8))
            self.embed = nn.Conv2d(cfg.s8, cfg.dim, cfg.patch // 2, cfg.patch // 2)
        else:
            self.embed = nn.Conv2d(cfg.stem, cfg.dim, cfg.patch, cfg.patch)
        self.pos = nn.Parameter(torch.zeros(1, cfg.dim, *self.grid))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            EncoderBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        if cfg.s8:  # tokens up to stride 8, then that level up to stride 4
            self.unembed = nn.Conv2d(cfg.dim, cfg.s8, 1)
            self.fuse8 = ConvBNReLU(cfg.s8, cfg.s8)
            self.lat4 = nn.Conv2d(cfg.s8, cfg.stem, 1)
        else:
            self.unembed = nn.Conv2d(cfg.dim, cfg.stem, 1)
        self.fuse = ConvBNReLU(cfg.stem, cfg.stem)
        self.head = CenterHead(cfg.stem, cfg.head, cfg.num_classes)

    def forward(self, images: Tensor, origin: tuple[int, int] = (0, 0)) -> dict[str, Tensor]:
        """:param origin: ``(y, x)`` px of a training crop in the full frame (multiples of
        stride × patch): its tokens take the position embeddings of the cells they came from"""
        x = (images - 0.5) / 0.25
        if self.cfg.space_to_depth > 1:
            x = F.pixel_unshuffle(x, self.cfg.space_to_depth)
        f4 = self.stem(x)  # (B, S, H/4, W/4) (H/stride: space_to_depth times that)
        f8 = None if self.s8 is None else self.s8(f4)  # (B, S8, H/8, W/8)
        t = self.embed(f4 if f8 is None else f8)  # (B, D, H/16, W/16)
        pos: Tensor = self.pos
        cell = self.cfg.stride * self.cfg.patch
        gy, gx = origin[0] // cell, origin[1] // cell
        gh, gw = t.shape[-2:]
        if gy + gh <= pos.shape[-2] and gx + gw <= pos.shape[-1]:  # the frame or a crop of it
            pos = pos[:, :, gy : gy + gh, gx : gx + gw]
        else:  # a larger input: stretch the position grid
            pos = F.interpolate(pos, size=(gh, gw), mode="bilinear", align_corners=False)
        t = t + pos
        b, d, gh, gw = t.shape
        tokens = t.flatten(2).transpose(1, 2)  # (B, N, D)
        for blk in self.blocks:
            tokens = blk(tokens)
        tokens = self.norm(tokens)
        g = tokens.transpose(1, 2).reshape(b, d, gh, gw)  # (B, D, H/16, W/16)
        up = self.unembed(g)
        if f8 is not None:
            up = F.interpolate(up, size=f8.shape[-2:], mode="bilinear", align_corners=False)
            up = self.lat4(self.fuse8(f8 + up))
        up = F.interpolate(up, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.fuse(f4 + up))
