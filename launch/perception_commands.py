"""``perception train``, ``perception eval`` and ``perception make-default-weights``.

:func:`add_commands` adds them to the ``perception`` subcommand group of launch/perception_cli.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.argtypes import non_negative_float, positive_int
from perception.dataset import SCORED_FROM_HEIGHT_PX

if TYPE_CHECKING:
    from launch.gallery import Subject

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "perception" / "weights"
HELD_OUT_MAP = "town_small"  # never in the shipped weights' training data: the unseen-map test
DEFAULT_CLASSIFIER = WEIGHTS_DIR / "stn.safetensors"
DEFAULT_DETECTORS = {
    "cnn": WEIGHTS_DIR / "cnn.safetensors",
    "transformer": WEIGHTS_DIR / "transformer.safetensors",
}


def _has_cuda() -> bool:
    import torch  # only when asked for: the command line starts without it

    return bool(torch.cuda.is_available())


def _device(text: str) -> str:
    if text not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"--device must be cpu or cuda, got {text!r}")
    if text == "cuda" and not _has_cuda():
        raise argparse.ArgumentTypeError(
            "--device cuda: this machine has no CUDA device torch can use; use --device cpu"
        )
    return text


def _cmd_train(args: argparse.Namespace) -> int:
    from perception.train import load_train_config, train

    cfg = load_train_config(
        args.config,
        epochs=args.epochs,
        whole_frame_epochs=args.whole_frame_epochs,
        max_steps=args.max_steps,
        seed=args.seed,
        batch_size=args.batch_size,
        limit_images=args.limit,
        threads=args.threads,
    )
    data = args.data[0] if len(args.data) == 1 else args.data
    path = train(cfg, data, args.out, args.device, resume=args.resume)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from perception.evaluate import EvalSettings, evaluate, format_table, write_json

    torch.set_num_threads(args.threads)
    settings = EvalSettings(
        split=args.split,
        limit=args.limit,
        latency_frames=args.latency_frames,
        min_height_px=args.min_height,
    )
    result = evaluate(
        args.weights, args.classifier, args.data, settings, args.device, args.read_data
    )
    write_json(args.out, result)
    print(format_table(result))
    print(f"wrote {args.out}")
    return 0


def training_scenarios() -> list[str]:
    """Built-in scenarios whose maps the shipped weights learn from (all but the held-out map)."""
    from sim.scenario import builtin_scenarios, load_scenario

    return [s for s in builtin_scenarios() if load_scenario(s).map != HELD_OUT_MAP]


def collect_training_data(
    out: Path,
    frames: int,
    seed: int,
    episodes: int = 4,
    progress: bool = True,
    scale: int = 1,
    every: int = 8,
    twins: dict[int, Path] | None = None,
) -> Path:
    """About ``frames`` frames at the runtime camera's 320×240 (times ``scale``, the perceiver's
    ``camera_scale``) from ``episodes`` randomised episodes of each training scenario (a frame
    every ``every`` ticks: 0.4 s by default), split train/val/test by episode; ``twins``
    ({scale: folder}) writes the same frames at other multiples of that size as well
    (``camera_cmds.collect_dataset``)."""
    from launch.camera_cmds import collect_dataset
    from perception.perceiver import default_camera
    from sim.scenario import load_scenario

    scenarios = [load_scenario(s) for s in training_scenarios()]
    per_episode = max(1, -(-frames // (len(scenarios) * episodes)))
    specs = [default_camera(scale=scale) for _ in scenarios]
    collect_dataset(
        scenarios,
        specs,
        out,
        per_episode,
        episodes,
        seed,
        every=every,
        progress=progress,
        twins=twins,
    )
    return out / "annotations.json"


# Scenarios rich in signs and lights: more crops (and light states) for the classifier.
CLASSIFIER_SCENARIOS = (
    "red_lights",
    "town_loop",
    "junction_turns",
    "free_drive_limits",
    "stop_signs",
)


def collect_classifier_data(
    out: Path,
    seed: int,
    episodes: int = 4,
    frames: int = 60,
    progress: bool = True,
    scale: int = 1,
) -> Path:
    """Extra frames for the STN classifier: ``frames`` per episode, one every 0.25 s, of sign- and
    light-rich drives (the same as ``perception collect --scenario red_lights ... --every 5
    --width 320 --height 240``), at 320×240 times ``scale``, as :func:`collect_training_data`."""
    from launch.camera_cmds import collect_dataset
    from perception.perceiver import default_camera
    from sim.scenario import load_scenario

    scenarios = [load_scenario(s) for s in CLASSIFIER_SCENARIOS]
    specs = [default_camera(scale=scale) for _ in scenarios]
    collect_dataset(scenarios, specs, out, frames, episodes, seed, every=5, progress=progress)
    return out / "annotations.json"


def collect_gallery_data(
    out: Path,
    seed: int,
    episodes: int = 4,
    views: int = 60,
    subject: Subject = "signs",
    progress: bool = True,
    scale: int = 1,
    every: int = 10,
    twins: dict[int, Path] | None = None,
) -> Path:
    """Views of the training maps' signs and light heads from where a driver meets them, with
    random states, types and values, or (``subject="road-users"``) of their pedestrians and
    vehicles (launch/gallery.py): close-up and rare views a drive hardly collects, ``views`` of
    each of ``episodes`` episodes per scenario, one every ``every`` ticks at most. At 320×240
    times ``scale`` (and ``twins``), as :func:`collect_training_data`."""
    from launch.camera_cmds import collect_dataset
    from launch.gallery import episode_views
    from perception.perceiver import default_camera
    from sim.scenario import load_scenario

    scenarios = [load_scenario(s) for s in training_scenarios()]
    specs = [default_camera(scale=scale) for _ in scenarios]
    source = functools.partial(episode_views, subject=subject)
    collect_dataset(
        scenarios,
        specs,
        out,
        views,
        episodes,
        seed,
        every=every,
        source=source,
        progress=progress,
        twins=twins,
    )
    return out / "annotations.json"


# The detectors' sets (drives, signs' gallery, road users' views) spread their frames over many
# episodes, a few frames each: 24 episodes of each training scenario, a frame every 1.2 s
# (DRIVE_EVERY ticks) of the first 24 s of each drive, a view every 1.5 s. Four episodes of 60
# frames each, one every 0.4 s, cover the same drives' time with the same number of images
# and score lower on vehicles on every large test set, with two seeds each (docs/perception.md,
# "More episodes, fewer frames each").
DETECTOR_EPISODES = 24
DRIVE_EVERY = 24
GALLERY_EVERY = 30
EPISODES = 4  # randomised episodes of each scenario in the classifier's sign-rich drives
# The classifier's own signs' gallery: three times those episodes (seeds seed+200..seed+211), a
# view every 0.5 s, which the detectors do not train on. The classifier is short of data: with
# it, it reads 86-87 % of the signs the CNN detects in two large gallery sets, 77-79 % without
# (docs/perception.md, "The classifier's own gallery").
CLASSIFIER_GALLERY_EPISODES = 3 * EPISODES


def set_sizes(frames: int, episodes: int = DETECTOR_EPISODES) -> dict[str, int]:
    """Frames (or views) per episode of each set make-default-weights collects for ``frames``
    frames of drives over ``episodes`` episodes of each training scenario: as many signs'
    gallery views, a third as many road users' views; a quarter as many frames of the
    classifier's sign-rich drives and one and a half times as many views in its own gallery,
    over :data:`EPISODES` and :data:`CLASSIFIER_GALLERY_EPISODES` episodes. For the default
    4800 over 24 episodes: 20, 20, 7, 60 and 60 (4800, 4800, 1680, 1200 and 7200 in all)."""

    def per_episode(n: int, scenarios: int, episodes: int) -> int:
        return max(1, -(-n // (scenarios * episodes)))

    n = len(training_scenarios())
    return {
        "data": per_episode(frames, n, episodes),
        "gallery": per_episode(frames, n, episodes),
        "road_users": per_episode(frames // 3, n, episodes),
        "signs_lights": per_episode(frames // 4, len(CLASSIFIER_SCENARIOS), EPISODES),
        "classifier_gallery": per_episode(3 * frames // 2, n, CLASSIFIER_GALLERY_EPISODES),
    }


def read_scale() -> int:
    """The scale of the camera the shipped perceiver's classifier reads
    (``PerceiverSettings.read_scale``): make-default-weights collects its sets at it."""
    from perception.perceiver import PerceiverSettings

    return PerceiverSettings().read_scale


def collect_sets(
    work: Path, frames: int, seed: int, jobs: int = 2, episodes: int = DETECTOR_EPISODES
) -> dict[str, float]:
    """Collect the seven sets make-default-weights trains on under ``work``, ``jobs`` at a time
    (one process each), the longest first; the seconds each took, as ``collect_NAME_s``. The
    classifier's four are rendered at :func:`read_scale`; two of them, ``data_read`` and
    ``gallery_read``, are the same views as the detectors' ``data`` and ``gallery``, rendered
    in the same drives (their time is in ``collect_data_s`` and ``collect_gallery_s``), since a
    drive costs more than its rendering (docs/perception.md, "The detectors with capacity where
    the heads read, shipped"). ``frames`` and ``episodes`` size them (:func:`set_sizes`).

    Each set is a function of its own seed alone, so collecting them side by side writes what
    collecting them in turn writes (annotations.json's creation time aside)."""
    size = set_sizes(frames, episodes)
    k = {"scale": read_scale()}
    drives = (frames, seed, episodes)
    gallery = (seed + 100, episodes, size["gallery"])
    g = {"every": GALLERY_EVERY}
    twin = read_scale()
    sets: dict[str, tuple[Callable[..., Path], tuple[Any, ...], dict[str, Any]]] = {
        # the signs' gallery at both sizes takes longer than any other
        "gallery": (
            collect_gallery_data,
            (work / "gallery", *gallery),
            {**g, "twins": {twin: work / "gallery_read"}},
        ),
        "classifier_gallery": (
            collect_gallery_data,
            (
                work / "classifier_gallery",
                seed + 200,
                CLASSIFIER_GALLERY_EPISODES,
                size["classifier_gallery"],
            ),
            k,
        ),
        "data": (
            collect_training_data,
            (work / "data", *drives),
            {"every": DRIVE_EVERY, "twins": {twin: work / "data_read"}},
        ),
        "road_users": (
            collect_gallery_data,
            (work / "road_users", seed + 150, episodes, size["road_users"], "road-users"),
            g,
        ),
        "signs_lights": (
            collect_classifier_data,
            (work / "signs_lights", seed + 50, EPISODES, size["signs_lights"]),
            k,
        ),
    }
    print(f"collecting {', '.join(sets)}, {jobs} at a time", file=sys.stderr, flush=True)
    if jobs <= 1:
        return {f"collect_{n}_s": _timed(fn, *a, **kw) for n, (fn, a, kw) in sets.items()}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        runs = {
            pool.submit(_timed, fn, *a, progress=False, **kw): n for n, (fn, a, kw) in sets.items()
        }
        timings = {}
        for run in as_completed(runs):
            timings[f"collect_{runs[run]}_s"] = seconds = run.result()
            print(f"collected {runs[run]} in {seconds / 60:.1f} min", file=sys.stderr, flush=True)
    return {f"collect_{n}_s": timings[f"collect_{n}_s"] for n in sets}


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds ``fn(*args, **kwargs)`` took (a process of its own under :func:`collect_sets`)."""
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def _train_one(
    name: str, seed: int, sets: list[Path], out: Path, device: str, max_steps: int | None
) -> tuple[Path, float]:
    """Train one shipped network (a process of its own under make-default-weights); its
    weights' path and the seconds it took."""
    from perception.train import load_train_config, train

    t0 = time.perf_counter()
    cfg = load_train_config(name, seed=seed, max_steps=max_steps)
    path = train(cfg, sets, out, device, progress=False)
    return path, time.perf_counter() - t0


def make_default_weights(
    out: Path,
    work: Path,
    frames: int,
    device: str,
    seed: int,
    collect: bool = True,
    jobs: int = 2,
    max_steps: int | None = None,
    episodes: int = DETECTOR_EPISODES,
) -> dict[str, Any]:
    """Collect the datasets and train the three shipped networks (``jobs`` at a time, each on
    one thread, so a 2-core machine runs two at once) and copy them into ``out``.

    ``frames`` and ``episodes`` size every set (:func:`set_sizes`); ``max_steps`` cuts each
    training short (a smoke test of the whole command)."""
    data = work / "data"
    extra = work / "signs_lights"
    gallery = work / "gallery"
    classifier_gallery = work / "classifier_gallery"
    road_users = work / "road_users"
    data_read, gallery_read = work / "data_read", work / "gallery_read"  # at the read scale
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if collect:
        timings.update(collect_sets(work, frames, seed, jobs, episodes))
        timings["collect_s"] = time.perf_counter() - t0
    # The classifier reads signs and heads, from the camera at the read scale (its crops are
    # cut from the sets' images at their own size); the detectors also learn the road users.
    sets = {
        "stn": [data_read, extra, gallery_read, classifier_gallery],
        "transformer": [data, gallery, road_users],
        "cnn": [data, gallery, road_users],
    }
    # The longest training, the Transformer's, starts at once beside the classifier, the shortest;
    # the CNN takes the classifier's slot when it ends.
    names = list(sets)
    t1 = time.perf_counter()
    print(
        f"training {', '.join(names)}, {jobs} at a time (progress: tensorboard --logdir {work})",
        file=sys.stderr,
        flush=True,
    )
    ctx = multiprocessing.get_context("spawn")  # a fresh torch per run: no shared thread pools
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx) as pool:
        runs = {
            n: pool.submit(_train_one, n, seed, sets[n], work / n, device, max_steps) for n in names
        }
        paths = {}
        for n in names:
            paths[n], timings[f"train_{n}_s"] = runs[n].result()
            print(f"trained {n} in {timings[f'train_{n}_s'] / 60:.1f} min", file=sys.stderr)
    timings["train_s"] = time.perf_counter() - t1
    made = {}
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(paths[n], out / f"{n}.safetensors")
        shutil.copy(paths[n].with_suffix(".json"), out / f"{n}.json")
        made[n] = str(out / f"{n}.safetensors")
    timings["total_s"] = time.perf_counter() - t0
    manifest = {
        "weights": made,
        "data": {n: [str(d) for d in sets[n]] for n in names},
        "frames": frames,
        "episodes": episodes,
        "seed": seed,
        "max_steps": max_steps,
        "device": device,
        "jobs": jobs,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _cmd_make_default_weights(args: argparse.Namespace) -> int:
    out = Path(args.out)
    work = Path(args.work)
    manifest = make_default_weights(
        out,
        work,
        args.frames,
        args.device,
        args.seed,
        not args.no_collect,
        args.jobs,
        args.max_steps,
        args.episodes,
    )
    print(json.dumps(manifest, indent=2))
    return 0


def add_commands(perception: Any) -> None:
    """Add ``train``, ``eval`` and ``make-default-weights`` to the ``perception`` subparsers."""
    tr = perception.add_parser(
        "train", help="train a detector (cnn, transformer) or the stn classifier"
    )
    tr.add_argument("--config", required=True, help="cnn, transformer, stn, or a YAML file")
    tr.add_argument(
        "--data", required=True, nargs="+", help="dataset folder(s) with annotations.json"
    )
    tr.add_argument("--out", required=True, help="folder for weights, config, checkpoint, tb/")
    tr.add_argument("--device", type=_device, default="cpu", help="cpu or cuda")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    tr.add_argument("--epochs", type=int, help="override the config's epochs")
    tr.add_argument(
        "--whole-frame-epochs", type=int, help="override how many of them are on whole frames"
    )
    tr.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--limit", type=int, help="use only the first N images of each split")
    tr.add_argument("--threads", type=int, help="torch CPU threads")
    tr.set_defaults(func=_cmd_train)

    ev = perception.add_parser("eval", help="mAP, sign/light accuracy, position error, latency")
    ev.add_argument("--weights", required=True, help="detector .safetensors (its .json beside it)")
    ev.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER), help="stn .safetensors")
    ev.add_argument("--data", required=True, help="dataset folder with annotations.json")
    ev.add_argument("--out", required=True, help="JSON file for the figures")
    ev.add_argument(
        "--read-data",
        help="the same views at another size (e.g. 640x480), for the classifier's crops",
    )
    ev.add_argument("--split", default="test")
    ev.add_argument("--device", type=_device, default="cpu")
    ev.add_argument(
        "--threads", type=positive_int, default=1, help="torch CPU threads (latency: 1 core)"
    )
    ev.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    ev.add_argument("--latency-frames", type=positive_int, default=100)
    ev.add_argument(
        "--min-height",
        type=non_negative_float,
        default=SCORED_FROM_HEIGHT_PX,
        help="boxes lower than this (px at 240 rows) are ignored regions (default 4)",
    )
    ev.set_defaults(func=_cmd_eval)

    mk = perception.add_parser(
        "make-default-weights", help="collect data and train the shipped weights (CPU, < 1 h)"
    )
    mk.add_argument("--out", default=str(WEIGHTS_DIR), help="where the weights go")
    mk.add_argument("--work", default="runs/default-weights", help="dataset and training runs")
    mk.add_argument(
        "--frames",
        type=positive_int,
        default=4800,
        help="frames of drives the detectors learn from; the other sets scale with it"
        " (default 4800)",
    )
    mk.add_argument(
        "--episodes",
        type=positive_int,
        default=DETECTOR_EPISODES,
        help="randomised episodes of each training scenario in the detectors' sets (default"
        f" {DETECTOR_EPISODES})",
    )
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--device", type=_device, default="cpu")
    mk.add_argument(
        "--no-collect",
        action="store_true",
        help="reuse WORK/data, signs_lights, gallery, classifier_gallery, road_users",
    )
    mk.add_argument(
        "--jobs",
        type=positive_int,
        default=2,
        help="sets collected and networks trained at once, one CPU thread each (default 2; 1:"
        " in turn)",
    )
    mk.add_argument(
        "--max-steps",
        type=positive_int,
        help="stop each training after this many optimiser steps (a smoke test)",
    )
    mk.set_defaults(func=_cmd_make_default_weights)
