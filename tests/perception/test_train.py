"""Detector training batches: mirrored and zoomed frames keep their boxes; crowds are background;
the last epochs can be on whole frames; rare classes can be drawn more often or weighed more."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import perception.train
from perception.data import CLASS_NAMES, DetectionSet
from perception.models.cnn_detector import CnnDetector, CnnDetectorConfig
from perception.models.transformer_detector import (
    TransformerDetector,
    TransformerDetectorConfig,
)
from perception.train import (
    DetectorBatches,
    TrainConfig,
    WeightAverage,
    hflip,
    load_train_config,
    rescale,
    train,
)
from sim.errors import DrivestackError
from tests.perception.synthetic import make_dataset


def test_hflip_mirrors_the_chosen_images_and_their_boxes_by_hand() -> None:
    images = torch.zeros(2, 3, 4, 10)
    images[:, :, :, 2] = 1.0  # a bright column at x = 2 (its pixel spans 2..3)
    boxes = [torch.tensor([[2.0, 0.0, 3.0, 4.0]]), torch.tensor([[2.0, 0.0, 3.0, 4.0]])]
    out, out_boxes = hflip(images, boxes, torch.tensor([True, False]))
    assert out[0, :, :, 7].eq(1).all() and out[0].sum() == 3 * 4  # 10 - 3 = 7
    assert torch.equal(out[1], images[1])
    assert torch.equal(out_boxes[0], torch.tensor([[7.0, 0.0, 8.0, 4.0]]))
    assert torch.equal(out_boxes[1], boxes[1])


def test_rescale_moves_boxes_with_the_pixels() -> None:
    images = torch.zeros(1, 3, 32, 32)
    images[:, :, 8:16, 4:12] = 1.0
    out, boxes = rescale(images, [torch.tensor([[4.0, 8.0, 12.0, 16.0]])], 2.0)
    assert out.shape == (1, 3, 64, 64)
    assert torch.equal(boxes[0], torch.tensor([[8.0, 16.0, 24.0, 32.0]]))
    inside = out[0, 0, 17:31, 9:23]
    assert inside.min() > 0.99 and out[0, 0].sum() == torch.tensor(16.0 * 16.0)
    small, half = rescale(images, [torch.tensor([[4.0, 8.0, 12.0, 16.0]])], 0.5)
    assert small.shape == (1, 3, 16, 16) and torch.equal(half[0], torch.tensor([[2.0, 4, 6, 8]]))
    assert torch.isclose(small[0, 0].sum(), torch.tensor(16.0))  # area-averaged: light kept


def _set(n: int, hw: tuple[int, int]) -> DetectionSet:
    g = torch.Generator().manual_seed(0)
    box = torch.tensor([[100.0, 100.0, 140.0, 130.0], [10.0, 200.0, 20.0, 230.0]])
    empty = [torch.zeros(2) for _ in range(n)]
    return DetectionSet(
        images=torch.randint(0, 255, (n, 3, *hw), generator=g, dtype=torch.uint8),
        boxes=[box.clone() for _ in range(n)],
        labels=[torch.tensor([0, 1]) for _ in range(n)],
        values=empty,
        states=[e - 1 for e in empty],
        occlusion=empty,
        truncation=empty,
        crowd=[torch.zeros(2, dtype=torch.bool) for _ in range(n)],
        positions=[torch.full((2, 3), float("nan")) for _ in range(n)],
        image_ids=list(range(n)),
        scales=torch.ones(n, 2),
        intrinsics=[None] * n,
        poses=[None] * n,
        source=Path("synthetic"),
    )


class _Recording(TransformerDetector):
    origins: list[tuple[int, int]]

    def forward(
        self, images: torch.Tensor, origin: tuple[int, int] = (0, 0)
    ) -> dict[str, torch.Tensor]:
        self.origins.append(origin)
        s = self.cfg.space_to_depth
        assert images.shape[-2:] == (160 * s, 224 * s)
        return super().forward(images, origin)


@pytest.mark.parametrize("s2d", [1, 2])
def test_zoomed_windows_take_position_embeddings_inside_the_frame_grid(s2d: int) -> None:
    """Windows start on a token's cell, 16 px (stride 4 × patch 4), or 32 px for the
    Transformer on 640×480 frames (space_to_depth 2, stride 8)."""
    h, w, ch, cw, cell = 240 * s2d, 320 * s2d, 160 * s2d, 224 * s2d, 16 * s2d
    cfg = TrainConfig(
        model="transformer", batch_size=2, crop_hw=(ch, cw), scale_range=(0.5, 1.5), flip_p=0.5
    )
    mcfg = TransformerDetectorConfig(input_hw=(h, w), stride=4 * s2d, space_to_depth=s2d, depth=1)
    model = _Recording(mcfg)
    model.origins = []
    batches = perception.train._batches(_set(4, (h, w)), cfg, model)
    assert isinstance(batches, DetectorBatches) and batches.align == cell
    gen = torch.Generator().manual_seed(1)
    for _ in range(12):
        loss = batches.loss(model, torch.tensor([0, 1]), gen, torch.device("cpu"))
        assert torch.isfinite(loss["total"])
    for y, x in model.origins:
        assert y % cell == 0 and x % cell == 0 and 0 <= y <= h - ch and 0 <= x <= w - cw
    assert len(set(model.origins)) > 1


def test_the_last_epochs_train_on_whole_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two epochs on 160×224 windows, then one on the 240×320 frames the detector runs on."""
    data = make_dataset(tmp_path / "data", n_images=24)
    model = CnnDetector(CnnDetectorConfig())
    sizes: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(
        lambda m, args: sizes.append(tuple(args[0].shape[-2:])) if m.training else None
    )
    monkeypatch.setattr(perception.train, "build_model", lambda cfg: model)
    cfg = TrainConfig(batch_size=4, crop_hw=(160, 224), epochs=3, whole_frame_epochs=1, threads=1)
    train(cfg, data, tmp_path / "out", progress=False)
    per_epoch = len(sizes) // 3
    assert per_epoch >= 1 and len(sizes) == 3 * per_epoch
    assert set(sizes[: 2 * per_epoch]) == {(160, 224)}
    assert set(sizes[2 * per_epoch :]) == {(240, 320)}


def test_the_weight_average_by_hand() -> None:
    """Step 1 keeps 2/11 of the average (the ramp), step 1000 keeps the decay; batch norm's
    running mean is averaged like a weight, its step count copied."""
    lin, bn = torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1)
    net = torch.nn.Sequential(lin, bn)
    state = net.state_dict()  # views of the weights and buffers
    state["0.weight"].fill_(1.0)
    avg = WeightAverage(net, decay=0.9)
    state["0.weight"].fill_(12.0)
    state["1.running_mean"].fill_(11.0)
    state["1.num_batches_tracked"].fill_(7)
    avg.update(net, step=1)
    got = avg.model.state_dict()
    assert float(got["0.weight"]) == pytest.approx(2 / 11 * 1 + 9 / 11 * 12)  # 10.0
    assert float(got["1.running_mean"]) == pytest.approx(9 / 11 * 11)
    assert int(got["1.num_batches_tracked"]) == 7
    state["0.weight"].fill_(20.0)
    avg.update(net, step=1000)
    assert float(got["0.weight"]) == pytest.approx(0.9 * 10 + 0.1 * 20)
    assert not any(q.requires_grad for q in avg.model.parameters())


def test_a_run_with_a_weight_average_exports_and_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exported network is the average, not the last step's weights; a run stopped after
    its first epoch and resumed picks the average up from the checkpoint and ends where the
    unbroken run does."""
    from perception.export import load_model

    data = make_dataset(tmp_path / "data", n_images=12)
    cfg = TrainConfig(batch_size=4, epochs=2, ema_decay=0.5, threads=1, val_split=None)
    exported = load_model(train(cfg, data, tmp_path / "whole", progress=False)).state_dict()
    ck = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(exported[k], v) for k, v in ck["ema"].items())
    assert not all(torch.equal(exported[k], v) for k, v in ck["model"].items())

    save = torch.save

    def save_then_stop(obj: object, path: Path) -> None:
        save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "broken", progress=False)
    monkeypatch.setattr(torch, "save", save)
    resumed = train(cfg, data, tmp_path / "broken", resume=True, progress=False)
    again = load_model(resumed).state_dict()
    assert all(torch.allclose(again[k].float(), v.float()) for k, v in exported.items())


def test_validating_on_fewer_images_scores_an_even_spread_and_changes_no_weight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``val_images`` makes the epoch's validation cheaper (it cost the shipped Transformer a
    sixth of its training) and nothing else: the weights are the full validation's, bit for bit."""
    from perception.export import load_model

    data = make_dataset(tmp_path / "data", n_images=30)  # 5 validation images
    scored: list[list[int]] = []
    real = DetectorBatches.loss

    def spy(
        self: DetectorBatches,
        model: torch.nn.Module,
        idx: torch.Tensor,
        gen: torch.Generator | None,
        dev: torch.device,
    ) -> dict[str, torch.Tensor]:
        if gen is None:  # a validation batch
            scored.append(idx.tolist())
        return real(self, model, idx, gen, dev)

    monkeypatch.setattr(DetectorBatches, "loss", spy)
    cfg = TrainConfig(batch_size=4, epochs=1, threads=1)
    whole = load_model(train(cfg, data, tmp_path / "whole", progress=False)).state_dict()
    assert [i for batch in scored for i in batch] == [0, 1, 2, 3, 4]
    scored.clear()
    cfg3 = dataclasses.replace(cfg, val_images=3)
    few = load_model(train(cfg3, data, tmp_path / "few", progress=False)).state_dict()
    assert [i for batch in scored for i in batch] == [0, 2, 4]  # first, middle, last
    assert all(torch.equal(few[k], v) for k, v in whole.items())


def test_a_checkpoint_older_than_a_config_field_resumes_while_it_is_at_its_default(
    tmp_path: Path,
) -> None:
    """Checkpoints written before ``ema_decay`` existed have no such key: they resume with it
    off, as they were made, and are refused with it on."""
    data = make_dataset(tmp_path / "data", n_images=8)
    cfg = TrainConfig(batch_size=4, epochs=1, threads=1, val_split=None)
    train(cfg, data, tmp_path / "run", progress=False)
    path = tmp_path / "run" / "checkpoint.pt"
    ck = torch.load(path, weights_only=True)
    del ck["train"]["ema_decay"]
    torch.save(ck, path)
    train(cfg, data, tmp_path / "run", resume=True, progress=False)  # refused before
    with pytest.raises(DrivestackError, match="was made with another config"):
        train(dataclasses.replace(cfg, ema_decay=0.9), data, tmp_path / "run", resume=True)


def test_more_whole_frame_epochs_than_epochs_is_one_clear_error() -> None:
    with pytest.raises(DrivestackError, match=r"whole_frame_epochs 3; allowed: 0 to epochs \(2\)"):
        load_train_config("cnn", epochs=2, whole_frame_epochs=3)
    with pytest.raises(DrivestackError, match="0 for the stn"):
        load_train_config("stn", whole_frame_epochs=1)
    with pytest.raises(DrivestackError, match="0 for the stn"):  # built in code, checked too
        TrainConfig(model="stn", whole_frame_epochs=1)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("model", "resnet", "one of ['cnn', 'transformer', 'stn']"),
        ("epochs", 0, "an integer of at least 1"),
        ("epochs", 2.5, "an integer of at least 1"),
        ("batch_size", 0, "an integer of at least 1"),
        ("max_steps", 0, "null or at least 1"),
        ("threads", 0, "null or at least 1"),
        ("lr", 0.0, "a number over 0"),
        ("lr", "fast", "a number over 0"),
        ("flip_p", 1.5, "a number from 0 to 1"),
        ("scale_range", (1.5, 0.5), "null or two numbers 0 < low <= high"),
        ("crop_hw", (160,), "null or two integers of at least 1 (height, width)"),
        ("crop_jitter", 1.0, "0 <= it < 1"),
        ("ema_decay", 1.0, "null or a number between 0 and 1 (such as 0.999)"),
        ("val_images", 0, "null or at least 1"),
        ("repeat_factor", 0.0, "null or a share of the images over 0 and at most 1 (LVIS: 0.001)"),
        ("repeat_factor", 1.5, "null or a share of the images over 0 and at most 1 (LVIS: 0.001)"),
        (
            "class_weight",
            {"cyclist": 2.0},
            "a mapping of class names ['vehicle', 'pedestrian', 'traffic_light', "
            "'speed_limit_sign', 'stop_sign', 'yield_sign'] to numbers over 0",
        ),
        (
            "class_weight",
            {"pedestrian": 0},
            "a mapping of class names ['vehicle', 'pedestrian', 'traffic_light', "
            "'speed_limit_sign', 'stop_sign', 'yield_sign'] to numbers over 0",
        ),
        (
            "box_class_weight",
            {"pedestrian": -1.0},
            "a mapping of class names ['vehicle', 'pedestrian', 'traffic_light', "
            "'speed_limit_sign', 'stop_sign', 'yield_sign'] to numbers over 0",
        ),
    ],
)
def test_a_setting_no_run_can_use_is_refused_by_name(
    field: str, value: object, allowed: str
) -> None:
    """Before, ``--epochs 0`` and ``--max-steps 0`` exported an untrained network and
    ``--batch-size 0`` ended in a ZeroDivisionError."""
    with pytest.raises(DrivestackError) as err:
        TrainConfig(**{field: value})  # type: ignore[arg-type]
    assert str(err.value) == f"TrainConfig.{field} {value!r}; allowed: {allowed}"


def test_a_bad_setting_from_a_file_or_the_command_line_names_where_it_came_from(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: cnn\naugment: {blur_p: 2}\n")
    with pytest.raises(DrivestackError) as err:
        load_train_config(str(path))
    assert str(err.value) == (
        f"{path}: TrainConfig.augment.blur_p 2; allowed: a number from 0 to 1"
    )
    with pytest.raises(DrivestackError, match=r"cnn.yaml with batch_size=0, seed=1: TrainConfig"):
        load_train_config("cnn", batch_size=0, seed=1, max_steps=None)
    with pytest.raises(DrivestackError, match=r"model_config: unknown cnn config field"):
        load_train_config("cnn", model_config={"depth_multiplier": 2})


def test_crowd_regions_are_taught_as_background_exactly_as_if_absent() -> None:
    """A crowd box (a car 2 px tall on the horizon) changes nothing in the detector's loss."""
    torch.manual_seed(0)
    model = CnnDetector(CnnDetectorConfig()).eval()
    cfg = TrainConfig(batch_size=2)
    plain = _set(2, (240, 320))
    crowded = _set(2, (240, 320))
    far = torch.tensor([[150.0, 118.0, 160.0, 120.0]])
    crowded.boxes = [torch.cat([b, far]) for b in crowded.boxes]
    crowded.labels = [torch.cat([x, torch.tensor([0])]) for x in crowded.labels]
    crowded.occlusion = [torch.cat([x, torch.zeros(1)]) for x in crowded.occlusion]
    crowded.crowd = [torch.tensor([False, False, True]) for _ in range(2)]
    idx, cpu = torch.tensor([0, 1]), torch.device("cpu")
    with torch.no_grad():
        a = DetectorBatches(plain, cfg, stride=4).loss(model, idx, None, cpu)
        b = DetectorBatches(crowded, cfg, stride=4).loss(model, idx, None, cpu)
    assert torch.equal(a["total"], b["total"])
    dont_care = TrainConfig(batch_size=2, ignore_crowd=True)  # its area left out of the loss
    with torch.no_grad():
        d = DetectorBatches(crowded, dont_care, stride=4).loss(model, idx, None, cpu)
    assert d["total"] < a["total"]
    crowded.crowd = [torch.zeros(3, dtype=torch.bool) for _ in range(2)]  # annotated: it counts
    with torch.no_grad():
        c = DetectorBatches(crowded, cfg, stride=4).loss(model, idx, None, cpu)
    assert not torch.equal(a["total"], c["total"])


def test_the_classifier_learns_crops_cut_from_a_larger_views_own_pixels(tmp_path: Path) -> None:
    # The same views at 320×240 and at 640×480 with a fine checker added that a 2×2 average
    # removes: both load as the same input images, but the larger set's context patches are
    # cut from its own pixels (checkered), as the perceiver cuts crops from a larger camera.
    import json

    import cv2
    import numpy as np

    from perception.data import crop_targets, load_split
    from perception.models.stn_classifier import StnClassifierConfig, crop_boxes
    from perception.train import CONTEXT_PX, context_patches
    from tests.perception.synthetic import make_dataset

    small = make_dataset(tmp_path / "small", n_images=4, size=(320, 240))
    large = tmp_path / "large"
    (large / "images").mkdir(parents=True)
    coco = json.loads((small / "annotations.json").read_text())
    checker = np.indices((480, 640)).sum(0) % 2 * 40 - 20  # +-20, zero over any 2x2 block
    for im in coco["images"]:
        bgr = cv2.imread(str(small / im["file_name"]))
        assert bgr is not None
        img = np.repeat(np.repeat(bgr.astype(np.int32), 2, 0), 2, 1)
        img += checker[..., None] * ((img >= 20) & (img <= 235))  # never clipped
        cv2.imwrite(str(large / im["file_name"]), img.astype(np.uint8))
        im["width"], im["height"] = 640, 480
    for a in coco["annotations"]:
        a["bbox"] = [2 * v for v in a["bbox"]]
    (large / "annotations.json").write_text(json.dumps(coco))
    a, b = (load_split(d, "all", (240, 320)) for d in (small, large))
    assert torch.equal(a.images, b.images)  # the checker averages out where pixels are not
    idx, boxes, _ = crop_targets(a, StnClassifierConfig(), 4.0)
    assert len(idx) > 0 and torch.equal(crop_targets(b, StnClassifierConfig(), 4.0)[1], boxes)
    pa, pb = context_patches(a, idx, boxes), context_patches(b, idx, boxes)
    # at the input size: the patches the images in memory give
    direct = crop_boxes(
        a.images[idx].float() / 255.0, boxes, torch.arange(len(idx)), CONTEXT_PX, 0.0
    )
    assert torch.equal(pa, (direct * 255).round().to(torch.uint8))
    # the larger set's own pixels, checker and all (the checker is +-20)
    assert float((pb.float() - pa.float()).abs().mean()) > 5.0
    # loaded without pixels (as the classifier's training loads them), the same boxes and the
    # same patches, each cut from its file
    for d, held in ((small, pa), (large, pb)):
        bare = load_split(d, "all", (240, 320), pixels=False)
        assert bare.images.shape == (len(a), 3, 0, 0) and torch.equal(
            bare.scales, load_split(d, "all", (240, 320)).scales
        )
        assert torch.equal(crop_targets(bare, StnClassifierConfig(), 4.0)[1], boxes)
        assert torch.equal(context_patches(bare, idx, boxes), held)


def test_repeat_factors_by_hand_and_an_epoch_draws_rare_images_that_much_more_often() -> None:
    """LVIS's rule: four images, a pedestrian in one (f = 1/4); at t = 1 it is drawn sqrt(4) = 2
    times as often as each of the others, and every epoch keeps its length."""
    data = _set(4, (240, 320))
    data.labels = [
        torch.tensor([0, 0]),
        torch.tensor([0, 0]),
        torch.tensor([0, 1]),
        torch.tensor([0, 0]),
    ]
    plain = DetectorBatches(data, TrainConfig(batch_size=1), stride=4)
    assert torch.equal(plain.repeat_factors(), torch.ones(4))
    batches = DetectorBatches(data, TrainConfig(batch_size=1, repeat_factor=1.0), stride=4)
    assert torch.equal(batches.repeat_factors(), torch.tensor([1.0, 1.0, 2.0, 1.0]))
    half = DetectorBatches(data, TrainConfig(batch_size=1, repeat_factor=0.5), stride=4)
    assert torch.allclose(half.repeat_factors(), torch.tensor([1.0, 1.0, 2**0.5, 1.0]))
    gen = torch.Generator().manual_seed(0)
    drawn = torch.zeros(4)
    for _ in range(2000):
        idx = torch.cat(list(batches.epoch(gen)))
        assert len(idx) == 4
        drawn += torch.bincount(idx, minlength=4)
    assert drawn[2] / drawn[[0, 1, 3]].mean() == pytest.approx(2.0, rel=0.05)
    # a crowd region is no pedestrian to draw more often, even where crowds are kept as boxes
    data.crowd[2] = torch.tensor([False, True])
    crowds = TrainConfig(batch_size=1, repeat_factor=1.0, ignore_crowd=True)
    assert torch.equal(DetectorBatches(data, crowds, stride=4).repeat_factors(), torch.ones(4))


def test_a_class_weight_scales_that_class_heatmap_loss_alone() -> None:
    torch.manual_seed(0)
    model = CnnDetector(CnnDetectorConfig()).eval()
    data = _set(2, (240, 320))  # a vehicle and a pedestrian in each image
    idx, cpu = torch.tensor([0, 1]), torch.device("cpu")
    with torch.no_grad():
        base = DetectorBatches(data, TrainConfig(batch_size=2), stride=4).loss(
            model, idx, None, cpu
        )
        ones = TrainConfig(batch_size=2, class_weight=dict.fromkeys(CLASS_NAMES, 1.0))
        same = DetectorBatches(data, ones, stride=4).loss(model, idx, None, cpu)
        peds = TrainConfig(batch_size=2, class_weight={"pedestrian": 3.0})
        more = DetectorBatches(data, peds, stride=4).loss(model, idx, None, cpu)
        none = TrainConfig(batch_size=2, class_weight={"pedestrian": 1e-9})
        less = DetectorBatches(data, none, stride=4).loss(model, idx, None, cpu)
    assert torch.allclose(same["heatmap"], base["heatmap"])
    # heatmap = vehicles' and others' part + the pedestrians' part: weighing the latter 3 and ~0
    ped = base["heatmap"] - less["heatmap"]
    assert ped > 0 and torch.allclose(more["heatmap"], base["heatmap"] + 2 * ped, rtol=1e-5)
    for term in ("size", "offset", "giou"):
        assert torch.equal(more[term], base[term])


def test_a_box_class_weight_scales_that_class_box_losses_alone() -> None:
    torch.manual_seed(0)
    model = CnnDetector(CnnDetectorConfig()).eval()
    data = _set(2, (240, 320))  # a vehicle and a pedestrian in each image
    idx, cpu = torch.tensor([0, 1]), torch.device("cpu")

    def loss(weight: dict[str, float]) -> dict[str, torch.Tensor]:
        cfg = TrainConfig(batch_size=2, box_class_weight=weight)
        with torch.no_grad():
            return DetectorBatches(data, cfg, stride=4).loss(model, idx, None, cpu)

    base, same = loss({}), loss(dict.fromkeys(CLASS_NAMES, 1.0))
    more, less = loss({"pedestrian": 3.0}), loss({"pedestrian": 1e-9})
    for term in ("heatmap", "size", "offset", "giou"):
        assert torch.allclose(same[term], base[term])
        # each box term = the vehicles' part + the pedestrians' part, the latter weighed 3 and ~0
        ped = base[term] - less[term]
        assert ped > 0 or term == "heatmap"
        assert torch.allclose(more[term], base[term] + 2 * ped, rtol=1e-5)
    assert torch.equal(more["heatmap"], base["heatmap"])
