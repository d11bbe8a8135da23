"""The CARLA server's flags (``--host --port --tm-port --carla-timeout``) of ``run`` and
``evaluate``; they matter with ``--backend carla`` only (docs/carla.md)."""

from __future__ import annotations

import argparse

from sim.carla_backend.client import CarlaConnection

_DEFAULT = CarlaConnection()


def add_carla_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CARLA server (with --backend carla)")
    group.add_argument("--host", default=_DEFAULT.host, help="server host (default %(default)s)")
    group.add_argument(
        "--port", type=_port, default=_DEFAULT.port, help="RPC port (default %(default)s)"
    )
    group.add_argument(
        "--tm-port",
        type=_port,
        default=_DEFAULT.tm_port,
        help="Traffic Manager port (default %(default)s)",
    )
    group.add_argument(
        "--carla-timeout",
        type=_seconds,
        default=_DEFAULT.timeout_s,
        metavar="S",
        help="longest wait for the server on any call, tick included (default %(default)s s)",
    )


def connection_from(args: argparse.Namespace) -> CarlaConnection:
    return CarlaConnection(args.host, args.port, args.tm_port, args.carla_timeout)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0.0 < value <= 3600.0:
        raise argparse.ArgumentTypeError(f"a timeout is in (0, 3600] s, got {value:g}")
    return value
