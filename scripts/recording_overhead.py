"""Where recording's cost goes: the same episode run plainly, with a recorder whose sink discards
everything (encoding only), with the real pipe sink, and with the pipe written synchronously
(no feeding thread); and the plain loop beside the writer's workload running in another process.
Alternating rounds in one process, medians of the loop's CPU time per step (docs/recording.md).

    python scripts/recording_overhead.py [--steps 1200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launch.record import record_episode, run_recorded
from launch.stack import StackConfig, build_stack, make_world, run_episode
from sim.memory import retain_freed_memory
from sim.recording import Recorder, RecorderSettings
from sim.recording.pipe import PipeSink
from sim.scenario import load_scenario

# the writer process's work, forever: a recording's stage messages through the deriving MCAP sink
WRITER_LOAD = """
import sys, tempfile
from pathlib import Path
from mcap.reader import make_reader
from sim.recording.derive import DerivingSink
from sim.recording.writer import McapSink, RecorderSettings
STAGES = ("/world/static", "/observation", "/perception", "/plan", "/control")
with open(sys.argv[1], "rb") as f:
    msgs = [(c.topic, s.name, m.log_time, m.data)
            for s, c, m in make_reader(f).iter_messages() if c.topic in STAGES]
out = Path(tempfile.mkdtemp()) / "load.mcap"
while True:
    sink = DerivingSink(McapSink(out), RecorderSettings())
    for message in msgs:
        sink.write(*message)
    sink.close()
"""


class _Discard:
    def write(self, topic: str, schema: str, log_time_ns: int, data: bytes) -> None: ...

    def metadata(self, name: str, data: dict[str, str]) -> None: ...

    def close(self) -> None: ...


class _SyncPipe(PipeSink):
    """The pipe sink as it was: every flush written by the loop itself."""

    def _flush(self) -> None:
        if self._pending:
            self._pipe.write(b"".join(self._pending))
            self._pipe.flush()
            self._pending.clear()
            self._pending_bytes = 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="town_loop")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    retain_freed_memory()  # as the command line does
    cfg, scenario = StackConfig(), load_scenario(args.scenario)
    tmp = Path(tempfile.mkdtemp())
    sample = tmp / "sample.mcap"
    record_episode(sample, make_world(cfg.backend), build_stack(cfg), cfg, scenario, 0, 400)

    def episode(mode: str) -> float:
        world, stack = make_world(cfg.backend), build_stack(cfg)
        load = None
        if mode == "plain, writer load beside":
            load = subprocess.Popen([sys.executable, "-c", WRITER_LOAD, str(sample)])
            time.sleep(1.5)  # let it read the sample and get going
        t0 = time.process_time()
        if mode.startswith("plain"):
            run_episode(world, stack, scenario, 0, args.steps)
        else:
            sinks = {
                "discarding sink": _Discard,
                "pipe sink": PipeSink,
                "synchronous pipe": _SyncPipe,
            }
            sink = (
                sinks[mode]()
                if mode == "discarding sink"
                else sinks[mode](tmp / "x.mcap", RecorderSettings())
            )
            run_recorded(Recorder(sink), world, stack, cfg, scenario, 0, args.steps)
        ms = 1e3 * (time.process_time() - t0) / args.steps
        if load is not None:
            load.kill()
            load.wait()
        return ms

    modes = (
        "plain",
        "discarding sink",
        "pipe sink",
        "synchronous pipe",
        "plain, writer load beside",
    )
    times: dict[str, list[float]] = {m: [] for m in modes}
    episode("plain")  # warm caches
    for _ in range(args.rounds):
        for mode in modes:
            times[mode].append(episode(mode))
    base = statistics.median(times["plain"])
    print(
        f"{args.scenario}, {args.steps} steps, {args.rounds} alternating rounds: loop CPU ms/step"
    )
    for mode in modes:
        med = statistics.median(times[mode])
        runs = " ".join(f"{t:.2f}" for t in times[mode])
        print(f"  {mode:28s} {med:6.3f}  {100 * (med / base - 1):+6.1f} %   ({runs})")


if __name__ == "__main__":
    main()
