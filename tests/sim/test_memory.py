"""The allocator setting the command line and the CPU MPC make (sim/memory.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
if sys.argv[1] == "retain":
    from sim.memory import retain_freed_memory
    assert retain_freed_memory() is True
for _ in range(3):
    np.ones(5 << 20).sum()  # a 40 MiB temporary: over glibc's largest dynamic mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(5 << 20).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_blocks_are_reused_instead_of_mapped_afresh() -> None:
    # by default each 40 MiB block is mapped afresh and unmapped when freed: thousands of faults
    # in all; kept in the heap, the same pages come back
    assert _faults("default") > 2000
    assert _faults("retain") < 500
