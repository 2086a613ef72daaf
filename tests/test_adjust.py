"""Holm-adjusted p-values (dlbench.results.adjust) against statsmodels and a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from dlbench.results.adjust import adjust, holm


@pytest.mark.parametrize("m", [1, 2, 5, 30])
@pytest.mark.parametrize("seed", [0, 1])
def test_holm_matches_statsmodels(m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.2, m) ** 2  # many small p-values, some ties after rounding below
    p[: m // 3] = np.round(p[: m // 3], 2)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)


def test_holm_by_hand() -> None:
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1


def test_rows_without_a_test_stay_nan_and_do_not_count() -> None:
    p = [math.nan, 0.01, math.nan, 0.04, 0.03, 0.005]  # the reference and a "too few seeds" row
    adjusted = holm(p)
    assert np.isnan(adjusted[[0, 2]]).all()
    np.testing.assert_allclose(adjusted[[1, 3, 4, 5]], multipletests([0.01, 0.04, 0.03, 0.005], method="holm")[1])
    assert np.isnan(holm([math.nan, math.nan])).all() and holm([]).shape == (0,)


def test_adjust_none_is_the_raw_p_values_and_unknown_methods_are_refused() -> None:
    np.testing.assert_array_equal(adjust([0.01, math.nan], "none"), [0.01, math.nan])
    np.testing.assert_allclose(adjust([0.01, 0.02], "holm"), [0.02, 0.02])
    with pytest.raises(ValueError, match="unknown adjustment 'bh'; allowed: holm, none"):
        adjust([0.1], "bh")  # type: ignore[arg-type]
