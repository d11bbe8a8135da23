"""Model files: weights in safetensors, the config in a JSON file beside them.

``save_model(model, "dir/detector.safetensors")`` writes ``detector.safetensors`` and
``detector.json``; the JSON names the architecture, holds its config, every tensor's shape and
the weights' SHA-256. :func:`load_model` rebuilds the network from the JSON and refuses, with
one line that says what is wrong, a missing file, a corrupt or truncated weights file, an
unknown architecture, a config with unknown or missing fields, or tensors whose names or shapes
do not fit the architecture. No pickled code is ever loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from perception.models.cnn_detector import CnnDetector, CnnDetectorConfig
from perception.models.stn_classifier import StnClassifier, StnClassifierConfig
from perception.models.transformer_detector import TransformerDetector, TransformerDetectorConfig
from sim.errors import DrivestackError

FORMAT = "drivestack-perception"
VERSION = 1

# architecture name -> (model class, config class)
ARCHITECTURES: dict[str, tuple[type[nn.Module], type[Any]]] = {
    "cnn": (CnnDetector, CnnDetectorConfig),
    "transformer": (TransformerDetector, TransformerDetectorConfig),
    "stn": (StnClassifier, StnClassifierConfig),
}


class WeightsError(DrivestackError):
    """A model file that cannot be loaded."""


def model_config(model: nn.Module) -> Any:
    """The frozen config dataclass a model was built from (its ``cfg``)."""
    cfg = model.__dict__.get("cfg")
    if cfg is None or not dataclasses.is_dataclass(cfg):
        raise WeightsError(f"{type(model).__name__} has no config dataclass 'cfg'")
    return cfg


def architecture_of(model: nn.Module) -> str:
    for name, (cls, _) in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise WeightsError(f"cannot export a {type(model).__name__}; allowed: {list(ARCHITECTURES)}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(arch: str, data: dict[str, Any], source: str = "config") -> Any:
    """Build an architecture's config from JSON data, naming any unknown or missing field."""
    cfg_cls = ARCHITECTURES[arch][1]
    fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise WeightsError(
            f"{source}: unknown {arch} config field(s) {unknown}; allowed: {sorted(fields)}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cfg_cls(**values)


def json_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_model(model: nn.Module, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its JSON config; return the weights' path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: weights files end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    arch = architecture_of(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # written as any file is (safetensors' save_file makes it readable by its owner alone)
    data = save(tensors, metadata={"format": FORMAT, "architecture": arch})
    path.write_bytes(data)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": arch,
        "config": config_to_dict(model_config(model)),
        "sha256": hashlib.sha256(data).hexdigest(),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        **(extra or {}),
    }
    json_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON beside a weights file, checked for format and architecture."""
    path = Path(path)
    jp = json_path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if not jp.is_file():
        raise WeightsError(f"{path}: its config {jp.name} is missing beside it")
    try:
        meta = json.loads(jp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{jp}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(f"{jp}: not a {FORMAT} config (no 'format': '{FORMAT}')")
    if meta.get("version") != VERSION:
        raise WeightsError(f"{jp}: version {meta.get('version')!r}; this code reads {VERSION}")
    if meta.get("architecture") not in ARCHITECTURES:
        raise WeightsError(
            f"{jp}: unknown architecture {meta.get('architecture')!r}; "
            f"allowed: {list(ARCHITECTURES)}"
        )
    return meta


def load_model(
    path: str | Path, expect: str | tuple[str, ...] | None = None, device: str = "cpu"
) -> nn.Module:
    """Rebuild and load a model saved by :func:`save_model`, in eval mode on ``device``.

    :param expect: the architecture(s) the caller can use; another one is an error
    """
    path = Path(path)
    meta = read_meta(path)
    arch = meta["architecture"]
    allowed = (expect,) if isinstance(expect, str) else expect
    if allowed is not None and arch not in allowed:
        raise WeightsError(f"{path}: holds a {arch} model; expected {' or '.join(allowed)}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if meta.get("sha256") and digest != meta["sha256"]:
        raise WeightsError(f"{path}: corrupt (its SHA-256 does not match {json_path(path).name})")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: corrupt or not a safetensors file ({exc})") from None
    cls, _ = ARCHITECTURES[arch]
    cfg = config_from_dict(arch, meta.get("config", {}), str(json_path(path)))
    model = cls(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{path}: tensors do not fit the {arch} config: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise WeightsError(
                f"{path}: tensor {name} has shape {tuple(tensors[name].shape)}, the config "
                f"needs {tuple(ref.shape)}"
            )
    model.load_state_dict(tensors)
    return model.to(torch.device(device)).eval()
