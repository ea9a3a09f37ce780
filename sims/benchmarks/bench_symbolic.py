"""Speed of the symbolic engine: Edgeworth, phi^4 diagrams, Schwinger-Dyson, diagrams vs brute-force Wick.

Rows (with their targets):
1. symbolic Edgeworth density to order n^{-3} (``sft.symbolic.edgeworth_density(6)``, symbolic
   lambda_3..lambda_8), and its conversion to a numpy function; target <= 2 s.
2. phi^4 <x^2> by diagrams (``sft.symbolic.one_component_series(2, k, kind="no_vacuum")``, all orders
   0..k) for k = 5, 6, ..; stops after the first k that takes more than ``--stop`` seconds (30) or at
   k = 8; each series is checked against the Schwinger-Dyson series. Target: lambda^8 in <= 10 s.
3. Schwinger-Dyson series of <x^2> to order 40 (``sft.symbolic.moment_series``); target <= 1 s.
4. Diagram generation vs brute-force Wick enumeration (``sft.symbolic.wick_contraction_counts``, all
   (4k+1)!! pairings of the half-edges of <x^2> at order lambda^k) at k = 2, 3, both giving every
   diagram (kind "all", vacuum bubbles included; checked: equal sets of diagrams, and the counts
   n_k! (k!)^{n_k} / S_G summed over diagrams = (4k+1)!!). At k = 4, 5 brute force is not run: its
   time is EXTRAPOLATED as (measured time per pairing at k = 3) x (4k+1)!!. Target: >= 100x at k = 5.

Times are wall-clock (time.perf_counter), best of ``repeat`` runs for the fast rows, one run for the
slow ones. The symbolic and diagram rows run once each in a fresh Python process (cold caches; imports
not timed), the brute-force Wick rows in this process.
Usage (repository root): PYTHONPATH=. python sims/benchmarks/bench_symbolic.py [--stop 30]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import time

import sympy as sp

import sft  # noqa: F401
from sft.symbolic.feynman import contraction_multiplicity, diagram_key, diagrams, wick_contraction_counts
from sft.symbolic import moment_series
from sft.symbolic import double_factorial

ROOT = pathlib.Path(__file__).resolve().parents[2]


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
    args = ap.parse_args(argv)
    rows = []  # (task, result, seconds, target)

    ops, sec = cold("sp.count_ops(edgeworth_density(6))", "import sympy as sp\n"
                    "from sft.symbolic.edgeworth import edgeworth_density")
    rows.append(("Edgeworth density to n^-3 (symbolic, cold)", f"{ops} ops", sec, "<= 2 s"))
    _, sec = cold("to_numeric(edgeworth_density(6, [2, 6, 24, 120, 720, 5040]), X, EPS)",
                  "from sft.symbolic.edgeworth import X, EPS, edgeworth_density, to_numeric")
    rows.append(("  same, Exp(1) cumulants -> numpy fn (cold)", "", sec, ""))

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

    per_pairing = None
    for k in (2, 3):
        counts, t_wick = timed(lambda: wick_contraction_counts(2, (4,) * k))
        diags = diagrams(2, k, kind="all")
        _, t_diag = cold(f"len(diagrams(2, {k}, kind='all'))", "from sft.symbolic.feynman import diagrams")
        same = set(counts) == {diagram_key(d) for d in diags}
        total = sum(contraction_multiplicity(d) for d in diags) == double_factorial(4 * k + 1)
        n_pair = double_factorial(4 * k + 1)
        per_pairing = t_wick / n_pair
        rows.append((f"brute-force Wick, <x^2> at lambda^{k}", f"{n_pair} pairings", t_wick, ""))
        rows.append((f"diagrams(2, {k}, 'all')", f"{len(diags)} diagrams, same set: {same and total}; "
                     f"ratio {t_wick / t_diag:.0f}x", t_diag, ""))
    for k in (4, 5):
        n_diag, t_diag = cold(f"len(diagrams(2, {k}, kind='all'))", "from sft.symbolic.feynman import diagrams")
        n_pair = double_factorial(4 * k + 1)
        t_ext = per_pairing * n_pair
        rows.append((f"brute-force Wick at lambda^{k} (EXTRAPOLATED)",
                     f"{n_pair:.3g} pairings x {per_pairing * 1e6:.1f} us", t_ext, ""))
        rows.append((f"diagrams(2, {k}, 'all')", f"{n_diag} diagrams; ratio {t_ext / t_diag:.3g}x "
                     "(extrapolated)", t_diag, ">= 100x at k = 5"))

    w = max(len(r[0]) for r in rows)
    print(f"{'task':<{w}}  {'seconds':>10}  {'target':<18} result")
    for task, result, sec, target in rows:
        print(f"{task:<{w}}  {sec:>10.4g}  {target:<18} {result}")
    print(f"highest diagram order reached: lambda^{reached}")


if __name__ == "__main__":
    main()
