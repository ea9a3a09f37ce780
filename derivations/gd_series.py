"""The generated O(1/n) mean and covariance after gradient descent, printed, and re-derived for one input by
brute force.

Run from the repository root: ``python -m derivations.gd_series``; writes derivations/out/gd_series.md.

1. The term lists of :func:`sft.predict.gd_mean_series` and :func:`sft.predict.gd_cov_series` (generated
   from the effective dynamics :data:`sft.predict.generated_gd.RULES` by history expansion and set-partition
   cumulants, see
   sft/predict/generated_gd.py): counts per class, the coefficient and factors of each term, and the LaTeX of
   :func:`sft.predict.gd_series_latex`.
2. Independent derivation for one (training) input, N = P = 1: the random initial data are realized by
   explicit polynomials of independent standard Gaussians z, g (e^2 = 1/n):

       f0 = (kappa + e^2 G1 / (2 kappa)) z  (K = kappa^2),
       H0 = Theta + e^2 Theta1 + e sigma g + e^2 alpha (f0^2 - K),
       dH0 = e^2 (beta f0 + gamma (f0^3 - 3 K f0) + delta g),   ddHI = e^2 I,   ddHII = e^2 II,

   so that Var f0 = K + e^2 G1 + O(e^4), kappa(dTheta, dTheta) = sigma^2, kappa(dTheta, f0, f0) =
   2 alpha K^2, kappa(dH, f0) = beta K and kappa(dH, f0, f0, f0) = 6 gamma K^3 at order e^2 (delta g: a part
   of dH uncorrelated with f0, whose correlation with dTheta is O(e^3)). k steps of the scalar dynamics
   f' = f - eta H r + eta^2/2 D r^2 - eta^3/6 I r^3, H' = H - 2 eta D r + eta^2 (I + II) r^2,
   D' = D - eta (I + 2 II) r (r = f - y) are unrolled exactly in sympy (polynomials in e, z, g, truncated
   at e^2 after every step), and the e^2 coefficient of E[f_t] is taken with the exact Gaussian moments
   E z^(2j) = (2j - 1)!!: no cumulant rules, no term list, no time sums; likewise the e^2 coefficient of
   Var f_t = E f_t^2 - (E f_t)^2. :func:`scalar_check` compares them with :func:`sft.predict.generated_gd_mean`
   and :func:`sft.predict.generated_gd_cov` on the same rational inputs (tests/test_generated_gd.py); the
   variance exercises every cumulant block (ntk_f2 through alpha, dntk_f3 through gamma).
"""
from __future__ import annotations

import collections
import pathlib

import numpy as np
import sympy as sp

from sft.predict import gd_cov_series, gd_mean_series, gd_series_latex, generated_gd_cov, generated_gd_mean
from sft.predict.trained_ensemble import _Toy

OUT = pathlib.Path(__file__).resolve().parent / "out" / "gd_series.md"

R = sp.Rational
#: the rational inputs of the scalar check
SCALAR = dict(kappa=R(3, 4), G1=R(1, 5), Theta=R(6, 5), Theta1=R(-1, 3), sigma=R(1, 2), alpha=R(2, 7),
              beta=R(3, 5), gamma=R(1, 9), delta=R(4, 3), I=R(-2, 5), II=R(1, 4), y=R(7, 10), eta=R(1, 3))


def exact_scalar(n_steps, p=SCALAR):
    """The e^2 (= 1/n) coefficients of E[f_t] and Var[f_t], t = 0..n_steps, by unrolling the scalar dynamics
    (module docstring, item 2): two lists of sympy rationals."""
    e, z, g = sp.symbols("e z g")
    gens = (e, z, g)

    def trunc(expr):
        poly = sp.Poly(sp.expand(expr), *gens, domain="QQ")
        return poly.from_dict({m: c for m, c in poly.terms() if m[0] <= 2}, *gens).as_expr()

    def mean(expr, power):  # the e^power coefficient of E_{z, g}[expr]
        moment = lambda j: 0 if j % 2 else sp.factorial2(j - 1)  # noqa: E731
        return sum(c * moment(m[1]) * moment(m[2]) for m, c in sp.Poly(expr, *gens, domain="QQ").terms()
                   if m[0] == power)

    K, f0 = p["kappa"] ** 2, p["kappa"] * z
    f = f0 + e ** 2 * p["G1"] / (2 * p["kappa"]) * z  # Var f0 = K + e^2 G1 + O(e^4)
    H = trunc(p["Theta"] + e ** 2 * p["Theta1"] + e * p["sigma"] * g + e ** 2 * p["alpha"] * (f0 ** 2 - K))
    D = trunc(e ** 2 * (p["beta"] * f0 + p["gamma"] * (f0 ** 3 - 3 * K * f0) + p["delta"] * g))
    I, II, eta, y = e ** 2 * p["I"], e ** 2 * p["II"], p["eta"], p["y"]
    means, variances = [], []
    for step in range(n_steps + 1):
        means.append(mean(f, 2))
        # Var = E[f^2] - (E f)^2; at e^2: E2[f^2] - 2 E0[f] E2[f] (E1[f] = 0)
        variances.append(mean(trunc(f * f), 2) - 2 * mean(f, 0) * mean(f, 2))
        if step == n_steps:
            break
        r = f - y
        f, H, D = (trunc(f - eta * H * r + eta ** 2 / 2 * D * r ** 2 - eta ** 3 / 6 * I * r ** 3),
                   trunc(H - 2 * eta * D * r + eta ** 2 * (I + II) * r ** 2),
                   trunc(D - eta * (I + 2 * II) * r))
    return means, variances


def scalar_check(n_steps=3, p=SCALAR):
    """The 1/n coefficients for N = P = 1 both ways, float arrays (n_steps + 1,): (exact mean, generated mean,
    exact variance, generated variance)."""
    means, variances = exact_scalar(n_steps, p)
    K = p["kappa"] ** 2
    one = lambda v, rank: np.full((1,) * rank, float(v))  # noqa: E731
    mk = _Toy(K=one(K, 2), G1=one(p["G1"], 2), Theta=one(p["Theta"], 2), Theta1=one(p["Theta1"], 2),
              ntk_cov=one(p["sigma"] ** 2, 4), ntk_f2=one(2 * p["alpha"] * K ** 2, 4),
              dntk_f=one(p["beta"] * K, 4), dntk_f3=one(6 * p["gamma"] * K ** 3, 6), ddntk_I=one(p["I"], 4),
              ddntk_II=one(p["II"], 4))
    kw = dict(n_train=1, learning_rate=float(p["eta"]), n_steps=n_steps)
    y = np.array([float(p["y"])])
    mean, cov = generated_gd_mean(mk, y, **kw), generated_gd_cov(mk, y, **kw)
    return (np.array([float(v) for v in means]), mean.correction[:, 0],
            np.array([float(v) for v in variances]), cov.correction[:, 0, 0])


def markdown():
    lines = ["# The O(1/n) ensemble mean and covariance after gradient descent, generated", "",
             "Generated by `python -m derivations.gd_series` from sft.predict.gd_mean_series and gd_cov_series "
             "(module docstring of sft/predict/generated_gd.py). Mean: the source S_t(x) of "
             "c_{t+1} = c_t - eta Theta_{xX} c_t(X) + S_t; covariance: Sigma1_t(x, y) itself.", "",
             "| class | mean terms | covariance terms |", "|---|---|---|"]
    mean, cov = gd_mean_series(), gd_cov_series()
    cm, cc = collections.Counter(t.part for t in mean), collections.Counter(t.part for t in cov)
    lines += [f"| {part} | {cm[part]} | {cc[part]} |" for part in ("kernel", "ntk", "dntk", "ddntk")]
    lines += [f"| total | {len(mean)} | {len(cov)} |", ""]
    for title, terms in (("Mean source", mean), ("Covariance", cov)):
        lines += [f"## {title}: terms", "", "| class | coefficient | factors (name, times, indices) |",
                  "|---|---|---|"]
        lines += [f"| {t.part} | {t.coefficient} | {list(t.factors)} |" for t in terms]
        lines.append("")
    lines += ["## LaTeX", "", "```latex", gd_series_latex("mean"), gd_series_latex("cov"), "```", ""]
    em, gm, ev, gv = scalar_check(4)
    lines += ["## Scalar check (N = P = 1, module docstring item 2)", "",
              f"Inputs: {', '.join(f'{k} = {v}' for k, v in SCALAR.items())}.", "",
              "| step | mean: exact (sympy unroll) | generated | variance: exact | generated |",
              "|---|---|---|---|---|"]
    lines += [f"| {t} | {a:.15g} | {b:.15g} | {c:.15g} | {d:.15g} |"
              for t, (a, b, c, d) in enumerate(zip(em, gm, ev, gv))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(markdown())
    print(f"wrote {OUT}")
