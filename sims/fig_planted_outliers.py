"""Figure planted_outliers: a planted circuit separates from the random background at a threshold
(BBP transition), and its outlier and overlap follow the T-matrix of the background's resolvent.

Models (sft.circuits.planted, float64, one circuit of strength theta, direction Haar-random):
    Wigner:      W = G_sym / sqrt(n) + theta u u^T        (GOE background, semicircle on [-2, 2])
    rectangular: W = G / sqrt(m) + theta u v^T,  n x m, c = n / m = 1/2   (bulk singular values <= 1 + sqrt c)

Theory (lines; sft.circuits.wigner_outlier / rectangular_outlier, equal to the T-matrix roots of
det(1 - Theta M(z)) = 0 from sft.circuits.t_matrix_outliers, checked in tests/test_planted.py):
    Wigner:      lambda = theta + 1/theta, |<psi, u>|^2 = 1 - 1/theta^2 for theta > 1; else bulk edge 2, overlap 0;
    rectangular: sigma = sqrt((1 + theta^2)(c + theta^2)) / theta, theta > c^(1/4); overlaps in sft.circuits.planted.
Simulation (points): R independent draws per (n, theta) by sft.circuits.simulate_wigner_outliers /
simulate_rectangular_outliers or, by default (params backend="jax"), their JAX versions
simulate_wigner_outliers_jax / simulate_rectangular_outliers_jax (same law, tested against the same theory); mean +- standard error
over the draws (1 sigma). Below threshold the top eigenvalue sits at the bulk edge up to O(n^{-2/3})
and the overlap decays like 1/n; above it, the finite-n bias is O(1/n).
Run ``python sims/fig_planted_outliers.py [--quick]`` or ``sft figures --only planted_outliers``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.workflow import Figure, run_script
from sft.circuits import (rectangular_outlier, simulate_rectangular_outliers, simulate_rectangular_outliers_jax,
                         simulate_wigner_outliers, simulate_wigner_outliers_jax, wigner_outlier)

C = 0.5
# backend "jax": sft.circuits.planted.simulate_*_outliers_jax (jit + vmap); "numpy": the numpy versions (LAPACK eigh).
# On a CPU shared by many processes, run with OMP_NUM_THREADS=1 and
# XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" (oversubscribed threads: ~10x slower).
QUICK = dict(thetas=[0.4, 0.8, 1.2, 1.6, 2.0, 2.6], ns=[50, 200], n_draws=8, c=C, seed=0, dtype="float64",
             backend="jax")
FULL = dict(thetas=[0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0], ns=[64, 200, 600],
            n_draws=16, c=C, seed=0, dtype="float64", backend="jax")


def pieces(params):
    """One piece per (model, n), each with its own seed."""
    out = {}
    for j, n in enumerate(params["ns"]):
        for kind in ("wigner", "rect"):
            out[f"{kind}_n{n}"] = dict(kind=kind, n=n, thetas=params["thetas"], n_draws=params["n_draws"],
                                       c=params["c"], seed=params["seed"] + 2 * j + (kind == "rect"),
                                       dtype=params["dtype"], backend=params["backend"])
    return out


def compute(*, kind, n, thetas, n_draws, c, seed, dtype, backend):
    """Mean and standard error over draws of the top eigenvalue (singular value) and overlap(s), per theta."""
    if backend == "jax":
        keys = jax.random.split(jax.random.key(seed), len(thetas))
        wig = lambda th, j: simulate_wigner_outliers_jax(n, [th], n_draws, key=keys[j])
        rect = lambda th, j: simulate_rectangular_outliers_jax(n, int(round(n / c)), [th], n_draws, key=keys[j])
    else:
        wig = lambda th, j: simulate_wigner_outliers(n, [th], n_draws, seed=1000 * seed + j)
        rect = lambda th, j: simulate_rectangular_outliers(n, int(round(n / c)), [th], n_draws, seed=1000 * seed + j)
    stats = {}
    for j, th in enumerate(thetas):
        if kind == "wigner":
            d = wig(th, j)
            vals = dict(top=d["eigenvalues"][:, 0], left=d["overlaps"][:, 0])
        else:
            d = rect(th, j)
            vals = dict(top=d["singular_values"][:, 0], left=d["left"][:, 0], right=d["right"][:, 0])
        for name, v in vals.items():
            stats.setdefault(name, []).append(v.mean())
            stats.setdefault(name + "_se", []).append(v.std(ddof=1) / np.sqrt(n_draws))
    return {k: np.array(v) for k, v in stats.items()}


def plot(results, params):
    """2 x 2: (Wigner, rectangular) x (outlier, overlap); lines theory, points simulation per n."""
    fig = matplotlib.figure.Figure(figsize=(11, 8.2), layout="constrained")
    ax = fig.subplots(2, 2)
    th = np.array(params["thetas"])
    tt = np.linspace(0.05, th.max() * 1.05, 400)
    c = params["c"]
    lam, ov = wigner_outlier(tt)
    sig, left, right = rectangular_outlier(tt, c)
    ax[0, 0].plot(tt, lam, "k-", lw=1.5, label=r"theory: $\theta + 1/\theta$ ($\theta > 1$), edge 2 below")
    ax[1, 0].plot(tt, ov, "k-", lw=1.5, label=r"theory: $1 - 1/\theta^2$")
    ax[0, 1].plot(tt, sig, "k-", lw=1.5, label=r"theory: $\sqrt{(1+\theta^2)(c+\theta^2)}/\theta$, edge $1+\sqrt{c}$ below")
    ax[1, 1].plot(tt, left, "k-", lw=1.5, label=r"theory, left $|\langle\tilde u, u\rangle|^2$")
    ax[1, 1].plot(tt, right, "k--", lw=1.5, label=r"theory, right $|\langle\tilde v, v\rangle|^2$")
    ns = params["ns"]
    for j, n in enumerate(ns):
        col, dx = f"C{j}", (j - (len(ns) - 1) / 2) * 0.018
        w, r = results[f"wigner_n{n}"], results[f"rect_n{n}"]
        kw = dict(color=col, capsize=2.5, ms=5, lw=1)
        ax[0, 0].errorbar(th + dx, w["top"], w["top_se"], fmt="o", label=f"simulation, n = {n}", **kw)
        ax[1, 0].errorbar(th + dx, w["left"], w["left_se"], fmt="o", label=f"simulation, n = {n}", **kw)
        ax[0, 1].errorbar(th + dx, r["top"], r["top_se"], fmt="o", label=f"simulation, {n} x {int(round(n / c))}", **kw)
        ax[1, 1].errorbar(th + dx, r["left"], r["left_se"], fmt="o", label=f"left, {n} x {int(round(n / c))}", **kw)
        ax[1, 1].errorbar(th + dx, r["right"], r["right_se"], fmt="s", mfc="white", label=f"right, {n} x {int(round(n / c))}", **kw)
    for a in ax[:, 0]:
        a.axvline(1.0, color="0.5", ls=":", label=r"threshold $\theta_c = 1$")
    for a in ax[:, 1]:
        a.axvline(c ** 0.25, color="0.5", ls=":", label=rf"threshold $\theta_c = c^{{1/4}}$ = {c ** 0.25:.3f}")
    ax[0, 0].axhline(2.0, color="0.7", lw=0.8, label="bulk edge 2")
    ax[0, 1].axhline(1 + np.sqrt(c), color="0.7", lw=0.8, label=r"bulk edge $1 + \sqrt{c}$")
    ax[0, 0].set(ylabel=r"top eigenvalue $\lambda_{\max}(W)$",
                 title=r"Wigner: $W = G_{\rm sym}/\sqrt{n} + \theta\, u u^T$ (bulk $[-2, 2]$)")
    ax[1, 0].set(ylabel=r"overlap $|\langle \psi_{\max}, u\rangle|^2$")
    ax[0, 1].set(ylabel=r"top singular value $\sigma_{\max}(W)$",
                 title=rf"rectangular $n \times m$: $W = G/\sqrt{{m}} + \theta\, u v^T$, $c = n/m$ = {c:g}")
    ax[1, 1].set(ylabel="squared overlaps of the top singular vectors")
    for a in ax.ravel():
        a.set_xlabel(r"circuit strength $\theta$")
        a.grid(alpha=0.3)
    for a in ax[0]:
        a.legend(fontsize=7.5, loc="upper left")
    for a in ax[1]:
        a.legend(fontsize=7.5, loc="lower right")
        a.set_ylim(-0.05, 1.05)
    fig.suptitle("A planted low-rank circuit in a Gaussian background: BBP threshold, outlier and overlap "
                 "(T-matrix in the circuit subspace)\n"
                 f"points: {params['n_draws']} draws per point ({params['backend']}, float64), mean $\\pm$ 1 standard error; "
                 "lines: infinite-n theory", fontsize=10)
    return fig


FIGURE = Figure(
    name="planted_outliers",
    description="planted circuit in a random matrix: BBP threshold, outlier and overlap vs strength (Wigner, rectangular)",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
