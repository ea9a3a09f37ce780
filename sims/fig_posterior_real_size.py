"""Figure posterior_real_size: the finite-width Bayesian posterior at a real size (P = 100 training, M = 100 test
points, d = 50) against sampled networks (issue 12, item 5).

Data (`sft.sim.two_class_mixture`, as sims/benchmarks/bench_large_posterior.py): two classes of a synthetic set, x = u + 2 c e, u ~ N(0, I_50),
c = +-1 the class, e a fixed random unit vector, rows rescaled to |x|^2 / d = 1, labels y = c (seed 0). Network:
one hidden tanh layer of width n, C_W = 1.5, C_b = 0.1 (NTK parameterization, :mod:`sft.conventions`), noise
sigma^2 = 1.0.

Theory: the GP posterior (n = infinity) and its O(1/n) coefficients c_1 (mean) and the diagonal of the covariance
coefficient, from :func:`sft.predict.large_posterior` (order 1, n = 1, the vertex contractions sampled over
neurons: its Monte Carlo error is the shaded band / the horizontal error bars). Sampled networks: the exact
finite-width posterior by split HMC over the hidden weights with the readout integrated out
(:func:`sft.predict.hmc_network_posterior`, float64, chains from the prior, batch-means 1 sigma errors; the
acceptance, R-hat and autocorrelation time of each run are printed in panel (d)).

Panels: (a) posterior mean +- 1 sd at the test points sorted by the GP mean, smallest width; (b) the sampled
shift from the GP mean against the O(1/n) theory c_1 / n at the smallest and the largest width; (c) n x (sampled
mean - GP mean) against c_1 per test point, all widths, identity line; (d) the same for the posterior variance;
(e) the weighted least-squares slope (through 0) of n x shift on the theory coefficient (1 if the O(1/n) term alone
described the networks; corrected for the attenuation by the coefficient's Monte Carlo error) against 1/n, with a
weighted polynomial fit b0 + b1/n + b2/n^2 (the O(1/n^2) part and beyond): b0 = 1 if the O(1/n) theory is the
right asymptote.

Measured (FULL, three runs with identical numbers, the last two with the same PNG; this 2-core machine: 4.5 min
wall at load 3-5, 8.7 min at load 7-11): HMC acceptance
0.981-0.996, split-R-hat <= 1.001, tau 1.0-1.15 draws. Theory Monte Carlo error (131,072 neurons): 5 % of the mean
coefficient, 0.6 % of the variance coefficient (Frobenius norms). Mean, slope of n x shift on c_1 (chi^2/dof of
the identity, fraction within 2 sigma): n = 16: 0.50 +- 0.03 (116, 11 %); 32: 0.70 +- 0.02 (32, 26 %); 64: 0.85 +-
0.01 (6.4, 61 %); 128: 0.93 +- 0.01 (1.9, 86 %); 256: 1.00 +- 0.015 (1.6, 91 %); extrapolated (b0 + b1/n + b2/n^2,
all widths) 1.04 +- 0.015, b1 = -13 +- 2 (straight line: 1.003 +- 0.010, chi^2/dof 3.2). Variance: slopes 0.45,
0.63, 0.78, 0.88, 0.94 (+- 0.001-0.006), chi^2/dof of the identity 5046 .. 27 (the per-point errors are small
enough to resolve the O(1/n^2) part at every width), extrapolated 0.995 +- 0.002, b1 = -15.0 +- 0.2. So: the O(1/n)
theory gives the right pattern (shape across test points) and, extrapolated, the right size of the finite-width
shift; at these widths the O(1/n^2) part is large (about -15/n relative: half the shift at n = 16, 6 % at n = 256).

Run ``python sims/fig_posterior_real_size.py [--quick]`` or ``sft figures --only posterior_real_size``.
"""
from __future__ import annotations

import time

import jax
import matplotlib.figure
import numpy as np

from sft.predict import hmc_network_posterior, large_posterior
from sft.sim import two_class_mixture
from sft.workflow import Figure, run_script

NET = dict(activation="tanh", C_W=1.5, C_b=0.1, noise=1.0)
DATA = dict(data_seed=0, P=100, M=100, d=50)
QUICK = dict(widths=[16, 32], n_chains=4, n_draws=40, n_batches=2, burn_in=8, theory_samples=2048, seed=0,
             dtype="float64", **DATA)
FULL = dict(widths=[16, 32, 64, 128, 256], n_chains=16, n_draws=1024, n_batches=16, burn_in=16, theory_samples=131072,
            seed=0, dtype="float64", **DATA)


def compute(*, kind, data_seed, P, M, d, seed, dtype, **kw):
    data = two_class_mixture(data_seed, P, M, d)
    t0 = time.perf_counter()
    if kind == "theory":
        r = large_posterior(*data, depth=1, order=1, n=1.0, samples=kw["samples"], n_batches=16, seed=seed, **NET)
        return dict(mean=r.mean, mean_err=r.mean_err[1], var=np.diagonal(r.cov, axis1=1, axis2=2),
                    var_err=np.diagonal(r.cov_err[1]), seconds=time.perf_counter() - t0)
    r = hmc_network_posterior(*data, widths=[kw["width"]], key=jax.random.key(seed), n_chains=kw["n_chains"],
                              n_draws=kw["n_draws"], n_batches=kw["n_batches"], burn_in=kw["burn_in"], **NET)
    return dict(mean=r.mean, mean_err=r.mean_err, var=np.diagonal(r.cov), var_err=np.diagonal(r.cov_err),
                acceptance=r.acceptance.mean(), rhat=r.rhat, tau=r.tau, seconds=time.perf_counter() - t0)


def pieces(params):
    data = {k: params[k] for k in ("data_seed", "P", "M", "d")}
    out = {"theory": dict(kind="theory", samples=params["theory_samples"], seed=params["seed"],
                          dtype=params["dtype"], **data)}
    for j, w in enumerate(params["widths"]):
        out[f"hmc-n{w}"] = dict(kind="hmc", width=w, n_chains=params["n_chains"], n_draws=params["n_draws"],
                                n_batches=params["n_batches"], burn_in=params["burn_in"],
                                seed=params["seed"] + 100 + j, dtype=params["dtype"], **data)
    return out


def agreement(n, sampled, sampled_err, gp, coef, coef_err):
    """n x (sampled - GP) and its error; chi^2/dof and the fraction within 2 sigma of the identity (the O(1/n)
    term alone), errors of both axes combined; the weighted least-squares slope through 0 of n x shift on the
    coefficient, with its sandwich (heteroscedasticity-robust) error, divided by the attenuation factor
    1 - sum(w coef_err^2) / sum(w coef^2) that the coefficient's own Monte Carlo error causes (errors in x)."""
    y, ey = n * (sampled - gp), n * sampled_err
    e2 = ey ** 2 + coef_err ** 2
    z = (y - coef) / np.sqrt(e2)
    w = 1 / e2
    slope = np.sum(w * y * coef) / np.sum(w * coef ** 2)
    slope_err = np.sqrt(np.sum((w * coef * (y - slope * coef)) ** 2)) / np.sum(w * coef ** 2)
    atten = 1 - np.sum(w * coef_err ** 2) / np.sum(w * coef ** 2)
    return y, ey, float(np.mean(z ** 2)), float(np.mean(np.abs(z) < 2)), float(slope / atten), \
        float(slope_err / atten)


def plot(results, params):
    th = results["theory"]
    widths = params["widths"]
    order = np.argsort(th["mean"][0])
    k = np.arange(len(order))
    fig = matplotlib.figure.Figure(figsize=(17, 9.5), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    ax_a, ax_b = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    ax_c, ax_d = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
    ax_e = fig.add_subplot(grid[:, 2])

    # (a) mean +- sd at the smallest width
    n0 = widths[0]
    r = results[f"hmc-n{n0}"]
    gp_m, gp_s = th["mean"][0][order], np.sqrt(th["var"][0][order])
    t_m = (th["mean"][0] + th["mean"][1] / n0)[order]
    t_s = np.sqrt(th["var"][0] + th["var"][1] / n0)[order]
    ax_a.plot(k, gp_m, "k-", lw=1.2, label="GP ($n=\\infty$) mean")
    ax_a.plot(k, gp_m + gp_s, "k:", lw=0.9, label="GP mean $\\pm$ 1 sd")
    ax_a.plot(k, gp_m - gp_s, "k:", lw=0.9)
    ax_a.plot(k, t_m, "C6-", lw=1.2, label=f"GP + $O(1/n)$ theory, $n={n0}$")
    ax_a.fill_between(k, t_m - th["mean_err"][order] / n0, t_m + th["mean_err"][order] / n0, color="C6", alpha=0.3)
    for sgn in (1, -1):
        ax_a.plot(k, t_m + sgn * t_s, "C6--", lw=0.9, label="theory mean $\\pm$ 1 sd" if sgn > 0 else None)
    ax_a.errorbar(k, r["mean"][order], yerr=r["mean_err"][order], fmt="o", color="C0", ms=2.5, capsize=0, lw=0.8,
                  label=f"sampled networks (HMC), $n={n0}$")
    s_sd = np.sqrt(r["var"][order])
    for sgn in (1, -1):
        ax_a.errorbar(k, r["mean"][order] + sgn * s_sd, yerr=r["var_err"][order] / (2 * s_sd), fmt="_",
                      color="C0", ms=4, lw=0.6, label="sampled mean $\\pm$ 1 sd" if sgn > 0 else None)
    ax_a.set_xlabel("test point (sorted by the GP posterior mean)")
    ax_a.set_ylabel("posterior of $f(x_*)$")
    ax_a.set_title(f"(a) posterior mean $\\pm$ 1 sd, tanh, $n={n0}$, $P=M=100$, $d=50$, $\\sigma^2=1$", fontsize=9)
    ax_a.legend(fontsize=7, ncol=2, loc="upper left")

    # (b) shift from the GP mean at the smallest and largest widths
    for c, n in ((f"C{j}", widths[j]) for j in (0, len(widths) - 1)):
        r = results[f"hmc-n{n}"]
        band = th["mean"][1][order] / n
        ax_b.fill_between(k, band - th["mean_err"][order] / n, band + th["mean_err"][order] / n, color=c,
                          alpha=0.3, lw=0, label=f"theory $c_1/n$, $n={n}$ (MC band)")
        ax_b.errorbar(k, (r["mean"] - th["mean"][0])[order], yerr=r["mean_err"][order], fmt="o", color=c, ms=2.5,
                      lw=0.8, label=f"sampled $-$ GP, $n={n}$")
    ax_b.axhline(0, color="k", lw=0.6)
    ax_b.set_xlabel("test point (sorted by the GP posterior mean)")
    ax_b.set_ylabel("posterior mean $-$ GP mean")
    ax_b.set_title("(b) the finite-width shift of the posterior mean", fontsize=9)
    ax_b.legend(fontsize=7)

    # (c), (d) n x shift against the coefficient; (e) slopes against 1/n
    slopes = {}
    for ax, key, err_key, name in ((ax_c, "mean", "mean_err", "mean"), (ax_d, "var", "var_err", "variance")):
        coef, coef_err = th[key][1], th[err_key]
        slopes[name] = []
        for j, n in enumerate(widths):
            r = results[f"hmc-n{n}"]
            y, ey, chi2, frac, s, es = agreement(n, r[key], r[err_key], th[key][0], coef, coef_err)
            slopes[name].append((s, es))
            ax.errorbar(coef, y, xerr=coef_err, yerr=ey, fmt="o", color=f"C{j}", ms=2.5, lw=0.6, alpha=0.8,
                        label=f"$n={n}$: $\\chi^2$/dof = {chi2:.1f}, {100 * frac:.0f}% within 2$\\sigma$, "
                              f"slope {s:.3f} $\\pm$ {es:.3f}")
        lim = np.array([coef.min(), coef.max()])
        ax.plot(lim, lim, "k-", lw=1, label="identity ($O(1/n)$ theory exact)")
        ax.set_xlabel(f"$O(1/n)$ coefficient of the posterior {name} (large_posterior, $n=1$)")
        ax.set_ylabel(f"$n \\times$ (sampled $-$ GP) posterior {name}")
        ax.set_title(f"({'c' if name == 'mean' else 'd'}) {name} at the 100 test points, 1$\\sigma$ errors both ways",
                     fontsize=9)
        if name == "variance":   # room below the points for the legend
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo - 0.45 * (hi - lo), hi)
        ax.legend(fontsize=7, loc="upper left" if name == "mean" else "lower right")
    inv = 1.0 / np.asarray(widths, dtype=float)
    grid_inv = np.linspace(0, inv.max() * 1.05, 50)
    for name, mk, c in (("mean", "o", "0.15"), ("variance", "s", "C5")):
        s, es = np.array(slopes[name]).T
        ax_e.errorbar(inv, s, yerr=es, fmt=mk, color=c, ms=6, capsize=3, label=f"{name}")
        deg = min(2, len(widths) - 2)      # weighted fit s = b0 + b1/n (+ b2/n^2), >= 1 degree of freedom left
        if deg >= 1:
            X = np.vander(inv, deg + 1, increasing=True) / es[:, None]
            beta, *_ = np.linalg.lstsq(X, s / es, rcond=None)
            cov = np.linalg.inv(X.T @ X)
            chi2 = np.sum((X @ beta - s / es) ** 2) / (len(inv) - deg - 1)
            ax_e.plot(grid_inv, np.vander(grid_inv, deg + 1, increasing=True) @ beta, "-", color=c, lw=0.9,
                      label=f"{name}: fit to $1/n^{deg}$, at $n=\\infty$: {beta[0]:.3f} $\\pm$ "
                            f"{np.sqrt(cov[0, 0]):.3f} ($\\chi^2$/dof {chi2:.1f})")
    ax_e.axhline(1, color="k", lw=1, label="$O(1/n)$ theory alone")
    rows = ["HMC diagnostics:", "    n  accept  R-hat    tau"]
    for n in widths:
        r = results[f"hmc-n{n}"]
        rows.append(f"{n:5d}  {float(r['acceptance']):6.3f}  {float(r['rhat']):5.3f}  {float(r['tau']):5.2f}")
    ax_e.text(0.35, 0.03, "\n".join(rows), transform=ax_e.transAxes, fontsize=7.5, family="monospace", va="bottom")
    ax_e.set_xlim(0, inv.max() * 1.12)
    ax_e.set_ylim(0, 1.25)
    ax_e.set_xlabel("$1/n$")
    ax_e.set_ylabel("slope of $n \\times$ (sampled $-$ GP) on the $O(1/n)$ coefficient")
    ax_e.set_title("(e) how much of the finite-width shift the $O(1/n)$ term carries", fontsize=9)
    ax_e.legend(fontsize=7, loc="upper right")
    ax_e.grid(alpha=0.3)
    fig.suptitle(f"Finite-width Bayesian posterior at P = 100: exact sampled networks (split HMC over the hidden "
                 f"weights, readout integrated out; {params['n_chains']} chains x {params['n_draws']} draws, float64) "
                 f"against GP + O(1/n) theory (neuron-sampled vertex, {params['theory_samples']:,} neurons)",
                 fontsize=10)
    return fig


FIGURE = Figure(
    name="posterior_real_size",
    description="finite-width posterior at P = M = 100 (tanh): HMC-sampled networks against GP + O(1/n) theory",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
