"""``python -m launch bench mpc``: the batched MPC against IPOPT and OSQP on the same problems.

Every solver drives the same closed loop: vehicles follow the sine path ``y = 5 sin(2πx/100)``
at 10 m/s (the plant is the lagged bicycle of :mod:`control.models`), each from its own place
on the path with its own lateral, heading and speed offset (seeded). Our MPC (default settings)
drives the plant; the other solvers solve the very same problems (state, reference, previously
applied input) in its shadow, each warm-started from its own previous solution, as they would
run in the stack. Only the solve is timed: for ours ``MPC.solve`` and the copy of the first
inputs back to the host; for IPOPT its whole solve; for OSQP its ``update`` + ``solve`` (the
linearisation and the assembly of the QP are left out, which flatters OSQP), and the full
real-time iteration beside it.

Like with like: OSQP solves one linearised QP per control step, so it is compared with our MPC
in its real-time-iteration mode (``mode="rti"``: one Gauss-Newton QP per step from the shifted
warm start); IPOPT solves the nonlinear problem to convergence, so it is compared with our full
SQP (``mode="sqp"``, the default, up to 8 iterations with a line search).

The references solve one vehicle at a time, so their per-vehicle rate is the same for any
fleet size; ours solves the fleet as one batch.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from control.closed_loop import plan_along, sine_path
from control.models import LAGGED, rk4
from control.mpc import MPC, MPCSettings
from control.mpc_controller import plan_reference
from sim.errors import DrivestackError
from sim.messages import FloatArray, VehicleState

DEFAULT_BATCHES = (1, 64, 1024, 4096)
SPEED_MPS = 10.0
BAR_ONE_VEHICLE_MS = 10.0  # median per solve, one vehicle on the CPU
BAR_BATCH = 1024  # ... and at this fleet size on the CPU, this many times OSQP's rate:
BAR_RATIO = 20.0
# timed steps of each fleet's closed loop (after 5 untimed): steps 5-24, 1.25 s of driving from
# the seeded offsets; the references are timed over `--solves` steps of theirs
FLEET_SOLVES = 20
MODES = {"rti": "ours, RTI", "sqp": "ours, SQP"}  # our modes and their row labels
PAIRS = (("rti", "OSQP"), ("sqp", "IPOPT"))  # like with like: one QP; the NLP solved
FLEET_ON = ("all", "cpu", "cuda")  # where the fleets are timed: "all" is the CPU and CUDA if any


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,64,1024"`` → (1, 64, 1024)."""
    try:
        sizes = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise DrivestackError(f"--batches {text!r}: expected positive integers like 1,64,1024")
    return sizes


@dataclass
class _Fleet:
    """The closed loop: plant states ``(B, 6)`` (x, y, yaw, v, a, delta), the last applied
    inputs ``(B, 2)`` and the states at the previous call."""

    x: FloatArray
    u_prev: FloatArray
    prev: FloatArray | None = None


def _fleet(batch: int, rng: np.random.Generator) -> _Fleet:
    x0 = rng.uniform(0.0, 300.0, batch)
    slope = 5.0 * 2.0 * math.pi / 100.0 * np.cos(2.0 * math.pi * x0 / 100.0)
    x = np.zeros((batch, 6))
    x[:, 0] = x0
    x[:, 1] = 5.0 * np.sin(2.0 * math.pi * x0 / 100.0) + rng.uniform(-1.0, 1.0, batch)
    x[:, 2] = np.arctan(slope) + rng.uniform(-0.1, 0.1, batch)
    x[:, 3] = SPEED_MPS + rng.uniform(-2.0, 2.0, batch)
    return _Fleet(x, np.zeros((batch, 2)))


def _problems(
    fleet: _Fleet, path: FloatArray, cfg: MPCSettings
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """This step's problems: ego-frame states ``(B, 6)``, references ``(B, N+1, 5)``, and the
    pose ``(B, 3)`` of each ego frame in the previous one (for the warm starts)."""
    x = fleet.x
    refs = np.empty((len(x), cfg.horizon + 1, 5))
    for i, s in enumerate(x):
        state = VehicleState(0.0, 0, s[0], s[1], s[2], s[3], s[4], s[5])
        ref = plan_reference(plan_along(path, state, SPEED_MPS), state, cfg)
        if isinstance(ref, str):
            raise RuntimeError(f"bench mpc: no reference for vehicle {i}: {ref}")
        refs[i] = ref
    pose = np.zeros((len(x), 3))
    if fleet.prev is not None:
        p = fleet.prev
        c, s = np.cos(p[:, 2]), np.sin(p[:, 2])
        dx, dy = x[:, 0] - p[:, 0], x[:, 1] - p[:, 1]
        pose = np.stack([c * dx + s * dy, -s * dx + c * dy, x[:, 2] - p[:, 2]], -1)
    x_ego = x.copy()
    x_ego[:, :3] = 0.0
    return x_ego, refs, pose


def _advance(fleet: _Fleet, u: FloatArray, cfg: MPCSettings) -> None:
    x = torch.from_numpy(fleet.x)
    nxt = rk4(LAGGED, x, torch.from_numpy(u), cfg.vehicle, cfg.control_period_s)
    nxt[:, 3] = nxt[:, 3].clamp_min(0.0)
    fleet.prev, fleet.x, fleet.u_prev = fleet.x, nxt.numpy(), u


def _load_average() -> str:
    """The 1-minute load average at the start (other processes share the cores), or 'n/a'."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class _Timing:
    wall_s: list[float]  # one entry per call (a whole batch for ours)
    cpu_s: list[float]  # this process's CPU time over the same calls (all its threads)
    batch: int
    not_converged: int  # vehicle-solves that did not converge

    def median_ms(self, cpu: bool = False) -> float:
        return float(np.median(self.cpu_s if cpu else self.wall_s) * 1e3)

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.wall_s, 95) * 1e3)

    def rate(self, cpu: bool = False) -> float:
        """Vehicle-solves per second (of wall time, or of CPU time)."""
        total = float(np.sum(self.cpu_s if cpu else self.wall_s))
        return self.batch * len(self.wall_s) / max(total, 1e-9)


class _Clock:
    """Wall and process CPU time of a block."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device

    def __enter__(self) -> _Clock:
        if self.device is not None:
            _sync(self.device)
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device is not None:
            _sync(self.device)
        self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0


def _time_ours(
    batch: int, device: torch.device, solves: int, warmup: int, seed: int, mode: str
) -> _Timing:
    cfg = MPCSettings(mode=mode)
    mpc = MPC(cfg, device)
    fleet = _fleet(batch, np.random.default_rng(seed))
    path = sine_path(length_m=500.0)
    wall: list[float] = []
    cpu: list[float] = []
    not_converged = 0
    for k in range(warmup + solves):
        x0, refs, pose = _problems(fleet, path, cfg)
        args = [torch.from_numpy(a).to(device) for a in (x0, refs, fleet.u_prev)]
        mpc.move_frame(torch.from_numpy(pose).to(device))
        with _Clock(device) as clock:
            u0, _, _, info = mpc.solve(*args)
            u = u0.cpu().double().numpy()
        if k >= warmup:
            wall.append(clock.wall)
            cpu.append(clock.cpu)
            not_converged += int((~info["converged"]).sum())
        _advance(fleet, u, cfg)
    return _Timing(wall, cpu, batch, not_converged)


def _time_references(solves: int, seed: int) -> tuple[dict[str, _Timing], list[str]]:
    """One vehicle in closed loop under our MPC; IPOPT and OSQP solve the same problems."""
    from control.references import IpoptMPC, OsqpMPC

    cfg = MPCSettings()
    ours = MPC(cfg)
    shadows: dict[str, IpoptMPC | OsqpMPC] = {}
    notes = []
    for module, name, make in (("casadi", "IPOPT", IpoptMPC), ("osqp", "OSQP", OsqpMPC)):
        if importlib.util.find_spec(module) is None:
            notes.append(
                f"{name} reference skipped: the '{module}' package is not installed "
                "(pip install -r requirements-dev.txt)"
            )
        else:
            shadows[name] = make(cfg)
    fleet = _fleet(1, np.random.default_rng(seed))
    path = sine_path(length_m=500.0)
    names = [*shadows, *(["OSQP, whole iteration"] if "OSQP" in shadows else [])]
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    failed = dict.fromkeys(names, 0)
    for k in range(solves + 5):
        x0, refs, pose = _problems(fleet, path, cfg)
        ours.move_frame(torch.from_numpy(pose))
        u0, _, _, _ = ours.solve(*(torch.from_numpy(a) for a in (x0, refs, fleet.u_prev)))
        for name, solver in shadows.items():
            solver.move_frame(pose[0])
            with _Clock() as clock:
                _, _, _, ok = solver.solve(x0[0], refs[0], fleet.u_prev[0])
            if k < 5:
                continue
            timed = [(name, clock.wall, clock.cpu)]
            if isinstance(solver, OsqpMPC):
                timed = [
                    (name, solver.last_solve_s, solver.last_solve_cpu_s),
                    ("OSQP, whole iteration", clock.wall, clock.cpu),
                ]
            for key, w, c in timed:
                wall[key].append(w)
                cpu[key].append(c)
                failed[key] += int(not ok)
        _advance(fleet, u0.double().numpy(), cfg)
    return {n: _Timing(wall[n], cpu[n], 1, failed[n]) for n in names}, notes


def bench_mpc(batches: str | Sequence[int], solves: int, seed: int, fleet_on: str = "all") -> str:
    """The table: per-solve times for one vehicle, then fleet throughput, CPU and CUDA.

    :param batches: fleet sizes (or their comma-separated text)
    :param solves: timed solves for one vehicle
    :param fleet_on: where the fleets are timed: ``all`` (the CPU, and CUDA where there is
        one), ``cpu`` or ``cuda`` (which skips the CPU's fleets, minutes at large sizes)
    """
    sizes = parse_batches(batches) if isinstance(batches, str) else tuple(batches)
    if solves < 1:
        raise DrivestackError(f"--solves {solves}: must be at least 1")
    if fleet_on not in FLEET_ON:
        raise DrivestackError(f"--fleet-on {fleet_on!r}: allowed {', '.join(FLEET_ON)}")
    cuda = torch.cuda.is_available()
    if fleet_on == "cuda" and not cuda:
        raise DrivestackError("--fleet-on cuda: this machine has no CUDA device torch can use")
    on = {"all": ["cpu", *(["cuda"] if cuda else [])], "cpu": ["cpu"], "cuda": ["cuda"]}[fleet_on]
    devices = [torch.device(d) for d in on]
    cfg = MPCSettings()
    threads = torch.get_num_threads()
    lines = [
        "bench mpc: closed loop on y = 5 sin(2πx/100) at 10 m/s, lagged bicycle, "
        f"horizon {cfg.horizon} × {cfg.dt_s} s, {len(cfg.input_blocks)} input blocks, "
        f"{cfg.dtype}; torch {torch.__version__}, {threads} CPU thread(s) for fleets, "
        f"{os.cpu_count()} cores, seed {seed}, load average {_load_average()}",
        "like with like: 'ours, RTI' solves one Gauss-Newton QP per control step (real-time "
        "iteration), as OSQP does; 'ours, SQP' iterates to convergence (up to "
        f"{cfg.max_sqp_iters} QPs, line search), as IPOPT does",
        "",
        f"one vehicle (one CPU thread), {solves} warm-started solves:",
        f"  {'solver':<34} {'median ms':>10} {'p95 ms':>8} {'CPU ms':>8} {'not conv.':>10}",
    ]
    torch.set_num_threads(1)  # the references are single-threaded; ours is for one vehicle
    try:
        single = {
            f"{label} (torch, cpu)": _time_ours(1, torch.device("cpu"), solves, 5, seed, mode)
            for mode, label in MODES.items()
        }
        refs, notes = _time_references(solves, seed)
    finally:
        torch.set_num_threads(threads)
    single.update({f"{k} (cpu)": v for k, v in refs.items()})
    for name, t in single.items():
        lines.append(
            f"  {name:<34} {t.median_ms():10.3f} {t.p95_ms:8.3f} {t.median_ms(cpu=True):8.3f} "
            f"{t.not_converged:>10}"
        )
    fleet: dict[str, dict[int, _Timing]] = {}
    for device in devices:
        for mode, label in MODES.items():
            row: dict[int, _Timing] = {}
            fleet[f"{label} (torch, {device.type})"] = row
            for b in sizes:  # a line as each fleet is done: the whole table takes minutes
                row[b] = _time_ours(b, device, FLEET_SOLVES, 5, seed, mode)
                print(
                    f"  timed {label} on {device.type} for {b} vehicles: "
                    f"{row[b].rate(False):.0f} vehicle-solves/s",
                    file=sys.stderr,
                    flush=True,
                )
    for name, t in refs.items():
        fleet[f"{name} (cpu)"] = dict.fromkeys(sizes, t)  # one by one: any fleet size
    for cpu in (False, True):
        lines += [
            "",
            "fleet: vehicle-solves per "
            + ("CPU-second" if cpu else "second")
            + " (references solve one by one, so any fleet size)",
            f"  {'solver':<34}" + "".join(f"{b:>10}" for b in sizes),
        ]
        for name, by_size in fleet.items():
            if cpu and "cuda" in name:
                continue
            lines.append(f"  {name:<34}" + "".join(f"{by_size[b].rate(cpu):10.0f}" for b in sizes))
    lines += ["", *notes] if notes else []
    sqp_1 = single[f"{MODES['sqp']} (torch, cpu)"]
    busy = sqp_1.median_ms() > 1.5 * sqp_1.median_ms(cpu=True)
    lines.append("")
    if busy:
        lines.append(
            "note: wall time is well above CPU time: other processes held the cores, so wall "
            "figures include waiting; CPU figures are the solvers' own work"
        )
    for cpu in (False, True):
        what = "CPU time" if cpu else "wall time"
        ms = sqp_1.median_ms(cpu)
        lines.append(
            f"bar ({what}): one vehicle on the CPU (SQP, the stack's mode), median {ms:.2f} ms "
            f"(< {BAR_ONE_VEHICLE_MS:.0f} ms): {'met' if ms < BAR_ONE_VEHICLE_MS else 'NOT met'}"
        )
        for mode, ref in PAIRS:
            ours_cpu = fleet.get(f"{MODES[mode]} (torch, cpu)", {})
            if ref not in refs or BAR_BATCH not in ours_cpu:
                continue
            ratio = ours_cpu[BAR_BATCH].rate(cpu) / refs[ref].rate(cpu)
            verdict = (
                f"(>= {BAR_RATIO:.0f}×): {'met' if ratio >= BAR_RATIO else 'NOT met'}"
                if ref == "OSQP"
                else "(no bar; for scale)"
            )
            lines.append(
                f"bar ({what}): fleet of {BAR_BATCH} on the CPU, {MODES[mode]} at {ratio:.1f}× "
                f"{ref}'s one-by-one rate {verdict}"
            )
    return "\n".join(lines)
