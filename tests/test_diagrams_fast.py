"""The fast diagram generator of sft.symbolic.feynman (largest-labelling enumeration, canonical form by
colour refinement and individualisation, two-point diagrams by cutting vacuum diagrams) against the
earlier generator (smallest-labelling enumeration, ``_canonical``), brute-force Wick enumeration, and
the exact phi^4 series of log(Z/Z_0) and <x^2>_c to lambda^8 from Gaussian moments."""
import itertools
import math
from collections import Counter
from fractions import Fraction

import pytest

from sft.symbolic.feynman import (_canonical, _diagram_from_key, _matrices, contraction_multiplicity,
                          diagram_key, diagrams, wick_contraction_counts)
from sft.symbolic import double_factorial


def _reference_diagrams(n_external, order, degrees, kind):
    """The earlier generator: every smallest-labelling matrix, reduced by ``_canonical``."""
    keep = {"all": lambda d: True, "no_vacuum": lambda d: not d.has_vacuum_component,
            "connected": lambda d: d.connected, "1pi": lambda d: d.one_particle_irreducible}[kind]
    out = []
    for combo in itertools.combinations_with_replacement(sorted(set(degrees)), order):
        deg = (1,) * n_external + combo
        if sum(deg) % 2:
            continue
        found: dict = {}
        for mat in _matrices(deg, n_external):
            key, aut = _canonical(deg, n_external, mat)
            found.setdefault(key, aut)
        out += [d for d in (_diagram_from_key(n_external, k, a) for k, a in found.items()) if keep(d)]
    return out


def _classes(ds):
    """Multiset of (isomorphism class, symmetry factor)."""
    return Counter((diagram_key(d), d.symmetry_factor) for d in ds)


CASES = ([((4,), n, k) for n in (0, 1, 2) for k in range(6)] + [((4,), 4, k) for k in range(4)]
         + [((3, 4), n, k) for n in (0, 1, 2) for k in range(5)] + [((3, 4), 3, k) for k in range(4)])


@pytest.mark.parametrize("degrees, n_external, order", CASES)
def test_same_diagrams_and_symmetry_factors_as_the_earlier_generator(degrees, n_external, order):
    for kind in ("all", "no_vacuum", "connected", "1pi"):
        new = diagrams(n_external, order, degrees, kind)
        assert _classes(new) == _classes(_reference_diagrams(n_external, order, degrees, kind)), kind
        assert len(set(map(diagram_key, new))) == len(new)  # no class twice


@pytest.mark.parametrize("vertex_degrees", [(4, 4), (3, 3), (3, 3, 4), (4, 4, 4)])
def test_cut_two_point_diagrams_against_brute_force_wick_enumeration(vertex_degrees):
    """Connected two-point diagrams (the cut-vacuum route; with cubic vertices some cuts are bridges)
    against the contractions of all (N - 1)!! pairings of the half-edges."""
    counts = wick_contraction_counts(2, vertex_degrees)
    found = [d for d in diagrams(2, len(vertex_degrees), set(vertex_degrees), "connected")
             if d.vertex_degrees == vertex_degrees]
    connected_keys = {k for k in counts if _diagram_from_key(2, k, 1).connected}
    assert {diagram_key(d) for d in found} == connected_keys
    for d in found:
        assert counts[diagram_key(d)] == contraction_multiplicity(d)


def _phi4_moment_series(m, order):
    """Z <x^m> / Z_0 = sum_b (-lambda)^b (m + 4b - 1)!! / (b! 4!^b) (Gaussian moments)."""
    return [Fraction((-1) ** b * double_factorial(m + 4 * b - 1), math.factorial(b) * 24 ** b)
            for b in range(order + 1)]


def _divide(num, den):
    out = []
    for k in range(len(num)):
        out.append((num[k] - sum(out[j] * den[k - j] for j in range(k))) / den[0])
    return out


def _log(series):
    """log of a power series with constant term 1: f' = (log f)' f."""
    order = len(series) - 1
    deriv = _divide([(k + 1) * series[k + 1] for k in range(order)], series[:order])
    return [Fraction(0)] + [deriv[k - 1] / k for k in range(1, order + 1)]


def test_phi4_two_point_and_vacuum_series_to_lambda8():
    """(-1)^k sum 1/S over connected diagrams of order k equals the lambda^k coefficient of
    <x^2>_c = Z<x^2>/Z (<x> = 0 in phi^4) and of log(Z/Z_0), k <= 8."""
    order = 8
    z = _phi4_moment_series(0, order)
    x2 = _divide(_phi4_moment_series(2, order), z)
    logz = _log(z)
    counts = []
    for k in range(order + 1):
        two = diagrams(2, k, (4,), "connected")
        counts.append(len(two))
        assert (-1) ** k * sum(Fraction(1, d.symmetry_factor) for d in two) == x2[k], k
        vac = diagrams(0, k, (4,), "connected")
        assert (-1) ** k * sum(Fraction(1, d.symmetry_factor) for d in vac) == logz[k], k
    assert counts[:6] == [1, 1, 3, 10, 39, 174]  # the earlier generator's counts (test above)


def test_exported_diagrams_are_consistent_graphs():
    """Degrees of the exported edge lists, sorted vertex degrees, connectivity and loop number."""
    for d in diagrams(2, 6, (4,), "connected") + diagrams(1, 3, (3, 4), "connected"):
        degree = [0] * (d.n_external + d.n_vertices)
        for u, w in d.edges:
            assert u <= w
            degree[u] += 1
            degree[w] += 1
        assert degree == [1] * d.n_external + list(d.vertex_degrees)
        assert list(d.vertex_degrees) == sorted(d.vertex_degrees)
        assert list(d.edges) == sorted(d.edges)
        assert d.connected
