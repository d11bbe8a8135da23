"""Episode recording to MCAP and reading it back (docs/recording.md)."""

from sim.recording.reader import Recording, RecordingError, read_recording
from sim.recording.writer import (
    FORMAT_VERSION,
    McapSink,
    Recorder,
    RecorderSettings,
    Sink,
    camera_topics,
    map_lanes,
)

__all__ = [
    "FORMAT_VERSION",
    "McapSink",
    "Recorder",
    "RecorderSettings",
    "Recording",
    "RecordingError",
    "Sink",
    "camera_topics",
    "map_lanes",
    "read_recording",
]
