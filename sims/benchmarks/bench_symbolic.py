"""Speed of the symbolic engine: Edgeworth, phi^4 diagrams, Schwinger-Dyson, diagrams vs brute-force Wick.

Rows (with their targets):
1. symbolic Edgeworth density to order n^{-3} (``sft.symbolic.edgeworth_density(6)``, symbolic
   lambda_3..lambda_8), and its conversion to a numpy function; target <= 2 s. For comparison the numpy
   route without sympy (``sft.symbolic.edgeworth_density_numeric``, same density) on 10^5 points.
2. phi^4 <x^2> by diagrams (``sft.symbolic.one_component_series(2, k, kind="no_vacuum")``, all orders
   0..k) for k = 5, 6, ..; stops after the first k that takes more than ``--stop`` seconds (30) or at
   k = 8; each series is checked against the Schwinger-Dyson series. Target: lambda^8 in <= 10 s.
3. Schwinger-Dyson series of <x^2> to order 40 (``sft.symbolic.moment_series``); target <= 1 s.
4. Diagram generation vs the strongest exact brute force we have, at k = 2 .. ``--bf-max-order`` (5):
   ``labelled_multigraph_counts`` (below, independent of sft.symbolic.feynman) enumerates every labelled
   multigraph on the vertex set with the prescribed degrees (symmetric matrices of edge multiplicities,
   loops counting 2), weights it by the number of Wick pairings of the half-edges that realize it,
   prod_v k_v! / (prod_{u<w} m_uw! prod_v 2^{l_v} l_v!), and sums the weights per isomorphism class (its
   own canonical form: minimum over relabellings of internal vertices within cells of equal local
   invariants). Checked: the same classes as ``diagrams(2, k, "all")``, each with weight equal to
   ``contraction_multiplicity`` (= n_k! (k!)^{n_k} / S_G), summing to (4k+1)!!. The naive baseline, all
   (4k+1)!! pairings of the half-edges (``sft.symbolic.wick_contraction_counts``), is timed at k = 2, 3 for
   reference only (it grows like (4k+1)!!; earlier versions of this file extrapolated it to k = 5 and
   reported ~1e7x, a ratio against a baseline nobody would use).

Times are wall-clock (time.perf_counter), best of ``repeat`` runs for the fast rows, one run for the
slow ones. The symbolic and diagram rows run once each in a fresh Python process (cold caches; imports
not timed), the brute-force Wick rows in this process.
Usage (repository root): PYTHONPATH=. python sims/benchmarks/bench_symbolic.py [--stop 30] [--bf-max-order 5]
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import sympy as sp

import sft  # noqa: F401
from sft.symbolic.feynman import contraction_multiplicity, diagrams, wick_contraction_counts
from sft.symbolic import edgeworth_density_numeric, moment_series
from sft.symbolic import double_factorial

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _labelled_matrices(deg: tuple, n_ext: int):
    """Every symmetric matrix of edge multiplicities with row sums ``deg`` (a loop counts 2; none at the
    external legs 0 .. n_ext - 1), as ({(u, w): m, u <= w}, Wick weight prod_v k_v! / (prod_{u<w} m_uw!
    prod_v 2^{l_v} l_v!)): the number of pairings of the labelled half-edges giving this labelled graph."""
    n, rem, mat = len(deg), list(deg), {}
    fact = [math.factorial(i) for i in range(max(deg) + 1)]
    num = math.prod(fact[k] for k in deg)

    def fill(i, j, den):
        if i == n:
            yield dict(mat), num // den
        elif j == n:
            if rem[i] == 0:
                yield from fill(i + 1, i + 1, den)
        elif j == i:
            for loops in range(rem[i] // 2 + 1 if i >= n_ext else 1):
                rem[i] -= 2 * loops
                if loops:
                    mat[(i, i)] = loops
                yield from fill(i, j + 1, den * 2 ** loops * fact[loops])
                mat.pop((i, i), None)
                rem[i] += 2 * loops
        elif sum(rem[j:]) >= rem[i]:
            for m in range(min(rem[i], rem[j]) + 1):
                rem[i] -= m
                rem[j] -= m
                if m:
                    mat[(i, j)] = m
                yield from fill(i, j + 1, den * fact[m])
                mat.pop((i, j), None)
                rem[i] += m
                rem[j] += m

    yield from fill(0, 0, 1)


def _iso_key(deg: tuple, n_ext: int, mat: dict):
    """Canonical form of a labelled multigraph: (deg, smallest upper triangle over relabellings of the
    internal vertices that keep cells of equal (degree, loops, links to each leg, sorted links))."""
    n = len(deg)
    A = [[0] * n for _ in range(n)]
    for (u, w), m in mat.items():
        A[u][w] = A[w][u] = m
    inv = {v: (deg[v], A[v][v], tuple(A[v][:n_ext]), tuple(sorted(A[v][w] for w in range(n_ext, n) if w != v)))
           for v in range(n_ext, n)}
    order = sorted(inv, key=inv.__getitem__)
    cells = [list(c) for _, c in itertools.groupby(order, key=inv.__getitem__)]
    best = min(tuple(A[p[a]][p[b]] for a in range(n) for b in range(a, n))
               for perms in itertools.product(*(itertools.permutations(c) for c in cells))
               for p in [list(range(n_ext)) + [v for c in perms for v in c]])
    return n_ext, tuple(sorted(deg[n_ext:])), best


def labelled_multigraph_counts(n_external: int, vertex_degrees) -> tuple[dict, int]:
    """Exact brute force, independent of sft.symbolic.feynman: ({class key: number of Wick pairings},
    number of labelled multigraphs enumerated). Summed over classes: (N - 1)!! for N half-edges."""
    deg = (1,) * n_external + tuple(sorted(vertex_degrees))
    out, n_lab = {}, 0
    for mat, weight in _labelled_matrices(deg, n_external):
        key = _iso_key(deg, n_external, mat)
        out[key] = out.get(key, 0) + weight
        n_lab += 1
    return out, n_lab


def _key_of_diagram(d) -> tuple:
    """``_iso_key`` of a generated :class:`sft.symbolic.Diagram` (its edge list as a multiplicity matrix)."""
    mat: dict = {}
    for e in d.edges:
        mat[e] = mat.get(e, 0) + 1
    return _iso_key((1,) * d.n_external + d.vertex_degrees, d.n_external, mat)


def timed(fn, repeat=1):
    """(result, best wall-clock seconds over ``repeat`` runs) in this process (warm caches after run 1)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def cold(expr, imports):
    """(repr of the value of ``expr``, seconds) evaluated once in a fresh Python process (cold caches:
    sft.symbolic.feynman memoizes diagrams, so in-process repeats would time a dictionary lookup); the
    imports are not timed."""
    code = (f"import time, sft\n{imports}\nt0 = time.perf_counter()\nv = {expr}\n"
            "dt = time.perf_counter() - t0\nprint(repr(v))\nprint(dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.splitlines()
    return out[-2], float(out[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stop", type=float, default=30.0, help="stop the diagram orders after one takes longer")
    ap.add_argument("--max-order", type=int, default=8)
    ap.add_argument("--bf-max-order", type=int, default=5,
                    help="highest order of the labelled-multigraph brute force (6 takes ~1-2 min)")
    args = ap.parse_args(argv)
    rows = []  # (task, result, seconds, target)

    ops, sec = cold("sp.count_ops(edgeworth_density(6))", "import sympy as sp\n"
                    "from sft.symbolic.edgeworth import edgeworth_density")
    rows.append(("Edgeworth density to n^-3 (symbolic, cold)", f"{ops} ops", sec, "<= 2 s"))
    _, sec = cold("to_numeric(edgeworth_density(6, [2, 6, 24, 120, 720, 5040]), X, EPS)",
                  "from sft.symbolic.edgeworth import X, EPS, edgeworth_density, to_numeric")
    rows.append(("  same, Exp(1) cumulants -> numpy fn (cold)", "", sec, ""))

    xs = np.linspace(-6.0, 6.0, 100_000)
    _, sec = timed(lambda: edgeworth_density_numeric(xs, 6, [2, 6, 24, 120, 720, 5040], eps=0.1), repeat=5)
    rows.append(("  numpy edgeworth_density_numeric, order 6, 1e5 points", "", sec, ""))

    sd, sec = timed(lambda: moment_series(2, 40), repeat=5)
    rows.append(("Schwinger-Dyson <x^2> to lambda^40", f"a_40 = {float(sd[40]):.3e}", sec, "<= 1 s"))

    g4 = sp.Symbol("g4")
    reached = None
    for k in range(5, args.max_order + 1):
        text, sec = cold(f"one_component_series(2, {k}, kind='no_vacuum')",
                         "from sft.symbolic.feynman import one_component_series")
        series = sp.sympify(text, locals={"g4": g4})
        n_diag = sum(len(diagrams(2, j, kind="no_vacuum")) for j in range(k + 1))
        ok = [series.coeff(g4, j) for j in range(k + 1)] == moment_series(2, k)
        rows.append((f"phi^4 <x^2> diagrams to lambda^{k}",
                     f"{n_diag} diagrams (orders 0..{k}), = SD: {ok}", sec, "<= 10 s at k = 8"))
        reached = k
        if sec > args.stop:
            break

    for k in (2, 3):
        counts, t_wick = timed(lambda: wick_contraction_counts(2, (4,) * k))
        rows.append((f"naive brute force: all pairings, lambda^{k}",
                     f"{double_factorial(4 * k + 1)} pairings, {len(counts)} classes", t_wick, ""))
    for k in range(2, args.bf_max_order + 1):
        (classes, n_lab), t_bf = timed(lambda: labelled_multigraph_counts(2, (4,) * k),
                                       repeat=3 if k <= 4 else 1)
        diags = diagrams(2, k, kind="all")
        same = classes == {_key_of_diagram(d): contraction_multiplicity(d) for d in diags}
        total = sum(classes.values()) == double_factorial(4 * k + 1)
        t_diag = min(cold(f"len(diagrams(2, {k}, kind='all'))", "from sft.symbolic.feynman import diagrams")[1]
                     for _ in range(3))
        rows.append((f"labelled-multigraph brute force, lambda^{k}",
                     f"{n_lab} labelled graphs -> {len(classes)} classes", t_bf, ""))
        rows.append((f"diagrams(2, {k}, 'all') (cold, best of 3)",
                     f"{len(diags)} diagrams, same classes and weights: {same and total}; "
                     f"ratio {t_bf / t_diag:.3g}x", t_diag, ""))
        if not (same and total):
            raise AssertionError(f"brute force and diagram generator disagree at lambda^{k}")

    w = max(len(r[0]) for r in rows)
    print(f"{'task':<{w}}  {'seconds':>10}  {'target':<18} result")
    for task, result, sec, target in rows:
        print(f"{task:<{w}}  {sec:>10.4g}  {target:<18} {result}")
    print(f"highest diagram order reached: lambda^{reached}")


if __name__ == "__main__":
    main()
