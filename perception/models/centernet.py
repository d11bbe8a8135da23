"""The anchor-free detection head both detectors share (CenterNet, Zhou et al. 2019).

A detector is a backbone that turns an image ``(B, 3, H, W)`` into a feature map at ``stride``
(here 4), and this head, which predicts on that map:

- ``heatmap`` ``(B, C, H/s, W/s)``: logits of "an object of class c has its centre here";
- ``size`` ``(B, 2, H/s, W/s)``: log of the box width and height, in input pixels / stride;
- ``offset`` ``(B, 2, H/s, W/s)``: the centre relative to the cell, in cells (0..1 in the
  centre's own cell, the one decoding reads).

Training targets are Gaussian peaks at the box centres (elliptical, TTFNet-style, so long thin
boxes such as traffic-light heads get a peak of their shape); the loss is CenterNet's focal loss
on the heatmap, L1 on size and offset at the centres, and (TTFNet again) a GIoU loss on the box
decoded at every cell under the object's peak, weighted by the peak: the heatmap of a large
object may peak a cell or two off its centre, and the cells there must box it too. Decoding
keeps the local maxima above a score (in a 3×3 neighbourhood), the top-k of them, boxes only
those (optionally voting each one's box with the boxes its neighbours draw, ``vote_boxes``),
and runs a per-class NMS for the rare duplicate: a box overlapping a better one of its class by
more than an IoU threshold, or lying almost wholly inside it or around it.

Boxes everywhere are ``x0, y0, x1, y1`` in input pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sim.errors import DrivestackError

GAUSS_ALPHA = 0.54  # TTFNet: sigma = alpha * side / 6, so a box's peak covers its inner half
MIN_SIGMA_CELLS = 0.5
BOX_REGION = 0.1  # cells where an object's Gaussian is above this learn to box it (GIoU)


def check_space_to_depth(cfg: object, s2d: int, stride: int, base: int = 4) -> None:
    """A detector config ``cfg``'s ``space_to_depth`` (an integer from 1) and the heads'
    ``stride`` it implies (``base``, the neck's own stride, × it): one message for the CNN's and
    the Transformer's."""
    kind = type(cfg).__name__
    if isinstance(s2d, bool) or not isinstance(s2d, int) or s2d < 1:
        raise DrivestackError(f"{kind}.space_to_depth {s2d!r}; allowed: 1, 2, ...")
    if stride != base * s2d:
        raise DrivestackError(
            f"{kind}.stride {stride}; it is {base} × space_to_depth ({base * s2d})"
        )


class ConvBNReLU(nn.Sequential):
    """3×3 (or k×k) convolution, batch norm, ReLU: the brick of every network here."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, k: int = 3) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class ResBlock(nn.Module):
    """Two 3×3 convolutions with an identity shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = ConvBNReLU(c, c)
        self.b = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.b(self.a(x)))


class CenterHead(nn.Module):
    """A shared 3×3 layer and three 1×1 outputs: heatmap, size, offset.

    With ``upscale`` u > 1 each cell predicts the u×u cells it holds at u times the resolution
    (sub-pixel convolution, Shi et al. 2016): the outputs have u² times the channels, and
    ``pixel_shuffle`` lays them out as maps u times finer than ``feat``."""

    def __init__(self, c_in: int, c_head: int, num_classes: int, upscale: int = 1) -> None:
        super().__init__()
        self.upscale = upscale
        u2 = upscale * upscale
        # One shared 3×3 layer, then a 1×1 per output: separate 3×3 branches would triple the
        # cost at stride 4, the most expensive resolution of the network.
        self.shared = ConvBNReLU(c_in, c_head)
        self.heatmap = nn.Conv2d(c_head, num_classes * u2, 1)
        self.size = nn.Conv2d(c_head, 2 * u2, 1)
        self.offset = nn.Conv2d(c_head, 2 * u2, 1)
        # Start with every cell at p = 0.01 so the focal loss does not explode at step 0.
        assert self.heatmap.bias is not None
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, feat: Tensor) -> dict[str, Tensor]:
        h = self.shared(feat)
        out = {"heatmap": self.heatmap(h), "size": self.size(h), "offset": self.offset(h)}
        if self.upscale > 1:
            out = {k: F.pixel_shuffle(v, self.upscale) for k, v in out.items()}
        return out


# ----------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Targets:
    """Training targets for a batch, on the output grid ``(h, w)`` of a given stride."""

    heatmap: Tensor  # (B, C, h, w) in [0, 1], 1 exactly at each centre cell
    size: Tensor  # (B, M, 2) log(w / stride), log(h / stride) of the M padded boxes
    offset: Tensor  # (B, M, 2) centre minus its cell, in cells
    index: Tensor  # (B, M) flat index y * w + x of each centre cell
    mask: Tensor  # (B, M) 1 for a real box, 0 for padding
    ignore: Tensor  # (B, C, h, w) 1 inside boxes too small or hidden to learn from
    box: Tensor  # (B, 4, h, w) x0, y0, x1, y1 in cells of the object each cell learns to box
    box_weight: Tensor  # (B, h, w) that cell's share of its object (sums to 1 per object)
    label: Tensor  # (B, M) class index of each box (0 for padding)
    box_label: Tensor  # (B, h, w) class index of the object each cell learns to box


def make_targets(
    boxes: list[Tensor],
    classes: list[Tensor],
    num_classes: int,
    out_hw: tuple[int, int],
    stride: int,
    ignore: list[Tensor] | None = None,
) -> Targets:
    """Targets from per-image boxes ``(N_i, 4)`` (input px) and class indices ``(N_i,)``.

    Boxes flagged in ``ignore`` (``(N_i,)`` bool) get no peak; their area is left out of the
    loss instead, so the network is neither taught to find a 1-pixel sign nor punished for it.
    Where the box regions of two objects overlap, the smaller object has the cell (TTFNet).
    """
    h, w = out_hw
    b = len(boxes)
    m = max(1, max((len(x) for x in boxes), default=1))
    heat = torch.zeros(b, num_classes, h, w)
    size = torch.zeros(b, m, 2)
    offset = torch.zeros(b, m, 2)
    index = torch.zeros(b, m, dtype=torch.long)
    mask = torch.zeros(b, m)
    ign = torch.zeros(b, num_classes, h, w)
    box_t = torch.zeros(b, 4, h, w)
    box_w = torch.zeros(b, h, w)
    label = torch.zeros(b, m, dtype=torch.long)
    box_l = torch.zeros(b, h, w, dtype=torch.long)
    ys = torch.arange(h, dtype=torch.float32)[:, None]
    xs = torch.arange(w, dtype=torch.float32)[None, :]
    for i, (bx, cl) in enumerate(zip(boxes, classes, strict=True)):
        areas = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
        for j in torch.argsort(areas, descending=True).tolist():  # the smallest writes last
            x0, y0, x1, y1 = (float(v) / stride for v in bx[j])
            if ignore is not None and bool(ignore[i][j]):
                r0, r1 = max(int(y0), 0), min(math.ceil(y1) + 1, h)
                c0, c1 = max(int(x0), 0), min(math.ceil(x1) + 1, w)
                ign[i, int(cl[j]), r0:r1, c0:c1] = 1.0
                continue
            bw, bh = max(x1 - x0, 1e-3), max(y1 - y0, 1e-3)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            ix, iy = min(max(int(cx), 0), w - 1), min(max(int(cy), 0), h - 1)
            sx = max(GAUSS_ALPHA * bw / 6, MIN_SIGMA_CELLS)
            sy = max(GAUSS_ALPHA * bh / 6, MIN_SIGMA_CELLS)
            g = torch.exp(-((xs - ix) ** 2) / (2 * sx**2) - ((ys - iy) ** 2) / (2 * sy**2))
            c = int(cl[j])
            heat[i, c] = torch.maximum(heat[i, c], g)
            size[i, j] = torch.tensor([math.log(bw), math.log(bh)])
            offset[i, j] = torch.tensor([cx - ix, cy - iy])
            index[i, j] = iy * w + ix
            mask[i, j] = 1.0
            label[i, j] = c
            region = g > BOX_REGION
            region[iy, ix] = True
            box_t[i, :, region] = torch.tensor([x0, y0, x1, y1])[:, None]
            box_w[i, region] = g[region] / g[region].sum()
            box_l[i, region] = c
    # A larger object loses the cells a smaller one takes: it then counts a little less than once.
    ign = ign * (heat < 1.0).float()
    return Targets(heat, size, offset, index, mask, ign, box_t, box_w, label, box_l)


# -------------------------------------------------------------------------------------- loss
def focal_loss(
    logits: Tensor,
    target: Tensor,
    ignore: Tensor | None = None,
    alpha: float = 2.0,
    beta: float = 4.0,
    class_weight: Tensor | None = None,
) -> Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, normalised by the number of centres;
    ``class_weight`` ``(C,)`` scales each class's map (its centres and its background)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).float()
    neg = 1.0 - pos
    if ignore is not None:
        neg = neg * (1.0 - ignore)
    pos_loss = torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = torch.log(1 - p) * p**alpha * (1 - target) ** beta * neg
    n = pos.sum().clamp(min=1.0)
    if class_weight is not None:
        w = class_weight.view(1, -1, 1, 1)
        return -((pos_loss + neg_loss) * w).sum() / n
    return -(pos_loss.sum() + neg_loss.sum()) / n


def _gather(feat: Tensor, index: Tensor) -> Tensor:
    """Values ``(B, M, K)`` of a map ``(B, K, h, w)`` at flat cell indices ``(B, M)``."""
    b, k = feat.shape[:2]
    flat = feat.reshape(b, k, -1)
    return flat.gather(2, index[:, None, :].expand(b, k, index.shape[1])).transpose(1, 2)


def _paired_intersection_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union areas of paired boxes ``(..., 4)``."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter, (area_a + area_b - inter).clamp(min=1e-9)


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of paired boxes ``(..., 4)`` (``box_iou`` gives all pairs)."""
    inter, union = _paired_intersection_union(a, b)
    return inter / union


def giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU (Rezatofighi et al. 2019) of paired boxes ``(..., 4)``: IoU minus the
    share of their enclosing box that neither covers; in [-1, 1], 1 for identical boxes."""
    inter, union = _paired_intersection_union(a, b)
    hull = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).prod(-1)
    return inter / union - (hull - union) / hull.clamp(min=1e-9)


def cell_boxes(size: Tensor, offset: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Boxes ``(..., 4)`` x0, y0, x1, y1 in cells from the size logits and centre offsets
    ``(2, ...)`` predicted at the cells ``x``, ``y`` (broadcast to ``(...)``)."""
    wh = size.clamp(-4.0, 6.0).exp()  # untrained cells must not overflow
    cx, cy = x + offset[0], y + offset[1]
    bw, bh = wh[0], wh[1]
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)


def dense_boxes(pred: dict[str, Tensor]) -> Tensor:
    """The box ``(B, h, w, 4)`` in cells that each cell's size and offset describe: the box
    ``decode`` reads there (the GIoU loss learns every cell's)."""
    h, w = pred["size"].shape[-2:]
    ys = torch.arange(h, device=pred["size"].device, dtype=pred["size"].dtype)[:, None]
    xs = torch.arange(w, device=pred["size"].device, dtype=pred["size"].dtype)[None, :]
    return cell_boxes(pred["size"].movedim(1, 0), pred["offset"].movedim(1, 0), xs, ys)


def centernet_loss(
    pred: dict[str, Tensor],
    t: Targets,
    size_weight: float = 0.1,
    offset_weight: float = 1.0,
    giou_weight: float = 0.0,
    class_weight: Tensor | None = None,
    box_class_weight: Tensor | None = None,
) -> dict[str, Tensor]:
    """Named loss terms and their weighted sum ``total``; ``class_weight`` ``(C,)`` weighs each
    class's heatmap (:func:`focal_loss`), ``box_class_weight`` ``(C,)`` each class's boxes (its
    objects' size, offset and GIoU terms). Both keep the normaliser, the number of objects, so a
    class weighed more takes a larger share of its terms."""
    hm = focal_loss(pred["heatmap"], t.heatmap, t.ignore, class_weight=class_weight)
    n = t.mask.sum().clamp(min=1.0)
    m = t.mask[..., None]
    box_weight = t.box_weight
    if box_class_weight is not None:
        m = m * box_class_weight[t.label][..., None]
        box_weight = box_weight * box_class_weight[t.box_label]
    size = (F.l1_loss(_gather(pred["size"], t.index), t.size, reduction="none") * m).sum() / n
    off = (F.l1_loss(_gather(pred["offset"], t.index), t.offset, reduction="none") * m).sum() / n
    total = hm + size_weight * size + offset_weight * off
    out = {"heatmap": hm, "size": size, "offset": off}
    if giou_weight > 0:
        cells = t.box_weight > 0
        g = giou(dense_boxes(pred)[cells], t.box.permute(0, 2, 3, 1)[cells])
        out["giou"] = ((1.0 - g) * box_weight[cells]).sum() / n
        total = total + giou_weight * out["giou"]
    return {"total": total, **out}


# ---------------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class Detections:
    """Detections of one image: parallel tensors, boxes in input pixels."""

    boxes: Tensor  # (N, 4) x0, y0, x1, y1
    scores: Tensor  # (N,)
    labels: Tensor  # (N,) class index 0..C-1


def _areas_and_intersection(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Areas ``(N,)`` and ``(M,)`` of boxes ``(N, 4)`` and ``(M, 4)``, and their pairwise
    intersections ``(N, M)``."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    return area_a, area_b, (rb - lt).clamp(min=0).prod(-1)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU ``(N, M)`` of boxes ``(N, 4)`` and ``(M, 4)``."""
    return box_iou_and_overlap(a, b)[0]


def box_iou_and_overlap(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise ``(N, M)`` IoU, and intersection over the smaller box's area (1: one lies
    wholly inside the other), of boxes ``(N, 4)`` and ``(M, 4)``."""
    area_a, area_b, inter = _areas_and_intersection(a, b)
    iou = inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)
    return iou, inter / torch.minimum(area_a[:, None], area_b[None, :]).clamp(min=1e-9)


def nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float,
    contain_threshold: float = 1.01,
) -> Tensor:
    """Indices kept by greedy per-class non-maximum suppression, best score first.

    A box is suppressed by a better one of its class when their IoU exceeds ``iou_threshold``,
    or when the intersection covers more than ``contain_threshold`` of the smaller one: a box
    drawn around a better box, or inside it, is the same object boxed again (the default,
    over 1, turns this off). IoU alone keeps them: a car boxed with twice its size overlaps
    its true box by IoU 0.25. Of boxes scoring the same (a plateau of the heatmap), the one
    given first is kept: the order is a stable sort's.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    if len(order) == 0:
        return order
    b = boxes[order]
    same = labels[order][:, None] == labels[order][None, :]
    iou, inside = box_iou_and_overlap(b, b)
    suppress = ((iou > iou_threshold) | (inside > contain_threshold)) & same
    rows = suppress.tolist()  # N is at most top-k (~100): a Python loop on lists is fine
    keep = [True] * len(rows)
    for i, row in enumerate(rows):
        if keep[i]:
            for j in range(i + 1, len(row)):
                keep[j] = keep[j] and not row[j]
    return order[torch.tensor(keep, device=boxes.device)]


NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # a 3×3, row by row
CENTRE = 4  # the cell itself, in NEIGHBOURS


def vote_boxes(boxes: Tensor, heat: Tensor, min_iou: float) -> Tensor:
    """Each peak's box ``(N, 4)`` as the mean of the boxes ``(N, 9, 4)`` its 3×3 neighbourhood
    describes (``NEIGHBOURS``; the peak's own is ``CENTRE``), weighted by the square of their
    heat ``(N, 9)`` for the peak's class (none outside the map: heat -inf), over the neighbours
    whose box overlaps the peak's by IoU ≥ ``min_iou`` (the peak's own always counts).

    Every cell under an object's peak learned to box it (the GIoU loss), so their mean is a
    less noisy box than the peak's alone (box voting, Gidaris and Komodakis 2015): at 320×240,
    where most boxes are a few pixels, that noise is much of a box's IoU. The overlap keeps out
    the cells of a neighbouring object of the class.
    """
    own = boxes[:, CENTRE : CENTRE + 1]
    weight = heat.clamp(min=0) ** 2 * (paired_iou(boxes, own) >= min_iou)
    return (boxes * weight[..., None]).sum(1) / weight.sum(1, keepdim=True).clamp(min=1e-12)


def decode(
    pred: dict[str, Tensor],
    stride: int,
    top_k: int = 64,
    score_threshold: float = 0.1,
    iou_threshold: float = 0.6,
    contain_threshold: float = 1.01,
    vote_iou: float | None = None,
) -> list[Detections]:
    """Turn head outputs into per-image detections (boxes in input pixels).

    The peaks are the cells scoring at least ``score_threshold`` that no cell of their class's
    3×3 neighbourhood outscores (ties are peaks too: ``F.max_pool2d(heat, 3, 1, 1) == heat``),
    the ``top_k`` best of them where there are more; each is boxed at its cell or, with
    ``vote_iou``, by its neighbourhood (``vote_boxes``); then ``nms``. Only the cells above the
    score and their neighbours are looked at, a few of the map's thousands: boxing every cell
    and a 3×3 max over the whole map took the CNN's frames 2.0 ms to decode on one core of an
    AVX2 VM, this 1.4 ms, with the same detections (docs/perception.md, "Decoding at the
    peaks").
    """
    heat = torch.sigmoid(pred["heatmap"])  # (B, C, h, w)
    b, _, h, w = heat.shape
    # every map gets a border of one cell, so a 3×3 neighbourhood is 9 fixed steps of a flat
    # index: heat -inf there (never a rival, no weight in a vote), size and offset 0
    hp, wp = h + 2, w + 2
    heat_p = F.pad(heat, (1, 1, 1, 1), value=-math.inf).flatten(1)  # (B, C * hp * wp)
    size_p = F.pad(pred["size"], (1, 1, 1, 1)).flatten(2)  # (B, 2, hp * wp)
    offset_p = F.pad(pred["offset"], (1, 1, 1, 1)).flatten(2)
    steps = torch.tensor([dy * wp + dx for dy, dx in NEIGHBOURS], device=heat.device)
    out = []
    for i in range(b):
        flat = (heat_p[i] >= score_threshold).nonzero()[:, 0]  # over classes and cells
        near = flat[:, None] + steps  # (N, 9)
        around = heat_p[i][near]
        peak = (around.amax(1) == around[:, CENTRE]).nonzero()[:, 0]
        if len(peak) > top_k:
            peak = peak[around[peak, CENTRE].topk(top_k).indices]
        flat, near, around = flat[peak], near[peak], around[peak]
        scores, labels = around[:, CENTRE], flat // (hp * wp)
        cells = (near if vote_iou is not None else flat[:, None]) % (hp * wp)
        x = (cells % wp - 1).to(heat.dtype)  # in cells of the unpadded map
        y = (cells // wp - 1).to(heat.dtype)
        boxes = cell_boxes(size_p[i][:, cells], offset_p[i][:, cells], x, y)  # (N, 9 or 1, 4)
        boxes = boxes[:, 0] if vote_iou is None else vote_boxes(boxes, around, vote_iou)
        boxes = boxes * stride
        k = nms(boxes, scores, labels, iou_threshold, contain_threshold)
        out.append(Detections(boxes[k], scores[k], labels[k]))
    return out
