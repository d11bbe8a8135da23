"""Connecting to a CARLA server, and the errors a server can cause.

Every failure that involves the server becomes a :class:`CarlaError` (a ``DrivestackError``), so
the command line prints one line and exits 2. The lines say what happened and what to do:

- :class:`CarlaConnectionError`: nothing answered at host:port within the timeout (CARLA's client
  reports a refused connection and a silent server the same way: by timing out);
- :class:`CarlaVersionError`: the server is not 0.9.16 (the client package's version);
- :class:`CarlaMapError`: the server has no such town;
- :class:`CarlaTimeoutError`: a call (usually ``tick``) timed out mid-episode;
- :class:`CarlaServerRestarted`: the server started a new episode under us (a restart or another
  client loading a map).

:func:`classify` turns the ``RuntimeError`` that CARLA raises for all of these into the right
class, with the context (what was being done, at which tick) in the message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import carla

from sim.errors import DrivestackError

log = logging.getLogger(__name__)

REQUIRED_VERSION = "0.9.16"
START_HINT = (
    "start CARLA {version} there (./CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}, or "
    "docker run --privileged --gpus all --net=host carlasim/carla:{version} /bin/bash "
    "./CarlaUE4.sh -RenderOffScreen) or pass --host/--port; see docs/carla.md"
)

# A client factory: (host, port) -> a carla.Client (or a test double with the same calls).
ClientFactory = Callable[[str, int], Any]


class CarlaError(DrivestackError):
    """A CARLA server failed us: the message is one line saying what happened and what to do."""


class CarlaConnectionError(CarlaError):
    """No server answered at host:port."""


class CarlaVersionError(CarlaError):
    """The server's version is not the client's."""


class CarlaMapError(CarlaError):
    """The server cannot load the scenario's map."""


class CarlaTimeoutError(CarlaError):
    """A call to the server timed out during an episode."""


class CarlaServerRestarted(CarlaError):
    """The server's episode changed under us (restarted, or another client loaded a map)."""


@dataclass(frozen=True)
class CarlaConnection:
    """Where the server is and how long to wait for it.

    :param host: server host name or address
    :param port: the server's RPC port (CARLA's ``-carla-rpc-port``, default 2000)
    :param tm_port: the Traffic Manager's port (default 8000)
    :param timeout_s: the longest wait for any one call, ``tick`` included (s)
    :param load_timeout_s: the longest wait for loading a town or generating an OpenDRIVE world
        (s): these rebuild the level and take tens of seconds
    """

    host: str = "localhost"
    port: int = 2000
    tm_port: int = 8000
    timeout_s: float = 10.0
    load_timeout_s: float = 120.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _numeric_version(text: str) -> str:
    """``"0.9.16-12-gabc"`` → ``"0.9.16"``: the release a build is based on."""
    m = re.match(r"\s*(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else text.strip()


def connect(conn: CarlaConnection, factory: ClientFactory | None = None) -> Any:
    """A client connected to a server of the required version, with ``conn``'s timeout set.

    :raises CarlaConnectionError: nothing answered within ``conn.timeout_s``
    :raises CarlaVersionError: the server is not :data:`REQUIRED_VERSION`
    """
    make = factory if factory is not None else carla.Client
    client = make(conn.host, conn.port)
    client.set_timeout(conn.timeout_s)
    try:
        server = str(client.get_server_version())
    except RuntimeError as exc:
        hint = START_HINT.format(version=REQUIRED_VERSION, port=conn.port)
        raise CarlaConnectionError(
            f"no CARLA server answered at {conn.address} within {conn.timeout_s:g} s; {hint}"
        ) from exc
    client_version = _numeric_version(str(client.get_client_version()))
    if _numeric_version(server) != REQUIRED_VERSION or client_version != REQUIRED_VERSION:
        raise CarlaVersionError(
            f"the CARLA server at {conn.address} is version {server} and the client package "
            f"is {client_version}; drivestack needs both at {REQUIRED_VERSION}: start a "
            f"{REQUIRED_VERSION} server (docs/carla.md)"
        )
    log.info("connected to CARLA %s at %s", server, conn.address)
    return client


def classify(
    exc: RuntimeError,
    conn: CarlaConnection,
    doing: str,
    started: bool = True,
    waited_s: float | None = None,
) -> CarlaError:
    """The :class:`CarlaError` a server ``RuntimeError`` means, one line with its context.

    :param doing: what was being done ("ticking frame 12")
    :param started: the episode had started (so its result so far is kept)
    :param waited_s: the timeout that applied, when not the connection's (loading a map)
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    after = (
        "the episode stopped, its result so far is kept" if started else "the episode did not start"
    )
    if "episode" in text:  # "trying to access an expired episode; a new episode was started..."
        return CarlaServerRestarted(
            f"the CARLA server at {conn.address} started a new episode while {doing} (it "
            f"restarted, or another client loaded a map); {after}"
        )
    if "time-out" in text or "timeout" in text or "timed out" in text:
        wait = conn.timeout_s if waited_s is None else waited_s
        return CarlaTimeoutError(
            f"the CARLA server at {conn.address} did not answer within {wait:g} s while "
            f"{doing}; {after} (is the server alive? raise --carla-timeout for a slow one)"
        )
    return CarlaError(f"the CARLA server at {conn.address} failed while {doing}: {text}; {after}")
