"""The sweep's statistics (run/aggregate.py) against values worked out by hand, and the
bootstrap interval against what a 95% interval must do: cover the truth about 95% of the time."""

from __future__ import annotations

import numpy as np
import pytest

from ppo_torchrl.run.stats import bootstrap_ci, curve_band, iqm, summarize
from ppo_torchrl.sweep.aggregate import write_tables


def test_iqm_drops_the_lowest_and_highest_quarter():
    assert iqm([7, 1, 100, 3, 5, 2, 6, 4]) == pytest.approx((3 + 4 + 5 + 6) / 4)  # 1, 2 and 7, 100 cut
    assert iqm([1, 2, 3]) == pytest.approx(2.0)  # int(0.75) = 0: nothing to cut, the mean
    assert iqm([0, 10, 10, 10, 1000]) == pytest.approx(10.0)  # one broken and one lucky seed ignored


def test_iqm_matches_scipys_trimmed_mean():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (4, 5, 9, 10, 31):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(stats.trim_mean(x, 0.25))


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    trials = 300
    for k in range(trials):
        sample = rng.normal(loc=3.0, scale=2.0, size=30)
        low, high = bootstrap_ci(sample, np.mean, reps=1000, seed=k)
        assert low <= sample.mean() <= high
        covered += low <= 3.0 <= high
    assert 0.88 <= covered / trials <= 0.99, covered / trials


def test_bootstrap_interval_edge_cases():
    assert bootstrap_ci([5.0], np.mean) == (5.0, 5.0)
    assert bootstrap_ci([2.0, 2.0, 2.0], iqm) == (2.0, 2.0)
    assert bootstrap_ci([1.0, 9.0, 4.0], np.mean) == bootstrap_ci([1.0, 9.0, 4.0], np.mean)  # seeded
    low, high = bootstrap_ci([0.0, 100.0], np.mean)
    assert 0.0 <= low < high <= 100.0


def test_summarize_reports_mean_and_iqm_with_intervals():
    s = summarize([10.0, 20.0, 30.0, 40.0])
    assert s["runs"] == 4 and s["mean"] == pytest.approx(25.0) and s["iqm"] == pytest.approx(25.0)
    assert s["mean_ci95"][0] <= 25.0 <= s["mean_ci95"][1] and s["iqm_ci95"][0] <= 25.0 <= s["iqm_ci95"][1]
    assert summarize([]) == {"runs": 0}


def test_curves_hold_their_last_value_and_average_over_seeds():
    band = curve_band([[(0, 1.0), (10, 3.0)], [(5, 2.0)]])
    assert band["frames"] == [0, 5, 10]
    # at 0 only the first curve has begun; at 5 it holds 1.0; at 10 the second holds 2.0
    assert band["mean"] == pytest.approx([1.0, 1.5, 2.5])
    assert all(lo <= m <= hi for lo, m, hi in zip(band["low"], band["mean"], band["high"], strict=True))


def test_tables_have_one_row_per_trial(tmp_path):
    rows = [
        {"trial": "t0", "seed": 0, "status": "FINISHED", "final_eval_mean": 500.0},
        {"trial": "t1", "seed": 1, "status": "FAILED", "error": "RuntimeError: a | b"},
    ]
    csv_path, md_path = write_tables(rows, tmp_path)
    assert csv_path.read_text().splitlines()[1].startswith("t0,0,,FINISHED,500,")
    md = md_path.read_text().splitlines()
    assert len(md) == 4 and "RuntimeError: a \\| b" in md[3]
