"""Figure correlation_depth: how the correlation of two inputs flows with depth, at and away from
criticality, infinite-width theory against finite-width ensembles.

    rho^(l) = K^(l)_12 / sqrt(K^(l)_11 K^(l)_22),   l = 1 .. depth + 1   (layer depth+1: the readout).

Theory (lines): K^(l) from :func:`sft.kernels.nngp` (PDLT eq. (4.118)). Simulation (points): for
each network s the stochastic metric G_s^(l) of :func:`sft.sim.layer_kernels`, whose ensemble
mean is exactly E[z^(l) z^(l)] at width n; rho is the ratio estimator
rho_hat = mean_s G_12 / sqrt(mean_s G_11 mean_s G_22), with a delete-one jackknife error bar.
Finite-width means differ from K^(l) by O(l/n) (PDLT ch. 5), hence two widths.

Expected (PDLT sec. 5.2-5.3): ReLU at criticality (C_W = 2, C_b = 0) 1 - rho -> (9 pi^2 / 2) l^-2, a
power law (reached slowly: half of it at l = 30); in the ordered phase (chi_perp < 1, e.g. ReLU
with C_W < 2, C_b > 0) 1 - rho decays exponentially; tanh at criticality (C_W = 1, C_b = 0, the
K* = 0 class) has K^(l) -> 0 like 1/l, the network becomes nearly linear and rho freezes (1 - rho
drifts from 0.50 to 0.56 over 30 layers); tanh in the chaotic phase (C_W > 1, C_b = 0) decorrelates
the inputs, rho -> 0. Finite-width ensembles deviate from these by O(l/n), most visibly at
criticality where 1 - rho is small yet decays slowly.

Inputs: two vectors in d = 16 with x.x / d = 1 and x_1.x_2 / d = rho0 = 0.5. dtype float64.
Run ``python sims/fig_correlation_depth.py [--quick]`` or ``sft figures --only correlation_depth``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.sim import jackknife
from sft.workflow import Figure, run_script
from sft.kernels import nngp
from sft.sim import layer_kernels

#: label -> (activation, C_W, C_b, regime); the regimes are those of the module docstring.
SETTINGS = {
    "relu_critical": ("relu", 2.0, 0.0, "critical"),
    "relu_ordered": ("relu", 1.5, 0.2, "ordered"),
    "tanh_critical": ("tanh", 1.0, 0.0, "critical"),
    "tanh_ordered": ("tanh", 0.8, 0.1, "ordered"),
    "tanh_chaotic": ("tanh", 1.5, 0.0, "chaotic"),
}
QUICK = dict(depth=10, widths=[64], n_ensemble=32, d=16, rho0=0.5, seed=0, dtype="float64")
FULL = dict(depth=30, widths=[64, 256], n_ensemble=200, d=16, rho0=0.5, seed=0, dtype="float64")


def two_inputs(d, rho0):
    """x of shape (2, d) with x_a.x_a / d = 1 and x_1.x_2 / d = rho0."""
    x = np.zeros((2, d))
    x[0, 0] = np.sqrt(d)
    x[1, :2] = np.sqrt(d) * np.array([rho0, np.sqrt(1.0 - rho0 ** 2)])
    return x


def one_minus_correlation(K):
    """1 - K_12 / sqrt(K_11 K_22) over the leading axes of K (..., 2, 2)."""
    return 1.0 - K[..., 0, 1] / np.sqrt(K[..., 0, 0] * K[..., 1, 1])


def ratio_one_minus_correlation(G):
    """Ratio estimate of 1 - rho from an ensemble G (S, ..., 2, 2), with its delete-one jackknife error.

    theta = f(mean_s G) with f = :func:`one_minus_correlation`; error from
    :func:`sft.sim.jackknife` with one block per network (Efron & Tibshirani 1993, eq. 11.5).
    """
    return jackknife(lambda g: one_minus_correlation(g.mean(axis=0)), G, n_blocks=G.shape[0])


def pieces(params):
    """One piece per (setting, width), each with its own seed."""
    out = {}
    for i, (label, (activation, C_W, C_b, _)) in enumerate(SETTINGS.items()):
        for j, width in enumerate(params["widths"]):
            out[f"{label}_n{width}"] = dict(
                activation=activation, C_W=C_W, C_b=C_b, depth=params["depth"], width=width,
                n_ensemble=params["n_ensemble"], d=params["d"], rho0=params["rho0"],
                seed=params["seed"] + 100 * i + j, dtype=params["dtype"])
    return out


def compute(*, activation, C_W, C_b, depth, width, n_ensemble, d, rho0, seed, dtype):
    """Theory and ensemble 1 - rho^(l) for layers l = 1 .. depth + 1."""
    x = two_inputs(d, rho0)
    K = nngp(x, depth=depth, activation=activation, C_W=C_W, C_b=C_b, all_layers=True)
    G = layer_kernels(jax.random.key(seed), x, n_ensemble=n_ensemble, widths=[width] * depth,
                      activation=activation, C_W=C_W, C_b=C_b, dtype=dtype)
    sim, err = ratio_one_minus_correlation(np.asarray(G, dtype=np.float64))
    return dict(layer=np.arange(1, depth + 2), theory=one_minus_correlation(K), sim=sim, sim_err=err)


def plot(results, params):
    """Columns ReLU, tanh; top row 1 - rho on log-log axes (power law vs exponential), bottom row rho
    on a linear axis (frozen vs decorrelating). Theory lines, ensemble points with error bars."""
    fig = matplotlib.figure.Figure(figsize=(10, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True, sharey="row", height_ratios=[3, 2])
    colors = {"critical": "C0", "ordered": "C3", "chaotic": "C2"}
    widths = params["widths"]
    markers = dict(zip(sorted(widths, reverse=True), ["o", "s", "^", "D"]))
    ticks = [l for l in (1, 2, 3, 5, 10, 20, 30, 50, 100) if l <= params["depth"] + 1]
    for col, (act_name, title) in enumerate((("relu", "ReLU"), ("tanh", "tanh"))):
        for label, (activation, C_W, C_b, regime) in SETTINGS.items():
            if activation != act_name:
                continue
            color = colors[regime]
            for row, (ax, sign) in enumerate(zip(axes[:, col], (1.0, -1.0))):
                shift = 0.0 if row == 0 else 1.0  # row 0: 1 - rho, row 1: rho = 1 - (1 - rho)
                first = results[f"{label}_n{widths[0]}"]
                ax.plot(first["layer"], shift + sign * first["theory"], "-", color=color, lw=1.6,
                        zorder=1, label=f"{regime}: $C_W$={C_W:g}, $C_b$={C_b:g}")
                for width in widths:
                    r = results[f"{label}_n{width}"]
                    ax.errorbar(r["layer"], shift + sign * r["sim"], yerr=r["sim_err"],
                                fmt=markers[width], ms=3.5, color=color, capsize=1.5, lw=0.8,
                                mfc=color if width == max(widths) else "white", zorder=2)
        axes[0, col].set_title(title)
        axes[0, col].set_yscale("log")
        axes[1, col].set_xlabel(f"layer $l$  ($l$ = {params['depth'] + 1}: readout)")
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel(r"$1-\rho^{(l)}$")
    axes[1, 0].set_ylabel(r"$\rho^{(l)}$")
    axes[1, 0].set_ylim(0, 1.02)
    for width in widths:  # legend entries for the widths
        axes[0, 1].errorbar([], [], yerr=[], fmt=markers[width], color="k", ms=3.5, capsize=1.5,
                            lw=0.8, mfc="k" if width == max(widths) else "white",
                            label=f"{params['n_ensemble']} networks of width {width}")
    axes[0, 0].legend(fontsize=8, loc="lower left", title="theory (lines)", title_fontsize=8)
    axes[0, 1].legend(fontsize=8, loc="lower left", title="theory (lines), ensembles (points)",
                      title_fontsize=8)
    fig.suptitle(r"Correlation $\rho^{(l)} = K^{(l)}_{12}/\sqrt{K^{(l)}_{11}K^{(l)}_{22}}$ of two "
                 f"inputs with $x_1\\cdot x_2/|x|^2$ = {params['rho0']:g}: infinite-width theory and "
                 f"finite-width ensembles ({params['dtype']}, jackknife 1$\\sigma$)", fontsize=10)
    return fig


FIGURE = Figure(
    name="correlation_depth",
    description="1 - rho^(l) of two inputs vs layer, ReLU/tanh at/off criticality: theory vs ensembles",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
