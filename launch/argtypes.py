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
