"""Figure marginal_likelihood: the NNGP log marginal likelihood surface over (C_W, C_b) near criticality,
for labels drawn from the GP itself, with the maximum-marginal-likelihood fit and its error ellipses.

Data: P inputs in d = 3 (Gaussian directions, log-normal norms, seed), k label columns drawn from
N(0, K_theta + noise I) with K_theta = :func:`sft.kernels.nngp` at the true theta = (C_W, C_b, noise);
C_W at the critical value of the activation (ReLU: C_W* = 2; erf: C_W* = pi/4 = 1/sigma'(0)^2, the
K* = 0 class, PDLT sec. 5.3; both checked against :func:`sft.kernels.critical_initialization`), C_b
small, so the true network sits near the critical point (C_W*, 0).

Fit: :func:`sft.predict.fit_hyperparameters` (L-BFGS-B on log theta with JAX gradients through the
kernel recursion, 3 starts); ellipses: 1 and 2 sigma of the observed-information covariance restricted
to (C_W, C_b) (the marginal of the Laplace approximation). Surface: log p(y | C_W, C_b, noise_fit) on
a grid (jax.vmap of the jitted likelihood), minus its maximum on the grid.

Expected: the truth inside the 2-sigma ellipse in about 86% of draws (chi^2 with 2 degrees of freedom,
if the Laplace approximation holds); a ridge along which C_W and C_b trade off (both raise the readout
variance). White lines: log p - max = -0.5 and -2 on the grid (noise held at its fit). dtype float64. Run ``python sims/fig_marginal_likelihood.py [--quick]`` or
``sft figures --only marginal_likelihood``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np

from sft.kernels import critical_initialization, nngp
from sft.predict.hyperparameters import fit_hyperparameters, log_marginal_likelihood
from sft.workflow import Figure, run_script

#: label -> (activation, critical C_W, true C_b, true noise)
SETTINGS = {"relu": ("relu", 2.0, 0.05, 0.01), "erf": ("erf", np.pi / 4, 0.05, 0.01)}
QUICK = dict(depth=6, P=60, k=4, grid=21, n_starts=3, seed=0, dtype="float64")
FULL = dict(depth=20, P=200, k=8, grid=61, n_starts=5, seed=0, dtype="float64")


def pieces(params):
    return {label: dict(activation=act, C_W=cw, C_b=cb, noise=s2, **params, seed_offset=i)
            for i, (label, (act, cw, cb, s2)) in enumerate(SETTINGS.items())}


def compute(*, activation, C_W, C_b, noise, depth, P, k, grid, n_starts, seed, seed_offset, dtype):
    """Data drawn from the GP, the fit, and the surface log p(C_W, C_b, noise_fit) on a grid."""
    crit = critical_initialization(activation)
    rng = np.random.default_rng(seed + 1000 * seed_offset)
    x = rng.normal(size=(P, 3)) * np.exp(rng.normal(scale=0.5, size=(P, 1)))
    K = nngp(x, depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    y = np.linalg.cholesky(K + noise * np.eye(P)) @ rng.normal(size=(P, k))
    fit = fit_hyperparameters(x, y, depth=depth, activation=activation, n_starts=n_starts, seed=seed)
    cw = np.linspace(0.8 * C_W, 1.2 * C_W, grid)
    cb = np.linspace(0.002, 3 * C_b, grid)
    W, B = np.meshgrid(cw, cb, indexing="ij")
    surface = jax.jit(jax.vmap(lambda w, b, s2: log_marginal_likelihood(
        x, y, depth=depth, activation=activation, C_W=w, C_b=b, noise=s2)))
    grid_logp = lambda s2: np.asarray(surface(jnp.asarray(W.ravel()), jnp.asarray(B.ravel()),
                                              jnp.full(W.size, s2))).reshape(W.shape)
    logp = grid_logp(fit.theta[2])
    if logp.max() > fit.log_marginal_likelihood:
        # L-BFGS from random starts can stall on the flat ordered-phase plateau of a deep erf network
        # (depth 20: log p 1356 at C_W = 0.31 against 1376 on the grid near criticality): refit with the
        # grid's best point as one more start, so the reported optimum is at least as good as the grid.
        i = np.unravel_index(np.argmax(logp), logp.shape)
        starts = np.vstack([fit.starts, [W[i], B[i], fit.theta[2]]])
        fit = fit_hyperparameters(x, y, depth=depth, activation=activation, starts=starts)
        logp = grid_logp(fit.theta[2])
    return dict(truth=np.array([C_W, C_b, noise]), theta=fit.theta, cov=fit.cov, stderr=fit.stderr,
                log_p_fit=np.array(fit.log_marginal_likelihood), C_W_grid=cw, C_b_grid=cb, log_p=logp,
                critical=np.array([crit.C_W, crit.C_b]), n_evaluations=np.array(fit.n_evaluations))


def _ellipse(mean, cov, n_sigma, n=200):
    lam, V = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, n)
    return mean[:, None] + n_sigma * V @ (np.sqrt(np.maximum(lam, 0))[:, None] * np.array([np.cos(t), np.sin(t)]))


def plot(results, params):
    """One panel per activation: contours of log p - max over (C_W, C_b), truth, fit, ellipses."""
    fig = matplotlib.figure.Figure(figsize=(10, 4.3), layout="constrained")
    axes = fig.subplots(1, len(SETTINGS))
    for ax, label in zip(axes, SETTINGS):
        r = results[label]
        d = r["log_p"] - r["log_p"].max()
        cs = ax.contourf(r["C_W_grid"], r["C_b_grid"], np.maximum(d, -60).T, levels=24, cmap="viridis")
        ax.contour(r["C_W_grid"], r["C_b_grid"], d.T, levels=[-2.0, -0.5], colors="w", linewidths=0.6)
        fig.colorbar(cs, ax=ax, label=r"$\log p - \max$ (noise at its fit)")
        for n_sigma, ls in ((1, "-"), (2, "--")):
            if not np.all(np.isfinite(r["cov"][:2, :2])):
                continue  # a flat direction: no finite error ellipse (fit_hyperparameters warned)
            e = _ellipse(r["theta"][:2], r["cov"][:2, :2], n_sigma)
            ax.plot(e[0], e[1], ls, color="C3", lw=1.2, label=f"fit, {n_sigma}$\\sigma$")
        ax.plot(*r["theta"][:2], "o", color="C3", ms=5)
        ax.plot(*r["truth"][:2], "*", color="w", mec="k", ms=13, label="truth")
        ax.axvline(r["critical"][0], color="k", lw=0.8, ls=":", label=f"critical $C_W$ = {r['critical'][0]:.4g}")
        t, s = r["theta"], r["stderr"]
        ax.set_title(f"{label}, depth {params['depth']}: $C_W$ = {t[0]:.3f} $\\pm$ {s[0]:.3f}, "
                     f"$C_b$ = {t[1]:.3f} $\\pm$ {s[1]:.3f},\nnoise = {t[2]:.4f} $\\pm$ {s[2]:.4f} "
                     f"(truth {r['truth'][0]:.3f}, {r['truth'][1]:g}, {r['truth'][2]:g})", fontsize=9)
        ax.set_ylim(0, r["C_b_grid"][-1])
        ax.set_xlabel("$C_W$")
        ax.set_ylabel("$C_b$")
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"NNGP marginal likelihood of GP-drawn labels near criticality: P = {params['P']} inputs, "
                 f"k = {params['k']} label columns\nmaximum-likelihood fit with Laplace error ellipses "
                 f"({params['dtype']})", fontsize=10)
    return fig


FIGURE = Figure(
    name="marginal_likelihood",
    description="NNGP log marginal likelihood over (C_W, C_b) near criticality, fit + error ellipses (relu, erf)",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
