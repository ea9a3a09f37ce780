"""phi^4 two-point function <x^2> to order lambda^3, derived from Gaussian moments, with its diagrams.

Run from the repository root: ``python -m derivations.phi4_two_point``; writes
derivations/out/phi4_two_point.md. tests/test_derivations_symbolic.py asserts that the diagram sum of
:func:`sft.symbolic.one_component_series` (and :func:`sft.symbolic.moment_series`) equals the
series derived here.

Theory: S(x) = x^2/2 + lambda x^4/4!, <f> = int f e^{-S} / int e^{-S}.

Derivation (Zee, *QFT in a Nutshell* ch. I.7, the "baby problem"):

1. Expand the interaction under the integral: e^{-lambda x^4/24} = sum_k (-lambda/24)^k x^{4k}/k!, so
   Z <x^2> / Z_0 = sum_k (-lambda/24)^k E[x^{4k+2}]/k!, Z/Z_0 = sum_k (-lambda/24)^k E[x^{4k}]/k!
   (a formal, asymptotic series: the exchange of sum and integral is not legitimate beyond it).
2. Gaussian moments E[x^m] = int x^m e^{-x^2/2} dx / sqrt(2 pi), computed here by sympy integration.
3. <x^2> = (Z <x^2>/Z_0) / (Z/Z_0), expanded by sympy as a series in lambda to lambda^3.

The diagrams (connected, two external legs, k quartic vertices; from :func:`sft.symbolic.feynman`)
each contribute (-lambda)^k / S_G (propagator 1); their sum at each order must equal the derived
coefficient (for phi^4 every diagram of <x^2> without vacuum bubbles is connected, since a component
with one external leg would have an odd number of half-edges).
"""
from __future__ import annotations

import pathlib

import sympy as sp

from sft.symbolic import diagrams  # the generator function

ORDER = 3
lam = sp.Symbol("lambda", positive=True)
u = sp.Symbol("u", real=True)

OUT = pathlib.Path(__file__).resolve().parent / "out" / "phi4_two_point.md"


def gaussian_moment(m):
    """E[u^m], u ~ N(0, 1), by sympy integration of u^m e^{-u^2/2} / sqrt(2 pi)."""
    return sp.integrate(u ** m * sp.exp(-u ** 2 / 2), (u, -sp.oo, sp.oo)) / sp.sqrt(2 * sp.pi)


def two_point_series(order=ORDER):
    """[a_0, .., a_order] with <x^2> = sum_k a_k lambda^k + O(lambda^{order+1}) (steps 1-3)."""
    num = sum((-lam / 24) ** k * gaussian_moment(4 * k + 2) / sp.factorial(k) for k in range(order + 1))
    den = sum((-lam / 24) ** k * gaussian_moment(4 * k) / sp.factorial(k) for k in range(order + 1))
    ser = sp.expand(sp.series(num / den, lam, 0, order + 1).removeO())
    return [ser.coeff(lam, k) for k in range(order + 1)]


def diagram_table(order=ORDER):
    """Rows (order k, symmetry factor S_G, edges, value (-lambda)^k / S_G) of the <x^2> diagrams."""
    return [(k, d.symmetry_factor, d.edges, (-lam) ** k / d.symmetry_factor)
            for k in range(order + 1) for d in diagrams(2, k, kind="connected")]


def main():
    coeffs = two_point_series()
    table = diagram_table()
    per_order = [sum(r[3] for r in table if r[0] == k) for k in range(ORDER + 1)]
    agree = all(sp.expand(per_order[k] - coeffs[k] * lam ** k) == 0 for k in range(ORDER + 1))
    series = sum(c * lam ** k for k, c in enumerate(coeffs))
    lines = ["# $\\phi^4$ two-point function to order $\\lambda^3$ (derived by derivations/phi4_two_point.py)",
             "", "$S = x^2/2 + \\lambda x^4/4!$. Gaussian moments $E[u^{4k}]$, $E[u^{4k+2}]$ "
             f"(k = 0..{ORDER}) by sympy integration: "
             + ", ".join(str(gaussian_moment(m)) for m in range(0, 4 * ORDER + 3, 2)) + ".", "",
             f"$$\\langle x^2\\rangle = {sp.latex(series)} + O(\\lambda^4)$$", "",
             "Diagrams (two external legs 0, 1; internal vertices 2, ..; propagator 1; from "
             "`sft.symbolic.diagrams(2, k, kind='connected')`):", "",
             "| order $k$ | $S_G$ | $1/S_G$ | value | edges |", "|---|---|---|---|---|"]
    for k, S, edges, value in table:
        lines.append(f"| {k} | {S} | {sp.Rational(1, S)} | ${sp.latex(value)}$ | {list(edges)} |")
    lines += ["", "| order $k$ | diagrams | $\\sum_G 1/S_G$ | derived coefficient |", "|---|---|---|---|"]
    for k in range(ORDER + 1):
        n_k = sum(1 for r in table if r[0] == k)
        lines.append(f"| {k} | {n_k} | {sp.Rational(sum(sp.Rational(1, r[1]) for r in table if r[0] == k))}"
                     f" | {coeffs[k]} |")
    lines += ["", f"Diagram sums equal the derived coefficients, order by order: {agree}."]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
