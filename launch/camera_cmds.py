"""Camera commands: ``render`` (PNGs and an mp4 with boxes), ``perception collect`` (a COCO
dataset) and ``bench camera`` (frames per second). docs/camera.md explains them.

Scenarios drive as in ``run`` (the default stack: ground truth, rules, PID). The commands render
their own camera only on the ticks they keep, so a scenario's ``sensors`` are taken as camera
settings (the first camera), and a scenario without any gets a default forward camera.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from launch.argtypes import positive_int
from launch.bench import bench_scenario
from launch.stack import StackConfig, build_stack, make_world, run_episode
from perception.dataset import CocoWriter, DatasetSettings
from sim.camera import Camera, camera_spec
from sim.errors import DrivestackError
from sim.messages import CameraFrame, Control, Observation
from sim.render.overlay import draw_boxes
from sim.render.textures import LIGHT_HEAD_M, SIGN_SIZE_M
from sim.scenario import CameraSpec, Scenario, load_scenario
from sim.world import EmbeddedWorld, load_map

# an episode's kept ticks: each one's frames from the camera at each of the asked ``scales``
# times its size (one pose) and the observation they show
EpisodeFrames = list[tuple[tuple[CameraFrame, ...], Observation]]
# (scenario, camera, seed, frames, every, scales) -> its frames
FrameSource = Callable[[Scenario, CameraSpec, int, int, int, tuple[int, ...]], EpisodeFrames]

DEFAULT_CAMERA = {"name": "front", "width": 640, "height": 480, "fov_deg": 90.0}


# ------------------------------------------------------------------------------ settings
def scenario_camera(
    scenario: Scenario,
    width: int | None = None,
    height: int | None = None,
    fov_deg: float | None = None,
) -> CameraSpec:
    """The scenario's first camera, or a default forward one; flags given override its fields."""
    base = scenario.sensors[0].model_dump() if scenario.sensors else DEFAULT_CAMERA
    given = {"width": width, "height": height, "fov_deg": fov_deg}
    return camera_spec(**(base | {k: v for k, v in given.items() if v is not None}))


def without_sensors(scenario: Scenario, **update: Any) -> Scenario:
    """A validated copy of ``scenario`` with no world-side cameras (and ``update`` applied)."""
    data = scenario.model_dump() | {"sensors": []} | update
    return Scenario.model_validate(data | {"path": scenario.path})


def randomised(
    scenario: Scenario, spec: CameraSpec, rng: np.random.Generator
) -> tuple[Scenario, CameraSpec]:
    """An episode's variation for a dataset: traffic, weather and camera pose jitter.

    Traffic counts scale by 0.75–1.5; the sun goes from night (10 % of episodes) to noon,
    clouds 0–90 %, fog in 30 % of episodes; the camera moves ±0.2 m and turns ±2° (roll ±1°).
    """
    tr = scenario.traffic
    traffic = tr.model_dump() | {
        "vehicles": round(tr.vehicles * rng.uniform(0.75, 1.5)),
        "pedestrians": round(tr.pedestrians * rng.uniform(0.75, 1.5)),
    }
    night = rng.random() < 0.1
    weather = scenario.weather.model_dump() | {
        "sun_altitude_angle": float(rng.uniform(-15.0, -3.0) if night else rng.uniform(5.0, 75.0)),
        "sun_azimuth_angle": float(rng.uniform(0.0, 360.0)),
        "cloudiness": float(rng.uniform(0.0, 90.0)),
        "fog_density": float(rng.uniform(10.0, 60.0)) if rng.random() < 0.3 else 0.0,
    }
    jitter = {
        "x": spec.x + float(rng.uniform(-0.2, 0.2)),
        "y": spec.y + float(rng.uniform(-0.2, 0.2)),
        "z": max(0.5, spec.z + float(rng.uniform(-0.2, 0.2))),
        "pitch_deg": spec.pitch_deg + float(rng.uniform(-2.0, 2.0)),
        "yaw_deg": spec.yaw_deg + float(rng.uniform(-2.0, 2.0)),
        "roll_deg": spec.roll_deg + float(rng.uniform(-1.0, 1.0)),
    }
    sc = without_sensors(scenario, traffic=traffic, weather=weather)
    return sc, camera_spec(**(spec.model_dump() | jitter))


def scaled(spec: CameraSpec, scale: int) -> CameraSpec:
    """The same camera (pose, field of view) rendering ``scale`` times as many pixels a side."""
    if scale == 1:
        return spec
    size = {"width": spec.width * scale, "height": spec.height * scale}
    return camera_spec(**(spec.model_dump() | size))


def drive_frames(
    scenario: Scenario,
    spec: CameraSpec,
    seed: int,
    frames: int,
    every: int,
    scales: tuple[int, ...] = (1,),
) -> EpisodeFrames:
    """Drive one episode with the default stack; render every ``every``-th tick, ``frames`` times
    at most (fewer if the episode ends first), at each of ``scales`` times the camera's size:
    one drive for all, which costs more than the rendering (the drives' 4800 frames took 106 s
    at 320×240, 145 s at 640×480, one drive each: docs/perception.md)."""
    sc = without_sensors(scenario)
    road_map = load_map(str(sc.map_path()))
    cams = [Camera(scaled(spec, k), road_map, sc.weather) for k in scales]
    out: EpisodeFrames = []

    def keep(obs: Observation) -> None:
        if obs.frame % every == 0 and len(out) < frames:
            out.append((tuple(cam.render(obs) for cam in cams), obs))

    world = make_world("embedded")
    try:
        run_episode(world, build_stack(StackConfig()), sc, seed, frames * every, keep)
    finally:
        world.close()
    return out


# ------------------------------------------------------------------------------ commands
def cmd_render(args: argparse.Namespace) -> int:
    from launch.cli import _check_writable

    scenario = load_scenario(args.scenario)
    spec = scenario_camera(scenario, args.width, args.height, args.fov)
    out = Path(args.out)
    _check_writable(out)
    frames = [
        (f[0], obs) for f, obs in drive_frames(scenario, spec, args.seed, args.frames, args.every)
    ]
    if not frames:
        raise DrivestackError(f"scenario '{scenario.name}' ended before its first frame")
    fps = 1.0 / (scenario.dt * args.every)
    video = out / "video.mp4"
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter.fourcc(*"mp4v"), fps, (spec.width, spec.height)
    )
    try:
        for i, (frame, _) in enumerate(frames):
            boxed = draw_boxes(frame)
            still = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR) if args.raw else boxed
            cv2.imwrite(str(out / f"frame_{i:04d}.png"), still)
            writer.write(boxed)
    finally:
        writer.release()
    n_boxes = sum(len(f.boxes) for f, _ in frames if f.boxes is not None)
    print(
        f"rendered {len(frames)} frames of {scenario.name} (seed {args.seed}) at "
        f"{spec.width}×{spec.height}, {n_boxes} boxes"
    )
    print(f"wrote {out}/frame_0000.png … frame_{len(frames) - 1:04d}.png and {video}")
    return 0


def collect_dataset(
    scenarios: list[Scenario],
    specs: list[CameraSpec],
    out: Path,
    frames: int,
    episodes: int,
    seed: int,
    every: int,
    settings: DatasetSettings | None = None,
    command: str = "",
    source: FrameSource | None = None,
    progress: bool = True,
    twins: dict[int, Path] | None = None,
) -> CocoWriter:
    """Drive ``episodes`` randomised episodes of each scenario (seeds ``seed``, ``seed + 1``, ...)
    and write their frames and ``annotations.json`` under ``out``.

    ``source`` makes an episode's frames: by default :func:`episode_frames` (the drive's own);
    launch/gallery.py's ``episode_views`` sees the same episodes from in front of signs and heads.
    ``progress=False`` draws no progress bar (sets collected side by side would share a line).
    ``twins`` ({scale: folder}) also writes the same views, from a camera at the same pose
    rendering ``scale`` times its size, as a dataset of their own: what collecting that folder
    with ``scale`` times the camera writes, from one drive instead of two.
    """
    twins = twins or {}
    writers = [CocoWriter(d, settings or DatasetSettings()) for d in (out, *twins.values())]
    scales = (1, *twins)
    make_frames = source or episode_frames
    pairs = zip(scenarios, specs, strict=True)
    plan = [(sc, spec, seed + k) for sc, spec in pairs for k in range(episodes)]
    with tqdm(
        total=len(plan) * frames, unit="frame", file=sys.stderr, disable=None if progress else True
    ) as bar:
        for e, (sc, spec, ep_seed) in enumerate(plan):
            map_name = load_map(str(sc.map_path())).name
            for views, obs in make_frames(sc, spec, ep_seed, frames, every, scales):
                where = ego_positions(obs)
                for writer, frame in zip(writers, views, strict=True):
                    writer.add(frame, sc.name, ep_seed, e, map_name, where)
                bar.update(1)
    for writer in writers:
        writer.finish(seed, {"command": command} if command else None)
    return writers[0]


def episode_frames(
    scenario: Scenario,
    spec: CameraSpec,
    seed: int,
    frames: int,
    every: int,
    scales: tuple[int, ...] = (1,),
) -> EpisodeFrames:
    """One episode randomised from its seed (:func:`randomised`), driven, and a frame kept every
    ``every`` ticks, ``frames`` at most, at each of ``scales`` (:func:`drive_frames`)."""
    rng = np.random.default_rng([seed, zlib.crc32(scenario.name.encode())])
    sc, spec_e = randomised(scenario, spec, rng)
    return drive_frames(sc, spec_e, seed, frames, every, scales)


def ego_positions(obs: Observation) -> dict[int, tuple[float, float, float]]:
    """Centres (ego frame, m) of every actor, sign face and light head, by id."""
    gt, ego = obs.ground_truth, obs.ego
    a = gt.actors
    xy = ego.to_ego(np.stack([a.x, a.y], -1)) if len(a) else np.zeros((0, 2))
    out = {
        int(i): (float(p[0]), float(p[1]), float(h) / 2.0)
        for i, p, h in zip(a.id.tolist(), xy, a.height.tolist(), strict=True)
    }
    for sg in gt.signs:
        p = ego.to_ego(np.array([sg.x, sg.y]))
        out[sg.id] = (float(p[0]), float(p[1]), sg.z + SIGN_SIZE_M.get(sg.type, 0.6) / 2.0)
    for lt in gt.lights:
        p = ego.to_ego(np.array([lt.x, lt.y]))
        out[lt.id] = (float(p[0]), float(p[1]), lt.z + LIGHT_HEAD_M[1] / 2.0)
    return out


def cmd_collect(args: argparse.Namespace) -> int:
    from launch.cli import _check_writable

    scenarios = [load_scenario(s) for s in args.scenario]
    specs = [scenario_camera(sc, args.width, args.height, args.fov) for sc in scenarios]
    out = Path(args.out)
    _check_writable(out)
    command = " ".join(["python -m launch", *sys.argv[1:]])
    source = None
    if args.gallery:
        from launch.gallery import episode_views

        source = functools.partial(episode_views, subject=args.gallery)
    writer = collect_dataset(
        scenarios,
        specs,
        out,
        args.frames,
        args.episodes,
        args.seed,
        args.every,
        command=command,
        source=source,
    )
    counts = {s: 0 for s in ("train", "val", "test")}
    for im in writer.images:
        counts[im["split"]] += 1
    print(
        f"collected {len(writer.images)} images, {len(writer.annotations)} boxes from "
        f"{len(scenarios) * args.episodes} episodes (images: train {counts['train']}, "
        f"val {counts['val']}, test {counts['test']})"
    )
    print(f"wrote {out / 'annotations.json'}")
    return 0


def bench_camera(map_name: str, vehicles: int, pedestrians: int, frames: int, seed: int) -> str:
    """Camera frames per second at 320×240 (RGB, depth, semantic, instance, boxes) on one core.

    The ego drives the default stack through the map with traffic; the camera renders every
    tick and only the time inside ``Camera.render`` counts (thread CPU time, OpenCV on one
    thread).
    """
    cv2.setNumThreads(1)
    scenario = bench_scenario("bench_camera", map_name, vehicles, pedestrians)
    world = EmbeddedWorld()
    stack = build_stack(StackConfig())
    obs = world.reset(scenario, seed)
    stack.reset()
    t0 = time.perf_counter()
    cam = Camera(camera_spec(width=320, height=240), world.map, scenario.weather)
    setup_s = time.perf_counter() - t0
    for _ in range(20):  # warm-up: caches, first allocations
        obs = world.step(Control(obs.t, obs.frame, 0.0, 0.0))
        cam.render(obs)
    per_frame: list[float] = []
    boxes: list[int] = []
    while len(per_frame) < frames and not world.done:
        perception = stack.perceiver.update(obs)
        plan = stack.planner.update(perception, obs.route, obs.ego)
        obs = world.step(stack.controller.update(plan, obs.ego))
        t = time.thread_time()
        frame = cam.render(obs)
        per_frame.append(time.thread_time() - t)
        boxes.append(0 if frame.boxes is None else len(frame.boxes))
    ms = np.array(per_frame) * 1e3
    return "\n".join(
        [
            f"bench camera: map {map_name}, {world.traffic.n} vehicles, {world.peds.n} "
            f"pedestrians, 320×240 RGB + depth + semantic + instance + boxes, {len(ms)} frames "
            f"(seed {seed})",
            f"camera frames per second {len(ms) / ms.sum() * 1e3:8.0f}   "
            f"(median {np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms per frame, "
            f"one thread)",
            f"boxes per frame          {np.mean(boxes):8.1f}   (max {max(boxes)})",
            f"set-up                   {setup_s:8.2f} s (map raster, built once per map)",
        ]
    )


# ------------------------------------------------------------------------------ parsers
def _camera_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=int, help="image width, px (default: the scenario's or 640)")
    p.add_argument("--height", type=int, help="image height, px (default: the scenario's or 480)")
    p.add_argument("--fov", type=float, help="horizontal field of view, deg (default 90)")


def add_render_parser(sub: Any) -> None:
    """``python -m launch render SCENARIO --frames N --out DIR``."""
    p = sub.add_parser(
        "render", help="drive a scenario and write camera PNGs and an mp4 with boxes"
    )
    p.add_argument("scenario", help="a built-in scenario name or a path to a YAML file")
    p.add_argument("--frames", type=positive_int, default=40)
    p.add_argument("--out", required=True, help="directory for the PNGs and video.mp4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=positive_int, default=2, help="ticks between frames")
    p.add_argument("--raw", action="store_true", help="PNGs without boxes (the mp4 keeps them)")
    _camera_flags(p)
    p.set_defaults(func=cmd_render)


def add_collect_parser(sub: Any) -> None:
    """``python -m launch perception collect --scenario S ... --frames N --seed K --out DIR``."""
    p = sub.add_parser("collect", help="drive scenarios and write a COCO detection dataset")
    p.add_argument("--scenario", action="append", required=True, help="repeat for several")
    p.add_argument("--frames", type=positive_int, default=50, help="frames per episode")
    p.add_argument("--episodes", type=positive_int, default=3, help="episodes per scenario")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    p.add_argument("--every", type=positive_int, default=10, help="ticks between frames")
    p.add_argument("--out", required=True, help="directory for images/ and annotations.json")
    p.add_argument(
        "--gallery",
        nargs="?",
        const="signs",
        choices=("signs", "road-users"),
        help="views instead of the drive's own frames (launch/gallery.py): of the maps' signs "
        "and light heads with random faces (--gallery, or --gallery signs) or of road users "
        "(--gallery road-users); --frames counts views per episode",
    )
    _camera_flags(p)
    p.set_defaults(func=cmd_collect)
