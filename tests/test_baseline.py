"""The shipped scenarios with the baseline stack: the world and the score are sane.

Ground-truth perception, the rule-based planner and pure pursuit + PID must complete every
shipped scenario without a collision and reach a mean driving score of at least 90 (issue 3).
This runs every scenario to its end, about a minute on one core.
"""

import numpy as np

from launch.stack import StackConfig, build_stack, make_world, run_episode
from sim.scenario import builtin_scenarios, load_scenario


def test_baseline_completes_every_scenario_with_a_mean_score_of_90() -> None:
    scores = {}
    for name in builtin_scenarios():
        run = run_episode(
            make_world("embedded"), build_stack(StackConfig()), load_scenario(name), seed=0
        )
        r = run.result.to_dict()
        scores[name] = r["driving_score"]
        counts = r["infraction_counts"]
        assert r["status"] == "Completed", (name, r["status"])
        collisions = {k: v for k, v in counts.items() if k.startswith("collisions") and v}
        assert not collisions, (name, collisions)
        assert counts["red_light"] == 0 and counts["stop_infraction"] == 0, (name, counts)
    assert np.mean(list(scores.values())) >= 90.0, scores
