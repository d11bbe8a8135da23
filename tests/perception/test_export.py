"""safetensors + JSON round trip, and the clear errors on mismatched or corrupt files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from perception.export import WeightsError, load_model, save_model
from perception.models.cnn_detector import CnnDetector, CnnDetectorConfig
from perception.models.stn_classifier import StnClassifier

torch.set_num_threads(1)
CFG = CnnDetectorConfig(input_hw=(64, 96))


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_model(CnnDetector(CFG).eval(), tmp_path / "det.safetensors")


def test_round_trip_gives_the_same_network(saved: Path) -> None:
    torch.manual_seed(0)
    original = CnnDetector(CFG).eval()
    loaded = load_model(saved, expect="cnn")
    assert isinstance(loaded, CnnDetector) and loaded.cfg == CFG
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for k, v in original(x).items():
            torch.testing.assert_close(loaded(x)[k], v)
    meta = json.loads(saved.with_suffix(".json").read_text())
    assert meta["architecture"] == "cnn" and meta["config"]["input_hw"] == [64, 96]


def test_the_weights_file_is_written_as_its_json_is(saved: Path) -> None:
    # safetensors' own save_file leaves a file only its owner can read: weights made in a
    # shared runs/ folder could not be loaded by anyone else
    assert saved.stat().st_mode & 0o777 == saved.with_suffix(".json").stat().st_mode & 0o777
    meta = json.loads(saved.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()


def test_wrong_architecture_is_refused(saved: Path) -> None:
    with pytest.raises(WeightsError, match="holds a cnn model; expected stn"):
        load_model(saved, expect="stn")


def test_config_that_does_not_fit_the_tensors(saved: Path) -> None:
    jp = saved.with_suffix(".json")
    meta = json.loads(jp.read_text())
    meta["config"]["head"] = 48
    jp.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"tensor head\.shared\.0\.weight has shape .* needs"):
        load_model(saved)


def test_unknown_config_field(saved: Path) -> None:
    jp = saved.with_suffix(".json")
    meta = json.loads(jp.read_text())
    meta["config"]["depth_multiplier"] = 2
    jp.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"unknown cnn config field\(s\) \['depth_multiplier'\]"):
        load_model(saved)


def test_corrupt_weights(saved: Path) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(WeightsError, match="corrupt"):
        load_model(saved)
    meta = json.loads(saved.with_suffix(".json").read_text())
    meta.pop("sha256")  # without the checksum, safetensors itself notices
    saved.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="corrupt or not a safetensors file"):
        load_model(saved)


def test_tensors_of_another_model(tmp_path: Path, saved: Path) -> None:
    other = save_model(StnClassifier(), tmp_path / "stn.safetensors")
    saved.write_bytes(other.read_bytes())  # cnn config, stn tensors
    meta = json.loads(saved.with_suffix(".json").read_text())
    meta.pop("sha256")
    saved.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="tensors do not fit the cnn config"):
        load_model(saved)


def test_missing_files(tmp_path: Path, saved: Path) -> None:
    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(tmp_path / "nothing.safetensors")
    saved.with_suffix(".json").unlink()
    with pytest.raises(WeightsError, match=r"its config det\.json is missing"):
        load_model(saved)
