"""An MCAP writer in its own process, fed through a pipe.

Encoding the stages' messages stays in the loop (it reads the live messages); the derived
channels (sim/recording/derive.py) and the container work (chunking, indexes, compression, disk
writes) run in a child process on another core, so recording costs the loop little more than
encoding. The child ignores Ctrl-C and finishes the file when its
pipe closes, so a run that is interrupted, crashes or is killed still leaves a finished file
(whose ``drivestack.end`` status is missing when the parent could not write it).

The loop never waits for the writer: a thread of this process feeds the pipe (a blocked pipe
write holds no GIL), so a writer that falls behind for a while, when another process has its
core, costs the loop nothing until ``_QUEUE_BLOBS`` blobs of about 64 KiB (32 MiB) are queued.

Frames on the pipe: ``<B I H Q`` (opcode, payload length, channel index, log time ns) and the
payload. Opcodes: 1 channel (payload: topic NUL schema), 2 message, 3 metadata (payload: name
NUL JSON object), 4 close.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, BinaryIO

from sim.errors import DrivestackError
from sim.recording.writer import RecorderSettings

_FRAME = struct.Struct("<BIHQ")
_CHANNEL, _MESSAGE, _METADATA, _CLOSE = 1, 2, 3, 4


_PIPE_BYTES = 1 << 20  # Linux's default cap for unprivileged pipes (/proc/sys/fs/pipe-max-size)
_QUEUE_BLOBS = 512  # blobs of ~64 KiB the feeding thread may hold before the loop waits
# The writer yields to the loop: Linux often wakes a pipe's reader on the writer's CPU, where at
# equal priority it would take half the loop's time until the load balancer moves it; at nice 10
# it gets about a tenth there, and all of an idle core
_NICENESS = 10


def _widen(pipe: IO[bytes]) -> None:
    """Give the pipe room for several flushes, so the loop rarely waits for the writer to read.

    Linux's default pipe holds 64 KiB, one flush: every flush then blocks until the child has
    drained the previous one. Elsewhere, or where the cap is lower, the default stays.
    """
    try:
        import fcntl  # POSIX only
    except ImportError:
        return
    if not hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux only
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


class PipeSink:
    """A :class:`~sim.recording.writer.Sink` that hands messages to a writer process."""

    def __init__(self, path: Path, settings: RecorderSettings) -> None:
        self.path = Path(path)
        args = [str(self.path), json.dumps(dataclasses.asdict(settings))]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sim.recording.pipe", *args],
            stdin=subprocess.PIPE,  # its stderr is ours: a failure is printed where we print
        )
        assert self._proc.stdin is not None
        self._pipe: IO[bytes] = self._proc.stdin
        _widen(self._pipe)
        self._channels: dict[str, int] = {}
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._closed = False
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUE_BLOBS)
        self._broken = False  # set by the feeder when the writer process is gone
        self._feeder = threading.Thread(target=self._feed, name="mcap-pipe", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        """The feeding thread: blobs from the queue into the pipe until ``None``."""
        while (blob := self._queue.get()) is not None:
            if self._broken:
                continue  # drain, so the loop never blocks on a full queue
            try:
                self._pipe.write(blob)
                self._pipe.flush()
            except (BrokenPipeError, OSError):
                self._broken = True

    def write(self, topic: str, schema: str, log_time_ns: int, data: bytes) -> None:
        channel = self._channels.get(topic)
        if channel is None:
            channel = self._channels[topic] = len(self._channels)
            payload = f"{topic}\0{schema}".encode()
            self._pending += [_FRAME.pack(_CHANNEL, len(payload), channel, 0), payload]
        self._pending += [_FRAME.pack(_MESSAGE, len(data), channel, log_time_ns), data]
        self._pending_bytes += len(data)
        if self._pending_bytes > 1 << 16:  # one pipe write per ~64 KiB
            self._flush()

    def metadata(self, name: str, data: dict[str, str]) -> None:
        payload = f"{name}\0{json.dumps(data)}".encode()
        self._pending += [_FRAME.pack(_METADATA, len(payload), 0, 0), payload]
        self._flush()

    def _flush(self) -> None:
        if self._broken:
            raise DrivestackError(
                f"{self.path}: the recording's writer process died: {self._child_error()}"
            )
        if not self._pending:
            return
        self._queue.put(b"".join(self._pending))
        self._pending.clear()
        self._pending_bytes = 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._pending.append(_FRAME.pack(_CLOSE, 0, 0, 0))
            self._flush()
        except DrivestackError:
            pass
        finally:
            self._queue.put(None)
            self._feeder.join()
            with contextlib.suppress(OSError):
                self._pipe.close()
            try:
                rc = self._proc.wait(timeout=120)
            except KeyboardInterrupt:  # a second Ctrl-C: let the writer finish on its own
                rc = self._proc.wait(timeout=120)
        if rc != 0:
            raise DrivestackError(
                f"{self.path}: the recording's writer failed: {self._child_error()}"
            )

    def _child_error(self) -> str:
        return f"exit status {self._proc.poll()} (its message is above)"


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def main(argv: list[str]) -> int:
    """The writer process: frames from stdin into an MCAP file until close or end of input."""
    from sim.recording.derive import DerivingSink
    from sim.recording.writer import McapSink

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when recording stops
    with contextlib.suppress(OSError, AttributeError):  # POSIX only
        os.nice(_NICENESS)
    path, settings = Path(argv[0]), RecorderSettings(**json.loads(argv[1]))
    sink = DerivingSink(McapSink(path, settings.chunk_size_bytes), settings)
    topics: list[tuple[str, str]] = []
    stream = sys.stdin.buffer
    try:
        while True:
            head = _read_exact(stream, _FRAME.size)
            if head is None:
                break  # the parent is gone: finish what we have
            op, n, channel, log_time = _FRAME.unpack(head)
            payload = _read_exact(stream, n) if n else b""
            if payload is None:
                break
            if op == _MESSAGE:
                topic, schema = topics[channel]
                sink.write(topic, schema, log_time, payload)
            elif op == _CHANNEL:
                topic, schema = payload.decode().split("\0")
                topics.append((topic, schema))
            elif op == _METADATA:
                name, text = payload.decode().split("\0", 1)
                sink.metadata(name, json.loads(text))
            elif op == _CLOSE:
                break
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    # the file is finished and closed: skip the interpreter's teardown (tens of milliseconds
    # the recording loop would wait for in close())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
