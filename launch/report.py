"""``python -m launch report FILE.mcap|RUN_DIR --out DIR``: report.json, report.html, plots, mp4.

- a recording (or a run directory holding one) gives an episode report: speed against the
  limit, cross-track error, accel and steer against their limits, events on a timeline, the
  driving-score breakdown, and ``episode.mp4`` with the camera (when recorded) beside a
  bird's-eye view of lanes, ground-truth boxes, detections and the plan;
- an evaluation directory (``summary.json``) gives a sweep report: the episodes' table, their
  scores, failures, and an episode report for each recording found.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import DrivestackError
from sim.metrics import PENALTY_COEFFICIENTS
from sim.recording import Recording, camera_topics, codec, read_recording
from sim.recording.codec import unpack
from sim.recording.foxglove import lines_of

log = logging.getLogger(__name__)

BEV_PX = 480  # bird's-eye view: square panel, px
BEV_SCALE = 4.0  # px per metre
BEV_EGO_ROW = 0.7  # the ego sits this far down the panel, so more is seen ahead


# ------------------------------------------------------------------------------ time series
@dataclass
class Series:
    """Per-frame and per-tick arrays pulled from a recording (SI units)."""

    t: np.ndarray
    speed: np.ndarray
    limit: np.ndarray
    cross_track: np.ndarray
    accel: np.ndarray
    steer: np.ndarray
    t_cmd: np.ndarray
    accel_cmd: np.ndarray
    steer_cmd: np.ndarray
    events: list[dict[str, Any]]


def series_of(rec: Recording) -> Series:
    m = rec.json("/metrics")
    c = rec.json("/control")
    events = [e for msg in rec.json("/events") for e in msg["events"]]

    def col(rows: list[dict[str, Any]], key: str) -> np.ndarray:
        return np.array([r[key] if r[key] is not None else np.nan for r in rows], dtype=float)

    return Series(
        t=col(m, "t"),
        speed=col(m, "speed_mps"),
        limit=col(m, "speed_limit_mps"),
        cross_track=col(m, "cross_track_m"),
        accel=col(m, "accel_mps2"),
        steer=col(m, "steer_rad"),
        t_cmd=col(c, "t"),
        accel_cmd=col(c, "accel"),
        steer_cmd=col(c, "steer"),
        events=events,
    )


def limits_of(rec: Recording) -> dict[str, float]:
    """The vehicle's actuator limits and, where the controller has them, its comfort bounds."""
    v = rec.config.get("vehicle", {})
    ctl = rec.config.get("settings", {}).get("control", {})
    out = {
        "max_accel_mps2": float(v.get("max_accel_mps2", math.nan)),
        "max_decel_mps2": float(v.get("max_decel_mps2", math.nan)),
        "max_steer_rad": float(v.get("max_steer_rad", math.nan)),
    }
    for key in ("max_accel_mps2", "max_decel_mps2"):
        if isinstance(ctl.get(key), int | float):
            out[f"controller_{key}"] = float(ctl[key])
    return out


def stats_of(s: Series, dt: float) -> dict[str, Any]:
    over = s.speed - s.limit
    jerk = np.diff(s.accel) / dt if len(s.accel) > 1 else np.zeros(1)
    counts: dict[str, int] = {}
    for e in s.events:
        counts[e["type"]] = counts.get(e["type"], 0) + 1

    def fmax(a: np.ndarray) -> float:
        a = a[np.isfinite(a)]
        return float(np.max(a)) if len(a) else 0.0

    return {
        "sim_time_s": float(s.t[-1]) if len(s.t) else 0.0,
        "distance_m": float(np.sum(s.speed[:-1]) * dt) if len(s.speed) > 1 else 0.0,
        "mean_speed_mps": float(np.mean(s.speed)) if len(s.speed) else 0.0,
        "max_speed_over_limit_mps": fmax(over),
        "time_over_limit_pct": float(100 * np.mean(over[np.isfinite(over)] > 0.0))
        if np.isfinite(over).any()
        else 0.0,
        "mean_abs_cross_track_m": float(np.mean(np.abs(s.cross_track))) if len(s.t) else 0.0,
        "max_abs_cross_track_m": fmax(np.abs(s.cross_track)),
        "max_accel_mps2": fmax(s.accel),
        "max_decel_mps2": fmax(-s.accel),
        "max_abs_jerk_mps3": fmax(np.abs(jerk)),
        "max_abs_steer_rad": fmax(np.abs(s.steer)),
        "event_counts": counts,
    }


# ------------------------------------------------------------------------------------ plots
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_episode(
    s: Series, limits: dict[str, float], result: dict[str, Any] | None, out: Path
) -> list[str]:
    """The episode's figures as PNG files in ``out``; returns their names."""
    plt = _plt()
    names = []

    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(s.t, s.speed * 3.6, label="speed")
    ax.step(s.t, s.limit * 3.6, where="post", color="tab:red", label="speed limit")
    ax.set(xlabel="t (s)", ylabel="km/h", title="Speed against the limit")
    ax.legend(loc="upper right")
    names.append(_save(fig, out / "speed.png"))

    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(s.t, s.cross_track, color="tab:purple")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set(xlabel="t (s)", ylabel="m (+ left of the route)", title="Cross-track error")
    names.append(_save(fig, out / "cross_track.png"))

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    a1.plot(s.t_cmd, s.accel_cmd, lw=0.8, alpha=0.7, label="commanded")
    a1.plot(s.t, s.accel, label="actual")
    a1.axhline(limits["max_accel_mps2"], color="tab:red", ls="--", label="vehicle limits")
    a1.axhline(-limits["max_decel_mps2"], color="tab:red", ls="--")
    if "controller_max_accel_mps2" in limits:
        a1.axhline(limits["controller_max_accel_mps2"], color="tab:orange", ls=":")
        a1.axhline(
            -limits["controller_max_decel_mps2"],
            color="tab:orange",
            ls=":",
            label="controller bounds",
        )
    a1.set(ylabel="m/s²", title="Acceleration and steering against their limits")
    a1.legend(loc="upper right", fontsize=8)
    a2.plot(s.t_cmd, s.steer_cmd, lw=0.8, alpha=0.7, label="commanded")
    a2.plot(s.t, s.steer, label="actual")
    a2.axhline(limits["max_steer_rad"], color="tab:red", ls="--", label="limit")
    a2.axhline(-limits["max_steer_rad"], color="tab:red", ls="--")
    a2.set(xlabel="t (s)", ylabel="rad")
    a2.legend(loc="upper right", fontsize=8)
    names.append(_save(fig, out / "actuation.png"))

    fig, ax = plt.subplots(figsize=(9, 2.8))
    types = sorted({e["type"] for e in s.events})
    for i, kind in enumerate(types):
        ts = [e["t"] for e in s.events if e["type"] == kind]
        ax.scatter(ts, [i] * len(ts), marker="|", s=300)
    ax.set_yticks(range(len(types)), types)
    ax.set_xlim(0, float(s.t[-1]) if len(s.t) else 1.0)
    ax.set(xlabel="t (s)", title="Events" if types else "Events (none)")
    names.append(_save(fig, out / "events.png"))

    if result is not None:
        names.append(plot_score(result, out / "score.png"))
    return names


def plot_score(result: dict[str, Any], path: Path) -> str:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 2]})
    vals = [result["route_completion"], 100 * result["infraction_penalty"], result["driving_score"]]
    bars = a1.bar(["RC %", "IP ×100", "DS"], vals, color=["tab:blue", "tab:orange", "tab:green"])
    a1.bar_label(bars, fmt="%.1f")
    a1.set_ylim(0, 110)
    a1.set_title("Driving score = RC × IP")
    counts = {k: v for k, v in result.get("infraction_counts", {}).items() if v}
    if counts:
        labels = [
            f"{k}\n×{PENALTY_COEFFICIENTS[k]}" if k in PENALTY_COEFFICIENTS else k for k in counts
        ]
        b2 = a2.bar(labels, list(counts.values()), color="tab:red")
        a2.bar_label(b2)
        a2.tick_params(axis="x", labelsize=7)
    else:
        a2.text(0.5, 0.5, "no infractions", ha="center", va="center", transform=a2.transAxes)
    a2.set_title("Infractions (× penalty coefficient each)")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path.name


# ------------------------------------------------------------------------------------ video
def _to_px(ego_xy: np.ndarray) -> np.ndarray:
    """Ego-frame points ``(N, 2)`` → BEV pixel coordinates ``(N, 2)`` (x forward is up)."""
    u = BEV_PX / 2 - ego_xy[:, 1] * BEV_SCALE
    v = BEV_PX * BEV_EGO_ROW - ego_xy[:, 0] * BEV_SCALE
    return np.stack([u, v], -1)


def _box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = length / 2, width / 2
    local = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
    return np.stack(
        [x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1]], -1
    )


def write_video(rec: Recording, path: Path, stride: int = 1) -> tuple[int, str]:
    """``episode.mp4``: the camera (when recorded) beside the bird's-eye view; returns the
    number of frames written and the codec."""
    import cv2

    from sim.messages import VehicleParams

    obs_msgs = rec.messages.get("/observation", [])
    if not obs_msgs:
        raise DrivestackError(f"{rec.path}: no observations recorded: no video to make")
    perception = rec.json("/perception")
    plans = rec.json("/plan")
    scene = rec.json("/map")
    lanes = lines_of(scene[0], "map") if scene else []
    lane_pts = [ln for ln in lanes if len(ln) > 1]
    veh = VehicleParams(**rec.config.get("vehicle", {}))
    cams = rec.cameras
    cam = cams[0] if cams else None
    images = rec.messages.get(camera_topics(cam)[0], []) if cam else []
    dt = float(rec.scenario.get("dt", 0.05))
    fps = max(1.0, 1.0 / (dt * stride))
    cam_w = 0
    if images:
        first = _decode_image(images[0])
        cam_w = round(first.shape[1] * BEV_PX / first.shape[0]) if first is not None else 0
    size = (cam_w + BEV_PX, BEV_PX)
    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise DrivestackError(f"{path}: OpenCV cannot write an mp4 here (codec mp4v)")
    written = 0
    static = rec.static
    try:
        for k in range(0, len(obs_msgs), stride):
            d = json.loads(obs_msgs[k])
            bev = _draw_bev(d, static, lane_pts, veh, perception, plans, k)
            panel = bev
            if cam_w:
                img = _decode_image(images[k]) if k < len(images) else None
                cam_panel = np.zeros((BEV_PX, cam_w, 3), np.uint8)
                if img is not None:
                    cam_panel = _draw_camera(img, d, cam, perception, k, cam_w)
                panel = np.concatenate([cam_panel, bev], axis=1)
            writer.write(panel)
            written += 1
    finally:
        writer.release()
    return written, "mp4v"


def _decode_image(raw: bytes) -> np.ndarray | None:
    import cv2

    data = base64.b64decode(json.loads(raw)["data"])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # BGR


def _draw_camera(
    bgr: np.ndarray,
    d: dict[str, Any],
    cam: str | None,
    perception: list[dict[str, Any]],
    k: int,
    w: int,
) -> np.ndarray:
    import cv2

    scale = BEV_PX / bgr.shape[0]
    img = cv2.resize(bgr, (w, BEV_PX), interpolation=cv2.INTER_LINEAR)
    labels = d.get("sensors", {}).get(cam or "", {})
    if "boxes" in labels:
        for b in unpack(labels["boxes"]).reshape(-1, 4):
            p0 = (int(b[0] * scale), int(b[1] * scale))
            p1 = (int(b[2] * scale), int(b[3] * scale))
            cv2.rectangle(img, p0, p1, (0, 220, 255), 1)
    if k < len(perception):
        for box in perception[k]["objects"]["box"]:
            if box is not None:
                p0 = (int(box[0] * scale), int(box[1] * scale))
                p1 = (int(box[2] * scale), int(box[3] * scale))
                cv2.rectangle(img, p0, p1, (60, 230, 60), 2)
    return img


def _draw_bev(
    d: dict[str, Any],
    static: codec.StaticGT,
    lanes: list[np.ndarray],
    veh: Any,
    perception: list[dict[str, Any]],
    plans: list[dict[str, Any]],
    k: int,
) -> np.ndarray:
    import cv2

    from sim.messages import VehicleState

    img = np.full((BEV_PX, BEV_PX, 3), 40, np.uint8)
    e = d["ego"]
    ego = VehicleState(e["t"], e["frame"], e["x"], e["y"], e["yaw"], e["speed"])
    reach = BEV_PX / BEV_SCALE
    for lane in lanes:
        if np.min(np.hypot(lane[:, 0] - ego.x, lane[:, 1] - ego.y)) > reach:
            continue
        pts = _to_px(ego.to_ego(lane)).astype(np.int32)
        cv2.polylines(img, [pts], False, (110, 110, 110), 1, cv2.LINE_AA)
    ahead = codec.decode_route_ahead(d["route"], static.route, ego)
    route = ahead.xy
    cv2.polylines(img, [_to_px(route).astype(np.int32)], False, (60, 200, 220), 2, cv2.LINE_AA)
    af = unpack(d["actors"]["floats"]).reshape(-1, 7)
    ai = unpack(d["actors"]["ints"]).reshape(-1, 2)
    for (x, y, yaw, _, length, width, _), (_, kind) in zip(af.tolist(), ai.tolist(), strict=True):
        if math.hypot(x - ego.x, y - ego.y) > reach:
            continue
        poly = _to_px(ego.to_ego(_box_corners(x, y, yaw, length, width))).astype(np.int32)
        color = (40, 140, 255) if kind == 2 else (240, 140, 60)  # BGR: pedestrians orange
        cv2.fillPoly(img, [poly], color)
    states = d["lights"].get("state")
    if states is not None:
        for g, st in zip(static.lights, states, strict=True):
            if math.hypot(g.x - ego.x, g.y - ego.y) < reach:
                p = _to_px(ego.to_ego(np.array([[g.x, g.y]])))[0].astype(int)
                color = {0: (0, 0, 255), 1: (0, 215, 255), 2: (0, 220, 0)}.get(st, (128, 128, 128))
                cv2.circle(img, (int(p[0]), int(p[1])), 5, color, -1)
    if k < len(perception):
        o = perception[k]["objects"]
        objs = unpack(o["floats"]).reshape(-1, 7)
        for x, y, yaw, _, length, width, _ in objs.tolist():
            poly = _to_px(_box_corners(x, y, yaw, length, width)).astype(np.int32)
            cv2.polylines(img, [poly], True, (60, 230, 60), 2)
    if k < len(plans):
        path = unpack(plans[k]["path"]).reshape(-1, 2)
        if len(path) > 1:
            cv2.polylines(
                img, [_to_px(path).astype(np.int32)], False, (230, 60, 230), 2, cv2.LINE_AA
            )
    off = veh.center_offset_m
    ego_box = _to_px(_box_corners(off, 0.0, 0.0, veh.length_m, veh.width_m)).astype(np.int32)
    cv2.fillPoly(img, [ego_box], (255, 255, 255))
    limit = ahead.speed_limit_mps[:1]
    text = f"t {ego.t:5.1f} s  v {ego.speed * 3.6:5.1f} km/h"
    if len(limit):
        text += f"  limit {limit[0] * 3.6:.0f}"
    cv2.putText(img, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


# ----------------------------------------------------------------------------------- report
def episode_report(
    rec: Recording, out: Path, video: bool = True, stride: int = 1
) -> dict[str, Any]:
    """Write the episode's figures, video, report.json and report.html into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    s = series_of(rec)
    if len(s.t) == 0:
        raise DrivestackError(f"{rec.path}: no frames recorded: nothing to report")
    dt = float(rec.scenario.get("dt", 0.05))
    result = rec.result
    limits = limits_of(rec)
    figures = plot_episode(s, limits, result, out)
    report: dict[str, Any] = {
        "kind": "episode",
        "recording": str(rec.path),
        "recording_status": rec.status,
        "recording_complete": rec.complete,
        "scenario": rec.scenario.get("name"),
        "seed": rec.config.get("seed"),
        "stack": rec.config.get("stack"),
        "result": result,
        "limits": limits,
        "stats": stats_of(s, dt),
        "events": s.events,
        "figures": figures,
    }
    if video:
        frames, codec = write_video(rec, out / "episode.mp4", stride)
        report["video"] = {"file": "episode.mp4", "frames": frames, "codec": codec}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.html").write_text(_episode_html(report))
    return report


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items()) or "none"
    return str(v)


_CSS = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;"
    "text-align:left;font-size:14px}img,video{max-width:100%}.warn{color:#b00}"
)


def _episode_html(r: dict[str, Any]) -> str:
    res = r["result"] or {}
    head = [
        ("scenario", r["scenario"]),
        ("seed", r["seed"]),
        ("stack", r["stack"]),
        ("status", res.get("status", "no result recorded")),
        ("driving score", res.get("driving_score", "n/a")),
        ("route completion %", res.get("route_completion", "n/a")),
        ("infraction penalty", res.get("infraction_penalty", "n/a")),
    ]
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(str(r['scenario']))}</title>",
        f"<style>{_CSS}</style><h1>Episode report: {html.escape(str(r['scenario']))}</h1>",
    ]
    if not r["recording_complete"]:
        parts.append(f"<p class='warn'>{html.escape(r['recording_status'])}</p>")
    parts.append(_table(head))
    parts.append("<h2>Statistics</h2>" + _table(list(r["stats"].items())))
    if "video" in r:
        v = r["video"]
        parts.append(
            f"<h2>Video</h2><video controls src='{v['file']}'></video><p><a href='{v['file']}'>"
            f"{v['file']}</a> ({v['frames']} frames; camera left when recorded, bird's-eye view "
            "right: ground truth filled, detections green, plan magenta, route yellow). Encoded "
            "as MPEG-4 part 2 (mp4v): if the browser does not play it, open it in a player.</p>"
        )
    parts.append("<h2>Plots</h2>" + "".join(f"<p><img src='{f}'></p>" for f in r["figures"]))
    if r["events"]:
        rows = "".join(
            f"<tr><td>{e['t']:.2f}</td><td>{html.escape(e['type'])}</td>"
            f"<td>{html.escape(e.get('detail', ''))}</td></tr>"
            for e in r["events"][:500]
        )
        parts.append(
            "<h2>Events</h2><table><tr><th>t (s)</th><th>type</th><th>detail</th></tr>"
            f"{rows}</table>"
        )
    return "\n".join(parts) + "\n"


def sweep_report(run_dir: Path, out: Path, video: bool, stride: int) -> dict[str, Any]:
    """A report over an evaluation directory: its summary, and each recorded episode's report."""
    summary = json.loads((run_dir / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    episodes = []
    for ep in summary.get("episodes", []):
        name = f"{ep['scenario']}__seed{ep['seed']}"
        rec_path = run_dir / name / "recording.mcap"
        entry = dict(ep)
        if rec_path.is_file():
            try:
                episode_report(read_recording(rec_path), out / name, video, stride)
                entry["report"] = f"{name}/report.html"
            except DrivestackError as exc:
                entry["report_error"] = str(exc)
        episodes.append(entry)
    figures = []
    if episodes:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(9, max(2.5, 0.3 * len(episodes))))
        labels = [f"{e['scenario']} s{e['seed']}" for e in episodes]
        ax.barh(labels, [e["driving_score"] for e in episodes], color="tab:green")
        ax.set(xlabel="driving score", xlim=(0, 100), title="Driving score per episode")
        ax.invert_yaxis()
        figures.append(_save(fig, out / "scores.png"))
    report = {
        "kind": "sweep",
        "run_dir": str(run_dir),
        "summary": {k: v for k, v in summary.items() if k != "episodes"},
        "episodes": episodes,
        "figures": figures,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.html").write_text(_sweep_html(report))
    return report


def _sweep_html(r: dict[str, Any]) -> str:
    m = r["summary"]
    rows = [
        ("episodes", m.get("n_routes")),
        (
            "driving score",
            f"{m.get('driving_score', 0):.1f} ± {m.get('driving_score_ci95', 0):.1f}",
        ),
        ("route completion", f"{m.get('route_completion', 0):.1f}"),
        ("infraction penalty", f"{m.get('infraction_penalty', 0):.3f}"),
        ("stack", m.get("stack")),
        ("failed tasks", len(m.get("failures", []))),
    ]
    ep_rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{:.1f}</td><td>{:.1f}</td><td>{:.3f}</td><td>{}</td>"
        "<td>{}</td></tr>".format(
            html.escape(e["scenario"]),
            e["seed"],
            e["driving_score"],
            e["route_completion"],
            e["infraction_penalty"],
            html.escape(e["status"]),
            f"<a href='{e['report']}'>report</a>" if "report" in e else "",
        )
        for e in r["episodes"]
    )
    fails = "".join(
        f"<tr><td>{html.escape(str(f.get('scenario')))}</td><td>{f.get('seed')}</td>"
        f"<td>{html.escape(str(f.get('error')))}</td></tr>"
        for f in m.get("failures", [])
    )
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>Evaluation</title><style>{_CSS}</style>",
        "<h1>Evaluation report</h1>",
        _table(rows),
        "<table><tr><th>scenario</th><th>seed</th><th>DS</th><th>RC</th><th>IP</th>"
        f"<th>status</th><th></th></tr>{ep_rows}</table>",
    ]
    if fails:
        parts.append(
            "<h2 class='warn'>Failed tasks</h2><table><tr><th>scenario</th><th>seed</th>"
            f"<th>error</th></tr>{fails}</table>"
        )
    parts += [f"<p><img src='{f}'></p>" for f in r["figures"]]
    return "\n".join(parts) + "\n"


def make_report(source: Path, out: Path, video: bool = True, stride: int = 1) -> dict[str, Any]:
    """Dispatch on what ``source`` is: a recording, an evaluation directory, a run directory."""
    if source.is_dir():
        if (source / "summary.json").is_file():
            return sweep_report(source, out, video, stride)
        recordings = sorted(source.glob("*.mcap"))
        if not recordings:
            raise DrivestackError(
                f"{source}: no summary.json and no .mcap recording in it; run with --record "
                "(or evaluate --record) to get something to report on"
            )
        return episode_report(read_recording(recordings[0]), out, video, stride)
    return episode_report(read_recording(source), out, video, stride)


def cmd_report(args: argparse.Namespace) -> int:
    source = Path(args.source)
    if not source.exists():
        raise DrivestackError(f"{source}: no such file or directory")
    rep = make_report(source, Path(args.out), not args.no_video, args.video_stride)
    if rep["kind"] == "episode" and not rep["recording_complete"]:
        print(f"warning: {rep['recording']}: {rep['recording_status']}", file=sys.stderr)
    print(f"wrote {Path(args.out) / 'report.html'} and report.json")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="HTML/JSON report with plots and video of a run")
    p.add_argument("source", help="a recording (.mcap), a run directory, or an evaluate output")
    p.add_argument("--out", required=True, help="directory for report.html, report.json, ...")
    p.add_argument("--no-video", action="store_true", help="skip episode.mp4")
    p.add_argument("--video-stride", type=int, default=1, help="use every N-th frame in the video")
    p.set_defaults(func=cmd_report)
