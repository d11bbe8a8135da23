"""Argument types shared by the subcommands: each rejects bad input with a message argparse prints
as one line (exit 2)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer above zero (steps, frames, episodes, environments)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of zero or more (px, m, s)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def add_weights_args(parser: argparse.ArgumentParser, default: str = "shipped") -> None:
    """Learned perception's weights, other than the ``default`` ones."""
    parser.add_argument(
        "--detector",
        default="",
        metavar="FILE",
        help=f"with --perception cnn|transformer: that kind's .safetensors (default: {default}); "
        "the camera takes its input's size",
    )
    parser.add_argument(
        "--classifier", default="", metavar="FILE", help="the sign/light classifier's, likewise"
    )
