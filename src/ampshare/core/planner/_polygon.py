"""Polygon linearisation of phasor magnitude limits ``|sum_k a_k y_k| <= L`` with ``y_k >= 0``.

Because every ``y_k`` is non-negative, the sum lies in the cone spanned by the coefficient
directions. When that cone is narrower than 180 degrees (the usual case: a line carries a few
charger classes 60-120 degrees apart) we only need facets inside the cone, which gives a much
tighter polygon for the same number of rows than a full k-gon around the circle.

A facet is a row ``Re(z * exp(-j*theta)) <= scale * L``:

* inscribed (conservative): vertices on the circle, facet distance ``L * cos(half step)``;
  any ``z`` meeting every row has ``|z| <= L``; loss at most ``1 - cos(max_facet/2)``;
* circumscribed (relaxation): facets tangent to the circle (scale 1); every ``|z| <= L``
  meets every row, so an LP with these rows bounds the true optimum from above.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["cone_arc", "facets"]


def cone_arc(coeffs: Sequence[complex]) -> tuple[float, float] | None:
    """(start angle, span) [rad] of the smallest arc holding every non-zero ``coeffs``
    direction, or None when no arc narrower than pi holds them (use the full circle)."""
    angles = sorted(math.atan2(c.imag, c.real) % (2 * math.pi) for c in coeffs if abs(c) > 1e-12)
    if not angles:
        return None
    gaps = [b - a for a, b in itertools.pairwise(angles)]
    gaps.append(angles[0] + 2 * math.pi - angles[-1])
    k = int(np.argmax(gaps))
    if gaps[k] <= math.pi + 1e-9:
        return None
    start = angles[(k + 1) % len(angles)]
    return start, 2 * math.pi - gaps[k]


def facets(
    coeffs: Sequence[complex], *, conservative: bool, max_facet_deg: float = 10.0
) -> list[tuple[float, float]]:
    """Facet rows (normal angle [rad], limit scale) for a line with these coefficients."""
    step_max = math.radians(max_facet_deg)
    arc = cone_arc(coeffs)
    if arc is None:
        m = max(3, math.ceil(2 * math.pi / step_max))
        step = 2 * math.pi / m
        scale = math.cos(step / 2) if conservative else 1.0
        return [(i * step, scale) for i in range(m)]
    start, span = arc
    if span < 1e-9:
        return [(start, 1.0)]  # all collinear: the magnitude is exactly linear
    m = max(1, math.ceil(span / step_max))
    step = span / m
    if conservative:
        return [(start + (i + 0.5) * step, math.cos(step / 2)) for i in range(m)]
    return [(start + i * step, 1.0) for i in range(m + 1)]
