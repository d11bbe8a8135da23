"""scripts/paired_scores.py: the paired difference of two evaluate runs, by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "paired_scores.py"


def _run(root: Path, name: str, scores: dict[tuple[str, int], float], hit: set[str]) -> Path:
    out = root / name
    episodes = []
    for (scenario, seed), ds in scores.items():
        episodes.append({"scenario": scenario, "seed": seed, "driving_score": ds})
        kinds = ["red_light", "min_speed_infractions"] if scenario in hit else []
        folder = out / f"{scenario}__seed{seed}"
        folder.mkdir(parents=True)
        result = {"infractions": [{"type": k} for k in kinds]}
        (folder / "result.json").write_text(json.dumps(result))
    (out / "summary.json").write_text(json.dumps({"episodes": episodes}))
    return out


def test_the_paired_difference_and_the_routes_that_moved(tmp_path: Path) -> None:
    before = _run(tmp_path, "a", {("red_lights", 0): 60.0, ("town_loop", 1): 90.0}, {"red_lights"})
    after = _run(tmp_path, "b", {("red_lights", 0): 61.0, ("town_loop", 1): 93.0}, set())
    text = subprocess.run(
        [sys.executable, str(SCRIPT), str(before), str(after)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "before 75.00  after 77.00  (2 routes in common)"
    # differences 1 and 3: mean 2, sd √2, half-interval 1.96 · √2 / √2
    assert lines[1] == "paired difference (after - before): +2.00 ± 1.96"
    assert "  red_lights seed 0: 60.0 -> 61.0  [red_light] -> []" in lines
    assert "infractions before: red_lights seed 0 (60.0: red_light)" in lines
    assert lines[-1] == "infractions after: none"  # a minimum-speed infraction is not listed


def test_a_folder_without_a_summary_is_named(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "nope"), str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"error: {tmp_path / 'nope' / 'summary.json'} not found: give an `evaluate --out` folder"
    )
