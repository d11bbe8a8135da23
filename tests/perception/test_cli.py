"""Tiny-budget smoke tests of the real ``perception train`` and ``perception eval`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from launch.cli import main
from tests.perception.synthetic import make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), n_images=12)


def test_train_and_eval_commands_run_end_to_end(dataset: Path, tmp_path: Path) -> None:
    common = ["--data", str(dataset), "--max-steps", "2", "--batch-size", "4", "--threads", "1"]
    assert (
        main(["perception", "train", "--config", "stn", "--out", str(tmp_path / "stn"), *common])
        == 0
    )
    assert (
        main(["perception", "train", "--config", "cnn", "--out", str(tmp_path / "cnn"), *common])
        == 0
    )
    for run in ("stn", "cnn"):
        out = tmp_path / run
        assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()
        assert json.loads((out / "train_config.json").read_text())["train"]["max_steps"] == 2
        assert any((out / "tb").iterdir())  # TensorBoard scalars
    # resuming a finished run does no more steps and still exports
    resume = ["--resume", "--out", str(tmp_path / "cnn"), *common]
    assert main(["perception", "train", "--config", "cnn", *resume]) == 0
    result = tmp_path / "eval.json"
    argv = ["perception", "eval", "--weights", str(tmp_path / "cnn" / "model.safetensors")]
    argv += ["--classifier", str(tmp_path / "stn" / "model.safetensors"), "--data", str(dataset)]
    argv += ["--out", str(result), "--latency-frames", "3"]
    assert main(argv) == 0
    figures = json.loads(result.read_text())
    assert figures["images"] == 2 and figures["split"] == "test"
    assert {"mAP", "mAP50", "per_class"} <= set(figures["coco"])
    assert figures["latency_ms"]["frames"] == 3
    assert figures["processor"].endswith(torch.backends.cpu.get_cpu_capability())  # the chip
    for group in ("signs", "lights"):  # readings by the box's smaller side, as documented
        assert list(figures[group]["by_min_side_px"]) == ["6-8", "8-12", "12-16", "16+"]


def test_bad_input_is_one_line_and_exit_2(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["perception", "train", "--config", "nope", "--data", str(dataset), "--out", str(tmp_path)]
    )
    assert rc == 2
    assert (
        "--config nope: no such file; built-in: ['cnn', 'stn', 'transformer']"
        in capsys.readouterr().err
    )
    rc = main(
        ["perception", "train", "--config", "cnn", "--data", str(tmp_path), "--out", str(tmp_path)]
    )
    assert rc == 2
    assert "no annotations.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--latency-frames", "0", "expected a positive integer, got 0"),
        ("--threads", "0", "expected a positive integer, got 0"),
        ("--limit", "-1", "expected a positive integer, got -1"),
        ("--min-height", "-1", "expected a number >= 0, got -1.0"),
    ],
)
def test_eval_refuses_a_count_it_cannot_use_in_one_line(
    flag: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--latency-frames 0`` and ``--threads 0`` ended in tracebacks, ``--min-height -1`` was
    taken."""
    argv = ["perception", "eval", "--weights", "perception/weights/cnn.safetensors"]
    argv += ["--data", str(tmp_path), "--out", str(tmp_path / "e.json"), flag, value]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "e.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message of a machine without CUDA")
def test_cuda_on_a_machine_without_one_is_one_line_and_exit_2(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for cmd in (
        ["train", "--config", "cnn", "--out", str(tmp_path / "run")],
        ["eval", "--weights", "perception/weights/cnn.safetensors", "--out", str(tmp_path / "e")],
    ):
        with pytest.raises(SystemExit) as stop:
            main(["perception", *cmd, "--data", str(dataset), "--device", "cuda"])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "--device cuda: this machine has no CUDA device torch can use" in err
        assert "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "e").exists()


def test_make_default_weights_runs_end_to_end_on_a_tiny_budget(tmp_path: Path) -> None:
    """The shipped weights' command, whole: every set collected (at a few frames or views per
    episode, the detectors' of one episode per scenario) two at a time, the three networks
    trained two at once for two steps, copied with a manifest."""
    from launch.perception_commands import (
        CLASSIFIER_GALLERY_EPISODES,
        DRIVE_EVERY,
        EPISODES,
        collect_classifier_data,
        collect_training_data,
        set_sizes,
        training_scenarios,
    )
    from perception.perceiver import LearnedPerceiver

    shipped = {"data": 20, "gallery": 20, "road_users": 7, "signs_lights": 60}
    assert set_sizes(4800, 24) == {**shipped, "classifier_gallery": 60}
    out, work = tmp_path / "weights", tmp_path / "work"
    argv = ["perception", "make-default-weights", "--out", str(out), "--work", str(work)]
    assert main([*argv, "--frames", "40", "--episodes", "1", "--max-steps", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["max_steps"] == 2 and manifest["jobs"] == 2 and manifest["episodes"] == 1
    assert manifest["data"]["cnn"] == [str(work / s) for s in ("data", "gallery", "road_users")]
    # its own gallery too, and its four sets at the camera it reads
    stn_sets = ("data_read", "signs_lights", "gallery_read", "classifier_gallery")
    assert manifest["data"]["stn"] == [str(work / s) for s in stn_sets]
    for name in (*stn_sets, "data", "gallery", "road_users"):
        size = {2: (640, 480), 1: (320, 240)}[2 if name in stn_sets else 1]
        images = json.loads((work / name / "annotations.json").read_text())["images"]
        assert {(im["width"], im["height"]) for im in images} == {size}, name
    for name in ("data", "gallery"):  # the detectors' sets and the classifier's: the same views
        a, b = (
            json.loads((work / n / "annotations.json").read_text()) for n in (name, f"{name}_read")
        )
        assert [im["file_name"] for im in a["images"]] == [im["file_name"] for im in b["images"]]

    def episodes(name: str) -> int:
        images = json.loads((work / name / "annotations.json").read_text())["images"]
        return len({(im["scenario"], im["seed"]) for im in images}) // len(training_scenarios())

    # --episodes sizes the detectors' sets; the classifier's own gallery keeps its 12
    assert [episodes(n) for n in ("data", "gallery", "road_users", "data_read")] == [1, 1, 1, 1]
    assert episodes("classifier_gallery") == CLASSIFIER_GALLERY_EPISODES
    data = json.loads((work / "data" / "annotations.json").read_text())
    assert len(data["images"]) == 40 and all(data["splits"][s] for s in ("train", "val", "test"))
    sets = ("classifier_gallery", "gallery", "data", "road_users", "signs_lights")
    assert all(manifest["timings_s"][f"collect_{s}_s"] > 0 for s in sets)
    # collected side by side, in processes of their own, a set is what collecting it alone
    # writes; data_read, rendered in data's drives, is what a drive of its own at scale 2 writes
    serial = tmp_path / "serial"
    collect_training_data(serial / "data", 40, 0, 1, every=DRIVE_EVERY)
    collect_training_data(serial / "data_read", 40, 0, 1, every=DRIVE_EVERY, scale=2)
    collect_classifier_data(
        serial / "signs_lights", 50, EPISODES, set_sizes(40, 1)["signs_lights"], scale=2
    )
    for name in ("data", "data_read", "signs_lights"):
        alone, beside = serial / name, work / name
        files = sorted(p.relative_to(alone) for p in (alone / "images").iterdir())
        assert files and files == sorted(
            p.relative_to(beside) for p in (beside / "images").iterdir()
        )
        assert all((alone / f).read_bytes() == (beside / f).read_bytes() for f in files)
        a, b = (json.loads((d / "annotations.json").read_text()) for d in (alone, beside))
        assert {**a, "info": None} == {**b, "info": None}  # but the time of writing
    for name in ("stn", "cnn", "transformer"):
        assert (out / f"{name}.safetensors").is_file() and (out / f"{name}.json").is_file()
        trained = json.loads((work / name / "train_config.json").read_text())["train"]
        assert trained["max_steps"] == 2
    for detector in ("cnn", "transformer"):  # the copies load as the perceiver loads them
        LearnedPerceiver.from_files(
            str(out / f"{detector}.safetensors"), str(out / "stn.safetensors")
        )


def test_a_set_collected_at_scale_2_is_the_same_views_at_twice_the_size(tmp_path: Path) -> None:
    """``scale`` renders the sets make-default-weights collects with the perceiver's
    ``camera_scale`` (or ``read_scale``) camera: the same episodes and views, 640×480 instead
    of 320×240."""
    from launch.perception_commands import collect_classifier_data, collect_gallery_data

    for collect in (collect_gallery_data, collect_classifier_data):
        sets = {
            k: collect(tmp_path / f"{collect.__name__}{k}", 7, 1, 1, progress=False, scale=k)
            for k in (1, 2)
        }
        small, large = (json.loads(sets[k].read_text()) for k in (1, 2))
        assert [im["file_name"] for im in small["images"]] == [
            im["file_name"] for im in large["images"]
        ]
        assert {(im["width"], im["height"]) for im in small["images"]} == {(320, 240)}
        assert {(im["width"], im["height"]) for im in large["images"]} == {(640, 480)}
        assert small["splits"] == large["splits"]
    # the 640×480 views rendered in the 320×240 set's own drives (``twins``) are those a drive of
    # their own writes, every byte (the annotations but for the time of writing)
    one = tmp_path / "one_drive"
    collect_gallery_data(one / "small", 7, 1, 1, progress=False, twins={2: one / "large"})
    for k, name in ((1, "small"), (2, "large")):
        alone, twin = tmp_path / f"collect_gallery_data{k}", one / name
        files = sorted(p.relative_to(alone) for p in (alone / "images").iterdir())
        assert files and files == sorted(p.relative_to(twin) for p in (twin / "images").iterdir())
        assert all((alone / f).read_bytes() == (twin / f).read_bytes() for f in files)
        a, b = (json.loads((d / "annotations.json").read_text()) for d in (alone, twin))
        assert {**a, "info": None} == {**b, "info": None}
