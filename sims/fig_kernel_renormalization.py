"""Figure kernel_renormalization: Bayesian deep linear networks at finite alpha = P/N — the
back-propagating kernel renormalization (BPKR, Li & Sompolinsky 2021) against an exact Gibbs sampler.

Task: one data set, P training inputs x_mu ~ N(0, I_{n_0}) (n_0 = 2P, so the data are generic), linear
teacher y = 2 w.x / sqrt(n_0), w ~ N(0, I); M test inputs from the same law. Network: L = 1 or 2
hidden linear layers of equal width N, no biases, C_W = 1 in every layer, posterior at temperature T
(likelihood exp(-sum_mu (f - y)^2 / (2T))). alpha = P / N is varied through the width N.

Plotted against alpha (log axis):
  left:  the kernel scale U (renormalized kernel = U K, K the linear NNGP kernel); for BPKR the
         saddle point U* = prod_l u_l, for the sampler and the exact posterior E[U | y];
  right: the generalization error E_g = (1/M) sum_m E[(f(x_m) - y_m)^2 | data] (bias^2 + variance).
Lines: BPKR (:func:`sft.predict.bpkr_posterior`, N -> inf at fixed alpha); thin
dotted: exact finite-N posterior (:func:`exact_posterior`, quadrature over U; differs from BPKR by
O(1/N)); dashed grey: the NNGP (alpha -> 0, U = 1). Points: blocked-Gibbs sampling of the finite
network (:func:`gibbs_sample`, float64), chains x sweeps after burn-in, 1 sigma error bars from the
effective sample size (:func:`sft.sim.effective_sample_size`).
Run ``python sims/fig_kernel_renormalization.py [--quick]`` or ``sft figures --only kernel_renormalization``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.workflow import Figure, run_script
from sft.predict import bpkr_posterior, exact_posterior, gibbs_sample
from sft.sim import effective_sample_size

TASK = dict(temperature=0.5, scale=2.0, depths=[1, 2], data_seed=0, dtype="float64")
QUICK = dict(P=40, M=20, widths=[10, 20, 40], n_chains=4, n_sweeps=300, burn_in=100, n_grid=25, seed=1, **TASK)
FULL = dict(P=100, M=50, widths=[20, 33, 50, 100, 200], n_chains=4, n_sweeps=1200, burn_in=200,
            n_grid=60, seed=1, **TASK)


def task_data(P, M, scale, data_seed):
    """x_train (P, 2P), y_train (P,), x_test (M, 2P), y_test (M,): linear teacher, Gaussian inputs."""
    rng = np.random.default_rng(data_seed)
    n0 = 2 * P
    X, Xt, w = rng.normal(size=(P, n0)), rng.normal(size=(M, n0)), rng.normal(size=n0)
    return X, scale * X @ w / np.sqrt(n0), Xt, scale * Xt @ w / np.sqrt(n0)


def pieces(params):
    """One theory piece per depth, one Gibbs piece per (depth, width) with its own seed."""
    task = {k: params[k] for k in ("P", "M", "temperature", "scale", "data_seed", "dtype")}
    out = {f"theory-L{L}": dict(kind="theory", depth=L, widths=params["widths"], n_grid=params["n_grid"], **task)
           for L in params["depths"]}
    for L in params["depths"]:
        for j, N in enumerate(params["widths"]):
            out[f"gibbs-L{L}-N{N}"] = dict(kind="gibbs", depth=L, widths=[N], n_chains=params["n_chains"],
                                           n_sweeps=params["n_sweeps"], burn_in=params["burn_in"],
                                           seed=params["seed"] + 100 * L + j, **task)
    return out


def _gen_error(pred, y_test):
    return np.mean((pred.mean - y_test) ** 2 + np.diag(pred.cov))


def compute(*, kind, depth, widths, P, M, temperature, scale, data_seed, dtype, n_chains=None,
            n_sweeps=None, burn_in=None, seed=None, n_grid=None):
    """theory: U and E_g of BPKR (dense alpha grid), exact finite N, NNGP. gibbs: their estimates."""
    X, y, Xt, yt = task_data(P, M, scale, data_seed)
    kw = dict(C_W=1.0, temperature=temperature)
    if kind == "theory":
        lo, hi = min(widths) / 1.3, max(widths) * 1.3
        Ns = np.unique(np.geomspace(lo, hi, n_grid).astype(int))
        b = [bpkr_posterior(X, y, Xt, widths=[N] * depth, **kw) for N in Ns]
        e = [exact_posterior(X, y, Xt, widths=[N] * depth, **kw) for N in Ns]
        g = bpkr_posterior(X, y, Xt, widths=[10 ** 12] * depth, **kw)
        return dict(alpha=P / Ns, U_bpkr=[p.U for p in b], U_exact=[p.U for p in e],
                    Eg_bpkr=[_gen_error(p, yt) for p in b], Eg_exact=[_gen_error(p, yt) for p in e],
                    Eg_nngp=_gen_error(g, yt))
    N = widths[0]
    r = gibbs_sample(jax.random.key(seed), X, y, Xt, widths=[N] * depth, n_chains=n_chains,
                     n_sweeps=n_sweeps, burn_in=burn_in, **kw)
    U = np.asarray(r.U)
    Eg = np.mean((np.asarray(r.f) - yt) ** 2, axis=-1)          # (chains, draws)
    est = lambda a: (a.mean(), a.std() / np.sqrt(effective_sample_size(a)), effective_sample_size(a))
    (u, du, ess_u), (eg, deg, ess_eg) = est(U), est(Eg)
    return dict(alpha=P / N, U=u, U_err=du, U_ess=ess_u, Eg=eg, Eg_err=deg, Eg_ess=ess_eg)


def plot(results, params):
    """Two panels against alpha: kernel scale U and generalization error; lines theory, points Gibbs."""
    fig = matplotlib.figure.Figure(figsize=(10.5, 4.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for i, L in enumerate(params["depths"]):
        th, c = results[f"theory-L{L}"], f"C{i}"
        g = [results[f"gibbs-L{L}-N{N}"] for N in params["widths"]]
        a = np.array([r["alpha"] for r in g])
        for ax, q in zip(axes, ("U", "Eg")):
            ax.plot(th["alpha"], th[f"{q}_bpkr"], "-", color=c, label=f"BPKR, L = {L}")
            ax.plot(th["alpha"], th[f"{q}_exact"], ":", color=c, lw=1.2, label=f"exact finite N, L = {L}")
            ax.errorbar(a, [r[q] for r in g], yerr=[r[f"{q}_err"] for r in g], fmt="o", color=c, ms=5,
                        capsize=3, label=f"Gibbs sampler, L = {L}")
    th = results[f"theory-L{params['depths'][0]}"]
    axes[0].axhline(1.0, ls="--", color="0.5", label=r"NNGP ($\alpha \to 0$)")
    axes[1].axhline(float(th["Eg_nngp"]), ls="--", color="0.5", label=r"NNGP ($\alpha \to 0$)")
    axes[0].set_ylabel(r"kernel scale $U$ (posterior kernel $= U\,K_{\rm NNGP}$)")
    axes[1].set_ylabel(r"$E_g = \frac{1}{M}\sum_m \langle (f(x_m) - y_m)^2\rangle$")
    for ax in axes:
        ax.set_xscale("log")
        alphas = sorted(params["P"] / np.array(params["widths"]))
        ax.set_xticks(alphas, [f"{x:.2g}" for x in alphas])
        ax.minorticks_off()
        ax.set_xlabel(r"$\alpha = P/N$ (P fixed, width N varied)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Bayesian deep linear networks: kernel renormalization at finite P/N (BPKR) vs exact Gibbs sampling\n"
        f"P = {params['P']}, $n_0$ = 2P, linear teacher (norm x{params['scale']:g}), M = {params['M']} test "
        f"points, T = {params['temperature']}, $C_W$ = 1, no biases; {params['n_chains']} chains x "
        f"{params['n_sweeps']} sweeps, float64, 1$\\sigma$ (ESS)", fontsize=10)
    return fig


FIGURE = Figure(
    name="kernel_renormalization",
    description="deep linear networks: BPKR kernel scale and generalization error vs alpha = P/N, against Gibbs sampling",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
