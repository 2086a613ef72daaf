"""p-values adjusted for multiple comparisons.

A report compares every configuration with one reference, so it runs many tests at
once; by chance alone about one in twenty of them is "significant" at p < 0.05. The
Holm-Bonferroni step-down adjustment controls the family-wise error rate (the chance of
any false "significant" among the tests) without assuming the tests are independent,
and is never less powerful than plain Bonferroni. It is a few lines of numpy, so the
package does not need statsmodels at run time (the tests check it against statsmodels).
"""

from __future__ import annotations

from typing import Literal
from collections.abc import Sequence

import numpy as np

Adjustment = Literal["holm", "none"]
ADJUSTMENTS: tuple[Adjustment, ...] = ("holm", "none")


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values, in the order given.

    NaN entries are rows with no test (the reference itself, too few seeds, identical
    samples): they stay NaN and do not count among the m tests. With the m p-values
    sorted ascending, p_(i) becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def adjust(pvalues: Sequence[float] | np.ndarray, method: Adjustment) -> np.ndarray:
    """`report --adjust`: holm, or none (the raw p-values)."""
    if method == "holm":
        return holm(pvalues)
    if method == "none":
        return np.asarray(pvalues, dtype=float).copy()
    raise ValueError(f"unknown adjustment {method!r}; allowed: {', '.join(ADJUSTMENTS)}")
