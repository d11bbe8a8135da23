"""Shapes, a loss that falls on a tiny batch, and decoding/NMS on hand-made and random heads."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from perception.models.centernet import (
    box_iou,
    centernet_loss,
    decode,
    dense_boxes,
    giou,
    make_targets,
    nms,
    paired_iou,
)
from perception.models.cnn_detector import CnnDetector, CnnDetectorConfig
from perception.models.inference import for_inference
from perception.models.stn_classifier import StnClassifier, StnClassifierConfig, crop_boxes
from perception.models.transformer_detector import (
    TransformerDetector,
    TransformerDetectorConfig,
)
from sim.errors import DrivestackError

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "model",
    [
        CnnDetector(CnnDetectorConfig(input_hw=(96, 128))),
        TransformerDetector(TransformerDetectorConfig(input_hw=(96, 128), depth=1)),
        TransformerDetector(TransformerDetectorConfig(input_hw=(96, 128), depth=1, stem_blocks=2)),
        TransformerDetector(TransformerDetectorConfig(input_hw=(96, 128), depth=1, s8=16)),
    ],
    ids=["cnn", "transformer", "transformer-stride-4-blocks", "transformer-stride-8-stage"],
)
def test_detector_output_shapes(model: torch.nn.Module) -> None:
    out = model(torch.rand(2, 3, 96, 128))
    assert out["heatmap"].shape == (2, 6, 24, 32)
    assert out["size"].shape == (2, 2, 24, 32)
    assert out["offset"].shape == (2, 2, 24, 32)


def test_a_space_to_depth_stem_stacks_each_pixel_block_as_channels() -> None:
    """At 2, a 640×480 frame gives the heads the 80×60 grid a 320×240 frame gives the shipped
    CNN (stride 8); the stem's 12 input channels are the 2×2 blocks' pixels, channel
    4c + 2dy + dx at cell (y, x) being pixel (2y + dy, 2x + dx) of colour c."""
    cfg = CnnDetectorConfig(input_hw=(480, 640), stride=8, space_to_depth=2)
    model = CnnDetector(cfg).eval()
    out = model(torch.rand(1, 3, 480, 640))
    assert out["heatmap"].shape == (1, 6, 60, 80) and out["size"].shape == (1, 2, 60, 80)
    seen: list[torch.Tensor] = []
    model.stem.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    img = torch.rand(1, 3, 8, 8)
    model(img)
    x = (img - 0.5) / 0.25
    for c, dy, dx in [(0, 0, 0), (1, 0, 1), (2, 1, 0), (2, 1, 1)]:
        torch.testing.assert_close(seen[0][0, c * 4 + dy * 2 + dx], x[0, c, dy::2, dx::2])
    with pytest.raises(DrivestackError, match=r"stride 4; it is 4 × space_to_depth \(8\)"):
        CnnDetectorConfig(space_to_depth=2)
    with pytest.raises(DrivestackError, match=r"^TransformerDetectorConfig.stride 4; it is 4 ×"):
        TransformerDetectorConfig(space_to_depth=2)
    with pytest.raises(DrivestackError, match=r"^CnnDetectorConfig.space_to_depth 0; allowed"):
        CnnDetectorConfig(space_to_depth=0)


def test_fine_heads_read_the_stems_map_at_stride_2() -> None:
    """With ``fine`` the neck's last level is the stem's stride-2 map: twice the cells a side,
    the heads reading the stem's features plus what the stride-4 level adds (with that lateral
    path zeroed, the stem's alone); the config's stride must say 2."""
    cfg = CnnDetectorConfig(input_hw=(96, 128), stride=2, fine=True)
    model = CnnDetector(cfg).eval()
    img = torch.rand(2, 3, 96, 128)
    out = model(img)
    assert out["heatmap"].shape == (2, 6, 48, 64)
    assert out["size"].shape == out["offset"].shape == (2, 2, 48, 64)
    assert model.head.shared[0].in_channels == cfg.stem
    seen: list[torch.Tensor] = []
    model.head.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model.lat2.weight.zero_()
        assert model.lat2.bias is not None
        model.lat2.bias.zero_()
        model(img)
        torch.testing.assert_close(seen[0], model.fuse2(model.stem((img - 0.5) / 0.25)))
    with pytest.raises(
        DrivestackError, match=r"^CnnDetectorConfig.stride 4; it is 2 × space_to_depth \(2\)"
    ):
        CnnDetectorConfig(fine=True)
    assert CnnDetectorConfig(input_hw=(480, 640), stride=4, space_to_depth=2, fine=True).stride == 4
    with pytest.raises(DrivestackError, match=r"^CnnDetectorConfig.subpixel needs fine"):
        CnnDetectorConfig(subpixel=True)


def test_subpixel_heads_lay_each_cells_four_predictions_out_at_stride_2() -> None:
    """With ``subpixel`` the heads read at stride 4 and each cell predicts its 2×2 cells of
    the stride-2 maps: output channel 4c + 2dy + dx of a cell (y, x) is map c at (2y + dy,
    2x + dx); the stem's map reaches them stacked as channels."""
    cfg = CnnDetectorConfig(input_hw=(96, 128), stride=2, fine=True, subpixel=True)
    model = CnnDetector(cfg).eval()
    raw: list[torch.Tensor] = []
    model.head.heatmap.register_forward_hook(lambda m, args, out: raw.append(out))
    out = model(torch.rand(2, 3, 96, 128))
    assert out["heatmap"].shape == (2, 6, 48, 64)
    assert out["size"].shape == out["offset"].shape == (2, 2, 48, 64)
    assert raw[0].shape == (2, 24, 24, 32)
    for c, dy, dx in [(0, 0, 0), (2, 0, 1), (5, 1, 0), (3, 1, 1)]:
        torch.testing.assert_close(
            out["heatmap"][:, c, dy::2, dx::2], raw[0][:, 4 * c + 2 * dy + dx]
        )
    assert model.mix4[0].in_channels == cfg.widths[0] + 4 * cfg.stem


def test_a_stride_8_stage_keeps_the_tokens_and_feeds_the_way_back() -> None:
    """With ``s8`` the patches are cut from a stride-8 map, half as many cells a side: the same
    300 tokens of 16 px for a 320×240 frame; the tokens go back through that level, so the
    heads see it; an odd patch has no stride-8 half and is refused."""
    torch.manual_seed(0)
    model = TransformerDetector(TransformerDetectorConfig(s8=32, depth=1)).eval()
    assert model.s8 is not None and model.embed.kernel_size == (2, 2)
    seen: dict[str, tuple[int, ...]] = {}
    model.embed.register_forward_hook(lambda m, a, out: seen.update(tokens=tuple(out.shape)))
    model.fuse8.register_forward_hook(lambda m, a, out: seen.update(s8=tuple(out.shape)))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 240, 320))
    assert seen == {"tokens": (1, 96, 15, 20), "s8": (1, 32, 30, 40)}
    assert out["heatmap"].shape == (1, 6, 60, 80)
    assert TransformerDetector(TransformerDetectorConfig(depth=1)).s8 is None
    with pytest.raises(DrivestackError, match=r"^TransformerDetectorConfig.patch 3 with s8 32; a"):
        TransformerDetectorConfig(s8=32, patch=3)
    with pytest.raises(DrivestackError, match=r"^TransformerDetectorConfig.s8 -8; allowed: an"):
        TransformerDetectorConfig(s8=-8)
    with pytest.raises(DrivestackError, match=r"^TransformerDetectorConfig.stem_blocks 1.5; all"):
        TransformerDetectorConfig(stem_blocks=1.5)  # type: ignore[arg-type]


def test_the_640_experiment_configs_build_those_detectors() -> None:
    from perception.train import build_model, load_train_config

    cfg = load_train_config("perception/configs/experiments/cnn640.yaml")
    model = build_model(cfg)
    assert isinstance(model, CnnDetector) and model.cfg.space_to_depth == 2
    assert model.cfg.input_hw == (480, 640) and cfg.crop_hw == (320, 448)
    cfg = load_train_config("perception/configs/experiments/transformer640.yaml")
    tr = build_model(cfg)
    assert isinstance(tr, TransformerDetector) and tr.grid == (15, 20)  # the 320×240 tokens
    out = tr(torch.rand(1, 3, 480, 640))
    assert out["heatmap"].shape == (1, 6, 60, 80)
    wide = build_model(load_train_config("perception/configs/experiments/transformer640w.yaml"))
    assert isinstance(wide, TransformerDetector) and wide.grid == (15, 20)
    assert wide.cfg.stem == 48 and wide.cfg.space_to_depth == 2  # only the stem differs
    assert dataclasses.replace(wide.cfg, stem=tr.cfg.stem) == tr.cfg
    s16 = build_model(load_train_config("perception/configs/experiments/cnn640s16.yaml"))
    assert isinstance(s16, CnnDetector) and s16.cfg.stem == 16  # only the stem differs
    assert dataclasses.replace(s16.cfg, stem=model.cfg.stem) == model.cfg


def test_the_320_experiment_configs_differ_from_the_shipped_one_as_they_say() -> None:
    """The shipped cnn.yaml has 24 channels and a residual block at stride 4 and 48 channels at
    stride 8, its weights' average exported; the CNN shipped before it had the network's
    defaults. cnn_ema.yaml is that one with the average, cnn_s4block.yaml with the block too:
    each is cnn.yaml but for its model_config (and ``val_images``, which changes no weight, and
    the pedestrians' ``class_weight``, which cnn.yaml took after them)."""
    from perception.train import build_model, load_train_config

    shipped = load_train_config("cnn")
    assert shipped.ema_decay == 0.999
    net = build_model(shipped)
    assert isinstance(net, CnnDetector)
    assert (
        dataclasses.replace(net.cfg, widths=(16, 32, 64), blocks=(0, 1, 2)) == CnnDetectorConfig()
    )
    assert net(torch.rand(1, 3, 240, 320))["heatmap"].shape == (1, 6, 60, 80)
    for name, model_config in (("cnn_ema", {}), ("cnn_s4block", {"blocks": [1, 1, 2]})):
        cfg = load_train_config(f"perception/configs/experiments/{name}.yaml")
        assert cfg.model_config == model_config
        mc, val, cw = shipped.model_config, shipped.val_images, shipped.class_weight
        assert dataclasses.replace(cfg, model_config=mc, val_images=val, class_weight=cw) == shipped


def test_the_box_weight_experiment_is_the_shipped_cnn_with_its_field() -> None:
    """cnn_peds3_box3.yaml is cnn.yaml with the pedestrians' box losses weighed as their
    heatmap (docs/perception.md, "The pedestrians' boxes weighed too")."""
    from perception.train import load_train_config

    shipped = load_train_config("cnn")
    cfg = load_train_config("perception/configs/experiments/cnn_peds3_box3.yaml")
    assert cfg == dataclasses.replace(shipped, box_class_weight={"pedestrian": 3.0})


def test_the_fine_heads_experiment_is_the_shipped_cnn_with_its_fields() -> None:
    """cnn_fine.yaml is cnn.yaml with the heads at stride 2, cnn_fine_subpixel.yaml with them
    predicted from stride 4 too (docs/perception.md, "Heads at stride 2")."""
    from perception.train import load_train_config

    shipped = load_train_config("cnn")
    cfg = load_train_config("perception/configs/experiments/cnn_fine.yaml")
    mc = {**shipped.model_config, "fine": True, "stride": 2}
    assert cfg == dataclasses.replace(shipped, model_config=mc)
    cfg = load_train_config("perception/configs/experiments/cnn_fine_subpixel.yaml")
    assert cfg == dataclasses.replace(shipped, model_config={**mc, "subpixel": True})


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("cnn_rfs", {"repeat_factor": 0.3}),
        ("cnn_peds4", {"class_weight": {"pedestrian": 4.0}}),
        ("cnn_peds6", {"class_weight": {"pedestrian": 6.0}}),
        ("cnn_rfs_peds3", {"repeat_factor": 0.3, "class_weight": {"pedestrian": 3.0}}),
    ],
)
def test_the_pedestrian_experiments_are_the_shipped_cnn_with_their_fields(
    name: str, fields: dict[str, object]
) -> None:
    """Rare classes drawn more often, pedestrians weighed more: each is the CNN shipped until
    2026-12-07, 20:50 UTC (cnn.yaml without its pedestrians' weight, which was the experiment
    cnn_peds3.yaml) plus the fields that say so (docs/perception.md, "Pedestrians drawn more
    often, or weighed more")."""
    from perception.train import load_train_config

    shipped = load_train_config("cnn")
    assert shipped.repeat_factor is None and shipped.class_weight == {"pedestrian": 3.0}
    before = dataclasses.replace(shipped, class_weight={})
    cfg = load_train_config(f"perception/configs/experiments/{name}.yaml")
    assert cfg == dataclasses.replace(before, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "model_config", "lr"),
    [
        ("transformer_s4block", {"stem_blocks": 1}, 0.001),
        ("transformer_s8", {"s8": 48}, 0.001),
        ("transformer_lr3", {"s8": 48, "stem_blocks": 1}, 0.003),
    ],
)
def test_the_320_transformer_experiments_are_the_shipped_one_with_what_they_say(
    name: str, model_config: dict[str, int], lr: float
) -> None:
    """The shipped transformer.yaml has a residual block at stride 4 and a stride-8 stage, at a
    peak learning rate of 0.002; each experiment is transformer.yaml but for its model_config
    and learning rate (and ``val_images``, which changes no weight): the first two have one of
    the two options at the 0.001 of their day, the last both at 0.003."""
    from perception.train import build_model, load_train_config

    shipped = load_train_config("transformer")
    assert shipped.model_config == {"s8": 48, "stem_blocks": 1} and shipped.ema_decay == 0.999
    assert shipped.lr == 0.002
    net = build_model(shipped)
    assert isinstance(net, TransformerDetector)
    assert dataclasses.replace(net.cfg, stem_blocks=0, s8=0) == TransformerDetectorConfig()
    cfg = load_train_config(f"perception/configs/experiments/{name}.yaml")
    assert cfg.model_config == model_config and cfg.lr == lr
    mc, val = shipped.model_config, shipped.val_images
    assert dataclasses.replace(cfg, model_config=mc, val_images=val, lr=shipped.lr) == shipped


def test_a_transformer_window_takes_the_position_embeddings_of_its_cells() -> None:
    """A window cut at a token cell's corner (the trainer cuts them at multiples of stride ×
    patch) computes what the whole frame computes there, but for what attention sees: with
    the encoder's blocks removed the two agree exactly on the window's interior."""
    torch.manual_seed(0)
    cfg = TransformerDetectorConfig(input_hw=(256, 320), stride=8, space_to_depth=2, depth=1)
    model = TransformerDetector(cfg).eval()
    model.blocks = torch.nn.ModuleList()  # attention mixes the whole input: leave it out
    with torch.no_grad():
        model.pos.normal_()  # embeddings that differ from cell to cell
        img = torch.rand(1, 3, 256, 320)
        whole = model(img)["heatmap"]  # (1, 6, 32, 40) at stride 8
        window = img[:, :, 64:224, 64:256]  # 5 × 6 tokens of 32 px
        part = model(window, origin=(64, 64))["heatmap"]
        shifted = model(window, origin=(0, 0))["heatmap"]
    # the interior: the stem's padding and the tokens' upsampling reach 8 cells in from the
    # window's top and left edges, 4 from its bottom and right
    inner = whole[..., 8:28, 8:32][..., 8:-4, 8:-4]
    torch.testing.assert_close(part[..., 8:-4, 8:-4], inner)
    assert not torch.allclose(shifted[..., 8:-4, 8:-4], inner)


def test_classifier_shapes_and_identity_warp() -> None:
    cfg = StnClassifierConfig()
    model = StnClassifier(cfg).eval()
    crops = torch.rand(5, 3, cfg.crop, cfg.crop)
    assert model(crops).shape == (5, cfg.num_labels)
    # the spatial transformer starts as the identity: the warped crop is the crop
    torch.testing.assert_close(model.warp(crops), crops, atol=1e-5, rtol=0)
    assert cfg.labels[-4:] == ("light_red", "light_yellow", "light_green", "light_off")
    assert int(cfg.group_mask("light").sum()) == 4


def test_crop_boxes_cuts_the_box_out() -> None:
    img = torch.zeros(1, 3, 40, 60)
    img[:, 0, 10:20, 30:40] = 1.0  # a red 10×10 square
    crop = crop_boxes(img, torch.tensor([[30.0, 10.0, 40.0, 20.0]]), torch.tensor([0]), 8, 0.0)
    assert crop.shape == (1, 3, 8, 8)
    assert float(crop[0, 0].min()) > 0.99 and float(crop[0, 1:].max()) < 1e-6


def test_crops_of_one_image_are_the_crops_of_its_batch() -> None:
    img, other = torch.rand(1, 3, 40, 60), torch.rand(1, 3, 40, 60)
    boxes = torch.tensor([[30.0, 10.0, 40.0, 20.0], [2.0, 3.0, 9.0, 30.0], [50.0, 0.0, 60.0, 8.0]])
    alone = crop_boxes(img, boxes, torch.zeros(3, dtype=torch.long), 8, 0.15)
    batch = crop_boxes(torch.cat([other, img]), boxes, torch.ones(3, dtype=torch.long), 8, 0.15)
    torch.testing.assert_close(alone, batch, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (CnnDetector(CnnDetectorConfig(input_hw=(96, 128))), (2, 3, 96, 128)),
        (
            TransformerDetector(TransformerDetectorConfig(input_hw=(96, 128), depth=1)),
            (2, 3, 96, 128),
        ),
        (StnClassifier(), (5, 3, 32, 32)),
        (
            CnnDetector(CnnDetectorConfig(input_hw=(96, 128), stride=8, space_to_depth=2)),
            (2, 3, 96, 128),
        ),
        (
            TransformerDetector(
                TransformerDetectorConfig(input_hw=(96, 128), stride=8, space_to_depth=2, depth=1)
            ),
            (2, 3, 96, 128),
        ),
    ],
    ids=["cnn", "transformer", "stn", "cnn-space-to-depth", "transformer-space-to-depth"],
)
def test_for_inference_computes_what_the_trained_network_does(
    model: torch.nn.Module, shape: tuple[int, ...]
) -> None:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():  # statistics and affine terms far from the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean = torch.randn(m.num_features, generator=gen)
            m.running_var = torch.rand(m.num_features, generator=gen) * 3 + 0.1
            m.weight.data = torch.randn(m.num_features, generator=gen)
            m.bias.data = torch.randn(m.num_features, generator=gen)
    if isinstance(model, StnClassifier):  # a warp other than the identity, through the loc net
        last = model.loc[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.data.normal_(0.0, 0.05, generator=gen)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ready = for_inference(model, "cpu")
    x = torch.rand(*shape, generator=gen)
    with torch.inference_mode():
        want, got = model(x), ready(x)
    if isinstance(want, dict):
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=1e-4, rtol=1e-4)
    else:
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ready.modules())
    kernels = [p for p in ready.parameters() if p.dim() == 4]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    # the trained module is untouched: it can still be trained or saved
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _decode_by_definition(
    pred: dict[str, torch.Tensor], threshold: float, vote_iou: float
) -> list[tuple[int, float, list[float]]]:
    """(label, score, box px) of every peak, cell by cell in Python: a cell scoring at least
    ``threshold`` that no 3×3 neighbour of its class outscores, boxed as the heat²-weighted
    mean of the neighbours' boxes overlapping its own by IoU ≥ ``vote_iou``."""
    heat = torch.sigmoid(pred["heatmap"])[0]
    boxes = dense_boxes(pred)[0]  # (h, w, 4) in cells
    c, h, w = heat.shape
    found = []
    for k in range(c):
        for y in range(h):
            for x in range(w):
                s = float(heat[k, y, x])
                near = [
                    (y + dy, x + dx)
                    for dy in (-1, 0, 1)
                    for dx in (-1, 0, 1)
                    if 0 <= y + dy < h and 0 <= x + dx < w
                ]
                if s < threshold or any(float(heat[k, v, u]) > s for v, u in near):
                    continue
                total, weight = torch.zeros(4), 0.0
                for v, u in near:
                    if float(paired_iou(boxes[v, u], boxes[y, x])) >= vote_iou:
                        total += float(heat[k, v, u]) ** 2 * boxes[v, u]
                        weight += float(heat[k, v, u]) ** 2
                found.append((k, s, (total / weight * 4).tolist()))
    return sorted(found, key=lambda f: (-f[1], f[0], f[2]))


def test_decode_is_its_definition_on_random_heads() -> None:
    """Peaks (ties included: the logits have plateaus), the map's edges, voting and the top-k
    cut, against a cell-by-cell reading of what decoding is meant to do."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(12):
        c, h, w = 3, int(torch.randint(1, 8, (1,), generator=gen)), 7
        pred = {
            "heatmap": torch.randint(-4, 3, (1, c, h, w), generator=gen).float() / 2,
            "size": torch.randn(1, 2, h, w, generator=gen) * 0.5,
            "offset": torch.rand(1, 2, h, w, generator=gen),
        }
        want = _decode_by_definition(pred, 0.3, 0.5)
        dets = decode(pred, 4, 1000, 0.3, iou_threshold=2.0, contain_threshold=2.0, vote_iou=0.5)
        got = sorted(
            zip(
                dets[0].labels.tolist(),
                dets[0].scores.tolist(),
                dets[0].boxes.tolist(),
                strict=True,
            ),
            key=lambda f: (-f[1], f[0], f[2]),
        )
        assert [(k, round(s, 6)) for k, s, _ in got] == [(k, round(s, 6)) for k, s, _ in want]
        for g, e in zip(got, want, strict=True):
            torch.testing.assert_close(torch.tensor(g[2]), torch.tensor(e[2]))
        best = decode(pred, 4, 3, 0.3, iou_threshold=2.0, contain_threshold=2.0, vote_iou=0.5)
        assert sorted(best[0].scores.tolist(), reverse=True) == [s for _, s, _ in got[:3]]


def test_loss_falls_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    model = CnnDetector(CnnDetectorConfig(input_hw=(64, 64)))
    images = torch.rand(2, 3, 64, 64) * 0.2
    images[0, :, 16:32, 8:40] = 0.9  # a "vehicle"
    images[1, 0, 40:52, 40:52] = 1.0  # a "stop sign"
    boxes = [torch.tensor([[8.0, 16.0, 40.0, 32.0]]), torch.tensor([[40.0, 40.0, 52.0, 52.0]])]
    classes = [torch.tensor([0]), torch.tensor([4])]
    t = make_targets(boxes, classes, 6, (16, 16), 4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = centernet_loss(model(images), t, giou_weight=2.0)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]


def test_targets_peak_at_the_box_centre() -> None:
    t = make_targets([torch.tensor([[8.0, 8.0, 24.0, 16.0]])], [torch.tensor([2])], 6, (10, 10), 4)
    # centre (16, 12) px = cell (4, 3); width 16 px = 4 cells, height 2 cells
    assert float(t.heatmap[0, 2, 3, 4]) == 1.0
    assert float(t.heatmap.sum()) > 1.0 and float(t.heatmap[0, :2].sum()) == 0.0
    assert int(t.index[0, 0]) == 3 * 10 + 4
    torch.testing.assert_close(t.size[0, 0], torch.tensor([math.log(4.0), math.log(2.0)]))
    torch.testing.assert_close(t.offset[0, 0], torch.tensor([0.0, 0.0]))


def test_box_targets_cover_the_peak_and_the_smaller_object_keeps_shared_cells() -> None:
    big = [40.0, 8.0, 120.0, 40.0]  # 20×8 cells, centre cell (20, 6)
    small = [76.0, 20.0, 84.0, 28.0]  # 2×2 cells, centre cell (20, 6) too
    t = make_targets([torch.tensor([big, small])], [torch.tensor([0, 1])], 6, (16, 40), 4)
    region = t.box_weight[0] > 0
    assert bool(region[6, 20]) and bool(region[6, 23]) and not bool(region[6, 26])
    # the shared centre cell boxes the small object; the big one's other cells box it
    torch.testing.assert_close(t.box[0, :, 6, 20], torch.tensor([19.0, 5.0, 21.0, 7.0]))
    torch.testing.assert_close(t.box[0, :, 6, 23], torch.tensor([10.0, 2.0, 30.0, 10.0]))
    small_cells = (t.box[0, 0] == 19.0) & region
    assert float(t.box_weight[0][small_cells].sum()) == pytest.approx(1.0)


def test_giou_by_hand() -> None:
    a = torch.tensor([[0.0, 0, 2, 2], [0.0, 0, 2, 2], [0.0, 0, 1, 1]])
    b = torch.tensor([[0.0, 0, 2, 2], [1.0, 0, 3, 2], [2.0, 0, 3, 1]])
    # identical: 1; half overlap: IoU 2/6, hull 6 = union: 1/3; apart by 1: 0 - (3 - 2) / 3
    torch.testing.assert_close(giou(a, b), torch.tensor([1.0, 1 / 3, -1 / 3]))


def test_giou_loss_is_zero_where_every_cell_boxes_its_object() -> None:
    t = make_targets([torch.tensor([[8.0, 8.0, 40.0, 24.0]])], [torch.tensor([0])], 6, (10, 12), 4)
    pred = _head(6, 10, 12)
    ys, xs = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    pred["offset"][0, 0] = 6.0 - xs  # the box's centre (24, 16) px = cell (6, 4) from every cell
    pred["offset"][0, 1] = 4.0 - ys
    pred["size"][0, 0], pred["size"][0, 1] = math.log(8.0), math.log(4.0)
    loss = centernet_loss(pred, t, giou_weight=1.0)
    assert float(loss["giou"]) == pytest.approx(0.0, abs=1e-6)
    pred["size"][0, 0] = math.log(4.0)  # half as wide everywhere: GIoU 0.5
    assert float(centernet_loss(pred, t, giou_weight=1.0)["giou"]) == pytest.approx(0.5)


def test_ignored_boxes_get_no_peak_and_no_penalty() -> None:
    boxes = [torch.tensor([[8.0, 8.0, 24.0, 16.0], [30.0, 30.0, 32.0, 31.0]])]
    t = make_targets(boxes, [torch.tensor([0, 3])], 6, (10, 10), 4, [torch.tensor([False, True])])
    assert float(t.heatmap[0, 3].max()) == 0.0
    assert float(t.ignore[0, 3, 7, 7]) == 1.0 and float(t.ignore[0, 0].sum()) == 0.0


def _head(c: int, h: int, w: int) -> dict[str, torch.Tensor]:
    return {
        "heatmap": torch.full((1, c, h, w), -10.0),
        "size": torch.zeros(1, 2, h, w),
        "offset": torch.zeros(1, 2, h, w),
    }


def test_decode_hand_made_heatmap() -> None:
    pred = _head(6, 10, 12)
    pred["heatmap"][0, 1, 3, 5] = 4.0  # a pedestrian at cell (5, 3)
    pred["heatmap"][0, 1, 3, 6] = 2.0  # its neighbour: not a local maximum
    pred["size"][0, :, 3, 5] = torch.tensor([math.log(2.0), math.log(4.0)])  # 2×4 cells
    pred["offset"][0, :, 3, 5] = torch.tensor([0.5, 0.25])
    pred["heatmap"][0, 4, 8, 1] = 1.0  # a stop sign, score sigmoid(1) = 0.73
    dets = decode(pred, stride=4, score_threshold=0.5)[0]
    assert len(dets.boxes) == 2
    # centre (5.5, 3.25) cells = (22, 13) px; 8 px wide, 16 px tall
    torch.testing.assert_close(dets.boxes[0], torch.tensor([18.0, 5.0, 26.0, 21.0]))
    assert dets.labels.tolist() == [1, 4]
    assert float(dets.scores[0]) == pytest.approx(1 / (1 + math.exp(-4.0)))


def test_box_voting_by_hand() -> None:
    """A box is the heat²-weighted mean of its peak's and neighbours' boxes of its class, but
    not of a neighbour drawing another object (IoU < 0.5) nor of another class's cells."""
    pred = _head(6, 10, 12)
    pred["size"][0, :] = math.log(0.5)  # every other cell: a half-cell box of its own
    for x, dx in ((5, 0.5), (6, -0.3), (4, 1.1)):  # three cells box one 2×4 object ...
        pred["size"][0, :, 3, x] = torch.tensor([math.log(2.0), math.log(4.0)])
        pred["offset"][0, :, 3, x] = torch.tensor([dx, 0.25])
    pred["heatmap"][0, 0, 3, 5] = 4.0
    pred["heatmap"][0, 0, 3, 6] = 2.0  # centre (5.7, 3.25) cells: 0.2 cells right of the peak's
    pred["heatmap"][0, 0, 4, 5] = 3.0  # a half-cell box: another object, left out
    pred["heatmap"][0, 2, 3, 4] = 5.0  # ... but the left one as another class: its own box
    pred["heatmap"][0, 3, 0, 0] = 1.0  # a peak in the corner: the neighbours inside only
    dets = decode(pred, stride=4, score_threshold=0.5, vote_iou=0.5)[0]
    assert dets.labels.tolist() == [2, 0, 3]
    w0, w1 = torch.sigmoid(torch.tensor([4.0, 2.0])) ** 2
    cx = 5.5 + 0.2 * float(w1 / (w0 + w1))  # cells
    torch.testing.assert_close(dets.boxes[1], torch.tensor([cx - 1, 1.25, cx + 1, 5.25]) * 4)
    torch.testing.assert_close(dets.boxes[0], torch.tensor([4.1, 1.25, 6.1, 5.25]) * 4)
    torch.testing.assert_close(dets.boxes[2], torch.tensor([-0.25, -0.25, 0.25, 0.25]) * 4)
    # without voting the box is the peak's own
    peak_box = decode(pred, stride=4, score_threshold=0.5)[0].boxes[1]
    torch.testing.assert_close(peak_box, torch.tensor([4.5, 1.25, 6.5, 5.25]) * 4)


def test_nms_suppresses_duplicates_of_one_class_only() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 11, 11], [0.0, 0, 10, 10], [50.0, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    keep = nms(boxes, scores, labels, 0.5)
    assert sorted(keep.tolist()) == [0, 2, 3]
    assert float(box_iou(boxes[:1], boxes[1:2])) == pytest.approx(81 / 119)


def test_nms_drops_a_box_drawn_around_a_better_one() -> None:
    """The town_small_tour seed-5 case: a car boxed once tightly (best score) and twice with
    boxes around it reaching below it. IoU keeps all three; containment keeps the best."""
    boxes = torch.tensor(
        [[5.8, 110.1, 53.6, 142.0], [-22.8, 104.8, 91.5, 179.5], [-6.9, 96.4, 91.3, 156.2]]
    )
    scores = torch.tensor([0.43, 0.40, 0.36])
    labels = torch.zeros(3, dtype=torch.long)
    assert nms(boxes, scores, labels, 0.6).tolist() == [0, 1, 2]
    assert nms(boxes, scores, labels, 0.6, contain_threshold=0.9).tolist() == [0]
    # a better box inside a worse one goes the other way round too, but only within a class
    assert nms(boxes[[1, 0]], scores[[0, 1]], labels[:2], 0.6, 0.9).tolist() == [0]
    assert sorted(nms(boxes[:2], scores[:2], torch.tensor([0, 1]), 0.6, 0.9).tolist()) == [0, 1]
    # side by side, half overlapping: neither inside the other, both kept
    pair = torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10]])
    assert nms(pair, scores[:2], labels[:2], 0.6, 0.9).tolist() == [0, 1]
