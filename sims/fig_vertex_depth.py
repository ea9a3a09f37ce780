"""Figure vertex_depth: the normalized four-point vertex of the readout grows like nu L/n, theory against
finite-width ensembles of several widths that collapse when plotted against depth / width.

    y = V^(L+1) / (n K^(L+1)^2) = (excess kurtosis of one output) / 3,   x = L / n,

for networks of L hidden layers of width n at criticality: ReLU (C_W = 2), tanh (C_W = 1) and
linear (C_W = 1), all with C_b = 0, one input with |x|^2 / n_0 = 1 (K^(1) = C_W).

Theory (solid lines): :func:`sft.finite.single_input`, first order in 1/n, drawn per width at
L = 1, 2, ..; for ReLU and linear V^(L+1) = nu L K^2 at every L, so these coincide with the dashed
line. Dashed: the asymptotic slope, y = nu L / n with nu = 5 (ReLU), 2 (linear) from
:func:`sft.finite.nu_scale_invariant` and nu -> 2/3 (tanh, K* = 0 class, approached with
O(log L / L) corrections) from :func:`sft.finite.nu_from_recursion` at L = 2000. Dotted: the
exact law at width n for the scale-invariant class, Var(G)/E[G]^2 = (1 + nu/n)^L - 1
(:func:`sft.finite.metric_relative_variance`), which bends away from the first-order line once
nu L / n is no longer small (its n -> inf limit at fixed L/n is exp(nu L/n) - 1).

Simulation (points): per network s the readout metric G_s^(L+1) of :func:`sft.sim.layer_kernels`
(given layer L the output is exactly N(0, G_s)), so y_hat = k2(G) / mean(G)^2 over the ensemble
(:func:`sft.sim.relative_variance`, delete-a-block jackknife, 20 blocks, 1 sigma): the
variance-reduced estimator of the output's excess kurtosis / 3 (no Gaussian noise of the outputs).
One ensemble of depth L_max = x_max n gives every L <= L_max (layer L + 1 of that network).
dtype float64. Run ``python sims/fig_vertex_depth.py [--quick]`` or ``sft figures --only vertex_depth``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.finite import metric_relative_variance
from sft.sim import relative_variance
from sft.workflow import Figure, run_script
from sft.finite import nu_from_recursion, nu_scale_invariant, single_input
from sft.sim import layer_kernels

#: label -> (activation, C_W, C_b, slopes (a+, a-) if scale-invariant else None, title)
SETTINGS = {
    "relu": ("relu", 2.0, 0.0, (1.0, 0.0), "ReLU, $C_W$ = 2"),
    "tanh": ("tanh", 1.0, 0.0, None, "tanh, $C_W$ = 1"),
    "linear": ("linear", 1.0, 0.0, (1.0, 1.0), "linear, $C_W$ = 1"),
}
QUICK = dict(widths=[16, 32, 64], x_max=0.25, n_ensemble=2000, d=4, seed=0, dtype="float64")
FULL = dict(widths=[16, 32, 64], x_max=0.25, n_ensemble=20000, d=4, seed=0, dtype="float64")


def pieces(params):
    """One piece per (activation, width), each with its own seed; depth = x_max * width."""
    out = {}
    for i, (label, (activation, C_W, C_b, _, _)) in enumerate(SETTINGS.items()):
        for j, width in enumerate(params["widths"]):
            out[f"{label}_n{width}"] = dict(
                activation=activation, C_W=C_W, C_b=C_b, width=width,
                depth=max(1, round(params["x_max"] * width)), n_ensemble=params["n_ensemble"],
                d=params["d"], seed=params["seed"] + 100 * i + j, dtype=params["dtype"])
    return out


def compute(*, activation, C_W, C_b, width, depth, n_ensemble, d, seed, dtype):
    """For L = 1 .. depth: theory, exact law (NaN unless scale-invariant), ensemble estimate and error."""
    label = next(k for k, v in SETTINGS.items() if v[0] == activation)
    slopes = SETTINGS[label][3]
    x = np.zeros((1, d))
    x[0, 0] = np.sqrt(d)  # |x|^2 / d = 1
    th = single_input(C_W, depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    G = layer_kernels(jax.random.key(seed), x, n_ensemble=n_ensemble, widths=[width] * depth,
                      activation=activation, C_W=C_W, C_b=C_b, dtype=dtype)
    sim, err = relative_variance(np.asarray(G, dtype=np.float64)[:, 1:, 0, 0])
    L = np.arange(1, depth + 1)
    exact = np.array([metric_relative_variance([width] * l, a_plus=slopes[0], a_minus=slopes[1])
                      if slopes else np.nan for l in L])
    if slopes:
        nu = nu_scale_invariant(*slopes)
    else:
        nu = nu_from_recursion(activation, C_W=C_W, C_b=C_b, K1=C_W, depth=2000)
    return dict(L=L, theory=th.V[1:] / (width * th.K[1:] ** 2), exact=exact, sim=sim, sim_err=err,
                nu=np.float64(nu))


def plot(results, params):
    """Three panels (ReLU, tanh, linear): y against L/n. Lines theory, points ensembles (colour = width)."""
    fig = matplotlib.figure.Figure(figsize=(12, 4.3), layout="constrained")
    axes = fig.subplots(1, 3)
    widths = params["widths"]
    style = {w: (f"C{k}", m) for k, (w, m) in enumerate(zip(widths, "osD^v"))}
    x_max = params["x_max"]
    for ax, (label, (_, _, _, slopes, title)) in zip(axes, SETTINGS.items()):
        nu = float(results[f"{label}_n{widths[0]}"]["nu"])
        xs = np.linspace(0, x_max * 1.04, 50)
        for width in widths:
            r = results[f"{label}_n{width}"]
            color, marker = style[width]
            x = r["L"] / width
            ax.plot(np.r_[0, x], np.r_[0, r["theory"]], "-", color=color, lw=1.2, alpha=0.8, zorder=1)
            if slopes:
                ax.plot(np.r_[0, x], np.r_[0, r["exact"]], ":", color=color, lw=1.4, zorder=1)
            ax.errorbar(x, r["sim"], yerr=r["sim_err"], fmt=marker, ms=4, color=color, mfc="white",
                        mew=1.1, capsize=2, lw=0.9, zorder=3)
        ax.plot(xs, nu * xs, "--", color="k", lw=1.1, zorder=2)
        ax.set_title(title + r",  $C_b$ = 0", fontsize=10)
        ax.set_xlim(0, x_max * 1.04)
        ax.set_ylim(0, None)
        ax.set_xlabel(r"depth / width  $L/n$")
        ax.grid(True, alpha=0.3)
        note = ("\nfirst-order theory = asymptote" if slopes else r"  ($\to 2/3$ as $L \to \infty$)")
        ax.text(0.04, 0.96, rf"slope $\nu$ = {nu:.3g}" + note, transform=ax.transAxes, va="top",
                fontsize=9)
    axes[0].set_ylabel(r"$V^{(L+1)}/(n\,K^{(L+1)\,2})$  = (excess kurtosis of $f$)/3")
    handles = [axes[0].plot([], [], "-", color="0.4", lw=1.2)[0],
               axes[0].plot([], [], ":", color="0.4", lw=1.4)[0],
               axes[0].plot([], [], "--", color="k", lw=1.1)[0]]
    names = [r"theory, first order in $1/n$", r"exact at width $n$ (ReLU, linear): $(1+\nu/n)^L-1$",
             r"asymptote $\nu L/n$"]
    for width in widths:
        color, marker = style[width]
        handles.append(axes[0].errorbar([], [], yerr=[], fmt=marker, ms=4, color=color, mfc="white",
                                        capsize=2, lw=0.9))
        names.append(f"$n$ = {width}: {params['n_ensemble']} networks")
    fig.legend(handles, names, fontsize=8.5, loc="outside lower center", ncol=4)
    fig.suptitle("Four-point vertex of the output at criticality against depth/width: ensembles of all "
                 r"widths nearly collapse in $L/n$; first-order theory holds while $\nu L/n \ll 1$"
                 "\n(lines: theory; points: ensembles, one input, float64, per-network metric estimator, "
                 r"jackknife 1$\sigma$)", fontsize=10)
    return fig


FIGURE = Figure(
    name="vertex_depth",
    description="normalized four-point vertex V/(nK^2) of the output vs L/n, relu/tanh/linear: theory vs ensembles",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
