"""The short-axis reductions of ``core._rows`` equal numpy's own along ``axis=1``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ampshare.core._rows import row_any, row_argmin, row_max, row_min, row_sum

# small integers as floats: many ties, so argmin's "first of equal minima" is exercised
_values = st.integers(-3, 3).map(float) | st.sampled_from([np.inf, -np.inf])


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 40), st.integers(1, 5)), elements=_values))
def test_row_reductions_equal_numpy_along_axis_1(a: np.ndarray) -> None:
    assert np.array_equal(row_min(a), a.min(axis=1))
    assert np.array_equal(row_max(a), a.max(axis=1))
    assert np.array_equal(row_argmin(a), a.argmin(axis=1))
    finite = np.where(np.isfinite(a), a, 0.0)
    assert np.array_equal(row_sum(finite), finite.sum(axis=1))
    assert np.array_equal(row_any(a > 0), (a > 0).any(axis=1))


def test_rows_of_no_columns_reduce_to_the_identity() -> None:
    a = np.zeros((4, 0))
    assert np.array_equal(row_min(a), np.full(4, np.inf))
    assert np.array_equal(row_sum(a), np.zeros(4))
    assert not row_any(a.astype(bool)).any()
    assert np.array_equal(row_argmin(a), np.zeros(4, dtype=np.int64))
