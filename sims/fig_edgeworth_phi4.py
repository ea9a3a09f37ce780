"""Figure edgeworth_phi4: two expansions about a Gaussian against exact answers.

Left: the Edgeworth density of the standardized sum S_n = (sum_i X_i - n)/sqrt(n) of n iid Exp(1)
variables, truncated at orders 0..4 in n^{-1/2} (:func:`sft.symbolic.edgeworth_density_numeric`, equal
to the symbolic :func:`sft.symbolic.edgeworth_density` to 1e-13; standardized cumulants
lambda_r = (r-1)!), against the exact density sqrt(n) Gamma(n, 1).pdf(n + sqrt(n) x) (scipy). Top: the densities; bottom: the absolute error
on a log scale (the error at order j is O(n^{-(j+1)/2}); the truncated densities go negative in the
left tail, where the error curves cross |f| itself).

Right: phi^4 theory S = x^2/2 + lambda x^4/4!, <x^2> = sum_k a_k lambda^k (a_k exact rationals from the
Schwinger-Dyson recursion :func:`sft.symbolic.moment_series`, equal to the diagram sum of
:mod:`sft.symbolic.feynman`), partial sums S_K = sum_{k<=K} a_k lambda^k against the exact <x^2>
(:func:`sft.symbolic.phi4_second_moment`, modified-Bessel closed form, relative error < 1e-13). The series is asymptotic: |a_k| grows like
(2/3)^k k!, so the terms shrink until k ~ 3/(2 lambda) and then grow; the error of S_K first falls,
is smallest near K ~ 3/(2 lambda) (optimal truncation, error ~ e^{-3/(2 lambda)}), then diverges.
Top: S_K / exact; bottom: |S_K - exact| / exact (log scale) with the optimal truncation order marked.
float64 throughout. Run ``python sims/fig_edgeworth_phi4.py [--quick]`` or
``sft figures --only edgeworth_phi4``.
"""
from __future__ import annotations

import math

import matplotlib.figure
import numpy as np
import scipy.stats

from sft.symbolic import edgeworth_density_numeric
from sft.workflow import Figure, run_script
from sft.symbolic import moment_series, phi4_second_moment

QUICK = dict(n=10, orders=[0, 1, 2, 3, 4], x_min=-3.0, x_max=5.0, n_x=400, lambdas=[0.1, 0.2, 0.4],
             max_order=30, dtype="float64")
FULL = dict(n=10, orders=[0, 1, 2, 3, 4], x_min=-3.0, x_max=5.0, n_x=1601, lambdas=[0.1, 0.2, 0.4],
            max_order=40, dtype="float64")


def pieces(params):
    """One piece for the Edgeworth panels, one per lambda for the phi^4 panels."""
    out = {"edgeworth": dict(n=params["n"], orders=params["orders"], x_min=params["x_min"],
                             x_max=params["x_max"], n_x=params["n_x"], dtype=params["dtype"])}
    for lam in params["lambdas"]:
        out[f"phi4_lam{lam:g}"] = dict(lam=lam, max_order=params["max_order"], dtype=params["dtype"])
    return out


def compute(**kw):
    return compute_edgeworth(**kw) if "n" in kw else compute_phi4(**kw)


def compute_edgeworth(*, n, orders, x_min, x_max, n_x, dtype):
    """Exact standardized-Gamma density and Edgeworth densities of each order on a grid of x."""
    x = np.linspace(x_min, x_max, n_x, dtype=dtype)
    exact = np.sqrt(n) * scipy.stats.gamma.pdf(n + np.sqrt(n) * x, a=n)
    lambdas = [math.factorial(r - 1) for r in range(3, max(orders) + 3)]  # Exp(1): lambda_r = (r-1)!
    approx = np.stack([edgeworth_density_numeric(x, j, lambdas, eps=1 / np.sqrt(n)) for j in orders])
    return dict(x=x, exact=exact, approx=approx, orders=np.asarray(orders))


def compute_phi4(*, lam, max_order, dtype):
    """Partial sums S_0..S_max_order of <x^2> and the exact <x^2> (Bessel closed form)."""
    coeffs = np.array([float(c) for c in moment_series(2, max_order)], dtype=dtype)
    partial = np.cumsum(coeffs * lam ** np.arange(max_order + 1))
    return dict(partial=partial, exact=np.float64(phi4_second_moment(lam)), coeffs=coeffs)


def plot(results, params):
    """2 x 2: Edgeworth density and its error (left), phi^4 partial sums and their error (right)."""
    fig = matplotlib.figure.Figure(figsize=(12, 8), layout="constrained")
    (a_dens, a_ser), (a_err, a_serr) = fig.subplots(2, 2)
    e = results["edgeworth"]
    x, exact, n = e["x"], e["exact"], params["n"]
    colors = {j: f"C{i}" for i, j in enumerate(e["orders"])}
    a_dens.plot(x, exact, "k-", lw=2.2, label=f"exact (Gamma, $n$ = {n})")
    a_err.semilogy(x, np.abs(exact), "k-", lw=1, alpha=0.35)
    for j, f in zip(e["orders"], e["approx"]):
        power = f"{j // 2}" if j % 2 == 0 else f"{j}/2"
        lab = "Gaussian (order 0)" if j == 0 else f"order {j}: to $n^{{-{power}}}$"
        a_dens.plot(x, f, "-", color=colors[j], lw=1.2, label=lab)
        a_err.semilogy(x, np.abs(f - exact), "-", color=colors[j], lw=1.2)
    a_dens.axhline(0, color="0.5", lw=0.6)
    a_dens.set_title(f"Edgeworth densities of $S_n$, sum of $n$ = {n} Exp(1), standardized", fontsize=10)
    a_dens.set_ylabel("density of $S_n$")
    a_dens.legend(fontsize=8.5)
    a_err.set_title("absolute error |Edgeworth $-$ exact| (error at order $j$ is $O(n^{-(j+1)/2})$)",
                    fontsize=10)
    a_err.set_ylim(1e-7, 1)
    a_err.set_ylabel("absolute error")
    a_err.text(0.03, 0.04, "grey: |exact density|; colours as above", transform=a_err.transAxes, fontsize=8.5,
               color="0.35")
    for ax in (a_dens, a_err):
        ax.set_xlabel(r"$x = (\sum_i X_i - n)/\sqrt{n}$")
        ax.set_xlim(x[0], x[-1])
        ax.grid(True, alpha=0.3)

    for i, lam in enumerate(params["lambdas"]):
        r = results[f"phi4_lam{lam:g}"]
        K = np.arange(len(r["partial"]))
        rel = np.abs(r["partial"] - r["exact"]) / r["exact"]
        k_best = int(np.argmin(rel))
        c = f"C{i}"
        ratio = r["partial"] / r["exact"]
        a_ser.plot(K, np.where(np.abs(ratio - 1) < 0.2, ratio, np.nan), "o-", ms=3, lw=1, color=c,
                   label=rf"$\lambda$ = {lam:g}  (exact $\langle x^2\rangle$ = {float(r['exact']):.6f})")
        a_serr.semilogy(K, rel, "o-", ms=3, lw=1, color=c, label=rf"$\lambda$ = {lam:g}")
        a_serr.plot([k_best], [rel[k_best]], "*", ms=14, color=c, mec="k", zorder=4)
        a_serr.axvline(1.5 / lam, color=c, ls=":", lw=1.2)
    a_ser.axhline(1, color="k", lw=1)
    a_ser.set_ylim(0.9, 1.1)
    a_ser.text(0.98, 0.03, "points beyond the frame are not drawn", transform=a_ser.transAxes,
               ha="right", fontsize=8.5, color="0.35")
    a_ser.set_title(r"$\phi^4$: partial sums $S_K = a_0 + a_1\lambda + \dots + a_K\lambda^K$ of $\langle x^2\rangle$, "
                    r"$S = x^2/2+\lambda x^4/4!$", fontsize=10)
    a_ser.set_ylabel(r"$S_K$ / exact")
    a_ser.legend(fontsize=8.5, loc="upper left")
    a_serr.set_ylim(1e-8, 1e2)
    a_serr.set_title("relative error: least near $K \\approx 3/(2\\lambda)$ (dotted), "
                     "star = minimum", fontsize=10)
    a_serr.set_ylabel(r"$|S_K - \mathrm{exact}|$ / exact")
    a_serr.legend(fontsize=8.5, loc="lower right")
    for ax in (a_ser, a_serr):
        ax.set_xlabel(r"truncation order $K$ (powers of $\lambda$)")
        ax.set_xlim(-0.5, len(K) - 0.5)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Expansions about a Gaussian against exact answers: Edgeworth (converges in $n$ at fixed "
                 "order) and the $\\phi^4$ series (asymptotic in $\\lambda$, diverges at fixed $\\lambda$)",
                 fontsize=11)
    return fig


FIGURE = Figure(
    name="edgeworth_phi4",
    description="Edgeworth orders 0-4 vs exact Gamma density; phi^4 <x^2> partial sums vs exact integral",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
