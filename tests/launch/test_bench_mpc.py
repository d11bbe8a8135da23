"""``bench mpc``: a tiny run of the real benchmark, and what it says when a reference is missing."""

import importlib.util

import pytest
import torch

from launch.bench_mpc import bench_mpc, parse_batches
from sim.errors import DrivestackError


def test_bench_mpc_prints_every_solver_and_the_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # the fleet rows stay on one thread
    pytest.importorskip("casadi")
    pytest.importorskip("osqp")
    text = bench_mpc([1, 4], solves=3, seed=0)
    names = ("ours, RTI (torch, cpu)", "ours, SQP (torch, cpu)", "IPOPT (cpu)", "OSQP (cpu)")
    for name in (*names, "OSQP, whole iteration", "like with like"):
        assert name in text
    assert "bar (wall time): one vehicle" in text
    assert "bar (CPU time): fleet of 1024" not in text  # not asked for: no ratio to claim


def test_bench_mpc_says_when_a_reference_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "casadi" else real(name, *a)
    )
    text = bench_mpc([1], solves=2, seed=0)
    assert "IPOPT reference skipped: the 'casadi' package is not installed" in text
    assert "IPOPT (cpu)" not in text


def test_bad_batch_list_is_one_clear_error() -> None:
    with pytest.raises(DrivestackError, match="--batches"):
        parse_batches("1,x")
    with pytest.raises(DrivestackError, match="--batches"):
        bench_mpc("0", solves=1, seed=0)
    with pytest.raises(DrivestackError, match="--fleet-on 'gpu': allowed all, cpu, cuda"):
        bench_mpc("1", solves=1, seed=0, fleet_on="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(DrivestackError, match="--fleet-on cuda: this machine has no CUDA"):
            bench_mpc("1", solves=1, seed=0, fleet_on="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bench_mpc_times_fleets_on_cuda_alone() -> None:
    text = bench_mpc([1, 4], solves=2, seed=0, fleet_on="cuda")
    assert "ours, RTI (torch, cuda)" in text and "ours, RTI (torch, cpu)" in text  # one vehicle
    per_second = text.split("fleet: vehicle-solves per second")[1]
    fleet = per_second.split("fleet: vehicle-solves per CPU")[0]
    assert "(torch, cuda)" in fleet and "(torch, cpu)" not in fleet
