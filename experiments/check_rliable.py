"""Cross-check run/aggregate.py against rliable itself, on the same scores.

rliable is not a dependency (see run/aggregate.py for why); this runs in a separate venv:

    python3 -m venv /tmp/rlv && /tmp/rlv/bin/pip install rliable "pandas<3"
    /tmp/rlv/bin/python experiments/check_rliable.py

(rliable 1.2.0 with pandas 3 fails on import, inside arch: hence the pin.) Prints rliable's
IQM and mean with their 95% stratified-bootstrap intervals beside ours; the point estimates
must be equal and the intervals equal up to bootstrap noise. Output kept in
experiments/results/rliable_check.txt.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from rliable import library as rly
from rliable import metrics

spec = importlib.util.spec_from_file_location(
    "aggregate", Path(__file__).parents[1] / "ppo_torchrl/run/aggregate.py"
)
agg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agg)

rng = np.random.default_rng(0)
CASES = {
    "cartpole-like, 5 seeds": np.array([500, 500, 487.2, 500, 231.0]),
    "normal, 10 seeds": rng.normal(1500, 400, 10),
    "skewed, 20 seeds": rng.exponential(1000, 20),
}
for name, x in CASES.items():
    both = lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)])  # noqa: E731
    point, ci = rly.get_interval_estimates({"a": x[:, None]}, both, reps=20_000)
    iqm_ci, mean_ci = agg.bootstrap_ci(x, agg.iqm, reps=20_000), agg.bootstrap_ci(x, np.mean, reps=20_000)
    print(
        f"{name}: IQM rliable {point['a'][0]:.1f} [{ci['a'][0, 0]:.1f}, {ci['a'][1, 0]:.1f}], "
        f"ours {agg.iqm(x):.1f} [{iqm_ci[0]:.1f}, {iqm_ci[1]:.1f}]; "
        f"mean rliable [{ci['a'][0, 1]:.1f}, {ci['a'][1, 1]:.1f}], ours [{mean_ci[0]:.1f}, {mean_ci[1]:.1f}]"
    )
