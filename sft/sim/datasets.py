"""Synthetic data sets used by sft's figures and benchmarks.

Two Gaussian classes (``two_class_mixture``): labels c = ±1 with equal probability, inputs
x = g + s c e / |e| with g ~ N(0, I_d) and one random unit direction e (separation s along e), then each
row rescaled to |x|² = d (so the first-layer kernel of :mod:`sft.conventions` sees inputs of unit mean
square). float64; same seed -> same data.
"""
from __future__ import annotations

import numpy as np

from ..conventions import check_int

__all__ = ["two_class_mixture"]


def two_class_mixture(seed=0, P=100, M=100, d=50, separation=2.0):
    """x_train (P, d), y_train (P,) in {-1, +1}, x_test (M, d): two Gaussian classes (module docstring).

    >>> xtr, y, xte = two_class_mixture(0, P=4, M=2, d=3)
    >>> xtr.shape, xte.shape, sorted(set(y.tolist())) <= [-1.0, 1.0], bool(np.allclose((xtr ** 2).sum(1), 3))
    ((4, 3), (2, 3), True, True)
    """
    P, M, d = check_int("P", P, 1), check_int("M", M, 0), check_int("d", d, 1)
    separation = float(separation)
    if not np.isfinite(separation):
        raise ValueError(f"separation = {separation}: it must be finite")
    rng = np.random.default_rng(check_int("seed", seed, 0))
    c = rng.integers(0, 2, P + M) * 2 - 1
    e = rng.standard_normal(d)
    x = rng.standard_normal((P + M, d)) + separation * c[:, None] * e / np.linalg.norm(e)
    x *= np.sqrt(d) / np.linalg.norm(x, axis=1, keepdims=True)
    return x[:P], c[:P].astype(np.float64), x[P:]
