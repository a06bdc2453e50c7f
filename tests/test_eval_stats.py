"""Bootstrap intervals and paired tests of pwavenet.eval.stats on samples with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pwavenet.eval.stats import bootstrap_ci, compare_systems, holm, paired_bootstrap


@pytest.mark.parametrize("value", [0.0, 0.1, -3.7, 1e6])
def test_the_interval_of_a_constant_is_a_point(value):
    ci = bootstrap_ci([value] * 17)
    assert ci.mean == ci.low == ci.high == value and ci.is_point and ci.n == 17


def test_nans_are_left_out_and_counted_and_one_value_is_a_flagged_point():
    ci = bootstrap_ci([1.0, math.nan, 3.0, math.nan, 2.0])
    assert ci.n == 3 and ci.excluded == 2 and ci.mean == pytest.approx(2.0)
    assert 1.0 <= ci.low < ci.mean < ci.high <= 3.0
    one = bootstrap_ci([math.nan, 4.5])
    assert one.mean == one.low == one.high == 4.5 and one.n == 1 and one.is_point
    none = bootstrap_ci([math.nan, math.nan])
    assert none.n == 0 and none.excluded == 2 and math.isnan(none.mean)


def test_the_interval_is_deterministic_for_a_seed_and_covers_the_mean_of_normal_data():
    x = np.random.default_rng(0).normal(5.0, 2.0, 200)
    a, b = bootstrap_ci(x, seed=3), bootstrap_ci(x, seed=3)
    assert a == b and bootstrap_ci(x, seed=4) != a
    assert a.low < x.mean() < a.high
    # The percentile interval approaches mean +- 1.96 sd / sqrt(n) for a large sample.
    half = 1.96 * x.std(ddof=0) / math.sqrt(len(x))
    assert (a.high - a.low) / 2 == pytest.approx(half, rel=0.15)
    # A higher confidence gives a wider interval from the same resamples.
    wide = bootstrap_ci(x, confidence=0.99, seed=3)
    assert wide.low < a.low and wide.high > a.high


def test_a_system_against_itself_is_never_significant():
    for seed in range(50):
        rng = np.random.default_rng(seed)
        x = rng.normal(0, 1 + seed, 1 + seed % 20)
        x[rng.random(len(x)) < 0.2] = math.nan  # NaNs in both, at the same utterances
        test = paired_bootstrap(x, x, seed=seed)
        assert test["p"] == 1.0 and not test["significant"]
        assert test["n"] == 0 or test["mean_diff"] == test["low"] == test["high"] == 0.0
        for pair in compare_systems({"a": x, "b": x.copy()}, direction="lower", seed=seed):
            assert not pair["significant"] and "better" not in pair


def test_a_clear_shift_is_significant_in_the_right_direction():
    rng = np.random.default_rng(1)
    base = rng.normal(3.0, 1.0, 40)
    worse = base + 0.5 + rng.normal(0, 0.1, 40)
    test = paired_bootstrap(base, worse)
    assert test["significant"] and test["p"] < 0.01
    assert test["low"] < test["mean_diff"] < test["high"] < 0
    (pair,) = compare_systems({"new": base, "old": worse}, direction="lower")
    assert pair["better"] == "new" and pair["significant"]
    (pair,) = compare_systems({"new": base, "old": worse}, direction="higher")
    assert pair["better"] == "old"
    # A constant shift on every utterance: no resample reaches 0.
    shifted = paired_bootstrap(base, base + 1.0, resamples=999)
    assert shifted["p"] == pytest.approx(2 / 1000) and shifted["significant"]
    assert paired_bootstrap([1.0], [2.0])["p"] == 1.0  # one utterance shows nothing


def test_pairing_detects_what_overlapping_intervals_hide():
    """Utterances differ far more than the systems do: each system's interval is wide and the two
    overlap, but the per-utterance differences are consistent and the paired test sees them."""
    rng = np.random.default_rng(2)
    difficulty = rng.normal(0, 5.0, 30)
    a = difficulty + rng.normal(0, 0.05, 30)
    b = difficulty + 0.3 + rng.normal(0, 0.05, 30)
    ca, cb = bootstrap_ci(a), bootstrap_ci(b)
    assert ca.low < cb.high and cb.low < ca.high  # the unpaired intervals overlap
    assert paired_bootstrap(a, b)["significant"]
    # Unpaired (b in another utterance order), the same numbers show no difference.
    assert not paired_bootstrap(a, rng.permutation(b))["significant"]


def test_loudness_pairs_compare_distances_from_zero():
    rng = np.random.default_rng(3)
    near = rng.normal(0.0, 0.3, 25)  # within a fraction of a dB of the reference
    quiet = rng.normal(-6.0, 0.3, 25)
    (pair,) = compare_systems({"quiet": quiet, "near": near}, direction="zero")
    assert pair["better"] == "near" and pair["mean_diff"] > 0  # |quiet| - |near|


def test_holm_adjusts_by_rank_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([]) == []
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 x 0.8 capped at 1, and monotone from there
    # Three identical systems and one clearly better: Holm keeps its pairs significant and the
    # identical ones not.
    rng = np.random.default_rng(4)
    x = rng.normal(2.0, 1.0, 30)
    columns = {"a": x, "b": x.copy(), "c": x.copy(), "best": x - 1.0 + rng.normal(0, 0.05, 30)}
    pairs = compare_systems(columns, direction="lower")
    assert len(pairs) == 6
    for pair in pairs:
        involves_best = "best" in (pair["a"], pair["b"])
        assert pair["significant"] == involves_best and pair["p_holm"] >= pair["p"]
        assert pair.get("better") == ("best" if involves_best else None)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="direction"):
        compare_systems({"a": [1.0], "b": [2.0]}, direction="up")
