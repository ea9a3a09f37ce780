"""Figure ntk_change: representation learning at O(1/n) -- how much the NTK moves during training, in total
against the depth-to-width ratio L/n and layer by layer (:func:`sft.predict.ntk_change_by_layer_gd` on
:func:`sft.finite.layer_meta_kernels`, summing to :func:`sft.predict.ntk_change_gd`).

Task: 2 training inputs in R^3 (labels (0.5, -0.4)), tanh MLP at criticality (C_W = 1, C_b = 0) with L
hidden layers of width n, NTK parameterization, float64; k = 10 full-batch GD steps with eta = 0.3 x
2/lambda_max(Theta_XX) (per depth). Theta = sum_l Theta^(l) (layer l's weights and biases; l = L + 1 the
readout); Delta Theta = Theta_k - Theta_0 on the 2 x 2 training block.
Left: ||E Delta Theta||_F / ||Theta||_F, the relative change of the MEAN kernel, which is O(1/n):
theory = ||Delta_k(L)||_F / (n ||Theta||_F), a straight line in L/n per depth; points: trained networks.
Middle: log-log against n, the same (filled) and the typical change of ONE network,
(E ||Delta Theta||_F^2)^(1/2) / ||Theta||_F (open; its O(1/n) coefficient needs dNTK-dNTK correlations,
not computed: points only). Both fall like 1/n for tanh (guide lines 1/n and 1/sqrt(n)).
Right: layer by layer, n E[tr Delta Theta^(l)] / tr Theta^(l) (the relative change of layer l's own
contribution, times n) against l / (L + 1); lines: theory, points: the largest width.
Points: Monte Carlo over trained networks (sft.sim.train_layer_ntk, seed per (L, n)), 1 sigma error bars
(standard errors; jackknife, 20 blocks, for the norms). Relu is not shown: its ddNTK diverges at coinciding
inputs, so the O(1/n) theory does not exist for it.
Run ``python sims/fig_ntk_change.py [--quick]`` or ``sft figures --only ntk_change``.
"""
from __future__ import annotations

import functools
import math

import jax
import matplotlib.figure
import matplotlib.ticker
import numpy as np

from sft.finite import layer_meta_kernels, output_meta_kernels
from sft.predict import gd_stability_limit, ntk_change_by_layer_gd
from sft.sim import jackknife, train_layer_ntk
from sft.workflow import Figure, run_script

X = [[-1.0, 0.5, 0.3], [1.3, -0.3, 0.2]]
Y = [0.5, -0.4]
TASK = dict(activation="tanh", C_W=1.0, C_b=0.0, lr_fraction=0.3, n_steps=10)
QUICK = dict(depths=[2, 3], widths=[16, 32], n_ensemble=200, seed=0, dtype="float64", **TASK)
FULL = dict(depths=[2, 3, 4], widths=[32, 64, 128, 256], n_ensemble=2000, seed=0, dtype="float64", **TASK)


@functools.lru_cache(maxsize=8)
def _theory(depth, activation, C_W, C_b, lr_fraction):
    """Meta-kernels on the training inputs and eta (cached: the simulation pieces need eta)."""
    net = dict(depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    mk, lm = output_meta_kernels(np.array(X), **net), layer_meta_kernels(np.array(X), **net)
    return mk, lm, lr_fraction * gd_stability_limit(mk.Theta)


def pieces(params):
    task = {k: params[k] for k in TASK}
    out = {}
    for i, L in enumerate(params["depths"]):
        out[f"theory_L{L}"] = dict(kind="theory", depth=L, **task)
        for j, w in enumerate(params["widths"]):
            out[f"sim_L{L}_n{w}"] = dict(kind="sim", depth=L, width=w, n_ensemble=params["n_ensemble"],
                                        seed=params["seed"] + 100 * i + j, dtype=params["dtype"], **task)
    return out


def compute(*, kind, depth, activation, C_W, C_b, lr_fraction, n_steps, width=None, n_ensemble=None,
            seed=None, dtype=None):
    mk, lm, eta = _theory(depth, activation, C_W, C_b, lr_fraction)
    if kind == "theory":
        _, delta, _ = ntk_change_by_layer_gd(mk, lm, np.array(Y), n_train=2, learning_rate=eta, n_steps=n_steps,
                                             record_every=n_steps)
        return dict(delta=delta[:, -1], theta=mk.Theta, theta_layers=lm.Theta, eta=np.float64(eta))
    _, H = train_layer_ntk(jax.random.key(seed), np.array(X), np.array(Y), np.array(X), n_ensemble=n_ensemble,
                           widths=[width] * depth, activation=activation, C_W=C_W, C_b=C_b, learning_rate=eta,
                           n_steps=n_steps, record_every=n_steps, dtype=dtype)
    d = width * (H[:, -1] - H[:, 0])  # (S, L + 1, 2, 2), n Delta Theta^(l)
    tot = d.sum(1).reshape(len(d), -1)
    norm_mean = jackknife(lambda s: np.array([np.linalg.norm(s.mean(0))]), tot)
    rms = jackknife(lambda s: np.array([math.sqrt(np.mean(np.sum(s ** 2, 1)))]), tot)
    tr = np.trace(d, axis1=2, axis2=3)  # (S, L + 1)
    return dict(norm_mean=norm_mean[0][0], norm_mean_err=norm_mean[1][0], rms=rms[0][0], rms_err=rms[1][0],
                trace=tr.mean(0), trace_err=tr.std(0, ddof=1) / math.sqrt(len(tr)))


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(14, 4.6), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    widths = np.array(params["widths"], dtype=float)
    for i, L in enumerate(params["depths"]):
        th = results[f"theory_L{L}"]
        scale = np.linalg.norm(th["theta"])
        c = np.linalg.norm(th["delta"].sum(0)) / scale  # coefficient of 1/n
        col = f"C{i}"
        xs = np.linspace(0, L / widths.min() * 1.05, 50)
        ax1.plot(xs, c / L * xs, "-", color=col, lw=2, label=f"theory, L = {L}")
        sims = [results[f"sim_L{L}_n{int(w)}"] for w in widths]
        ax1.errorbar(L / widths, [s["norm_mean"] / w / scale for s, w in zip(sims, widths)],
                     [s["norm_mean_err"] / w / scale for s, w in zip(sims, widths)], fmt="o", ms=4, capsize=2,
                     color=col, label=f"trained, L = {L}")
        ax2.plot(widths, c / widths, "-", color=col, lw=1.5)
        ax2.errorbar(widths, [s["norm_mean"] / w / scale for s, w in zip(sims, widths)],
                     [s["norm_mean_err"] / w / scale for s, w in zip(sims, widths)], fmt="o", ms=4, capsize=2,
                     color=col, label=f"L = {L}: mean kernel" + (" (line: theory)" if i == 0 else ""))
        ax2.errorbar(widths, [s["rms"] / w / scale for s, w in zip(sims, widths)],
                     [s["rms_err"] / w / scale for s, w in zip(sims, widths)], fmt="s", ms=4, capsize=2,
                     color=col, mfc="none", label=f"L = {L}: one network (rms)")
        layers = np.arange(1, L + 2) / (L + 1)
        rel = np.trace(th["delta"], axis1=1, axis2=2) / np.trace(th["theta_layers"], axis1=1, axis2=2)
        ax3.plot(layers, rel, "-", color=col, lw=1.5, label=f"theory, L = {L}")
        big = sims[-1]
        ax3.errorbar(layers, big["trace"] / np.trace(th["theta_layers"], axis1=1, axis2=2),
                     big["trace_err"] / np.trace(th["theta_layers"], axis1=1, axis2=2), fmt="o", ms=4,
                     capsize=2, color=col, label=f"trained, L = {L}, n = {int(widths[-1])}")
    ref = results[f"sim_L{params['depths'][0]}_n{int(widths[0])}"]
    th0 = results[f"theory_L{params['depths'][0]}"]
    y0 = ref["rms"] / widths[0] / np.linalg.norm(th0["theta"])
    ax2.plot(widths, y0 * widths[0] / widths, ":", color="0.4", lw=1, label=r"guide $\propto 1/n$")
    ax2.plot(widths, y0 * np.sqrt(widths[0] / widths), "--", color="0.6", lw=1, label=r"guide $\propto 1/\sqrt{n}$")
    ax1.set_xlabel("depth-to-width ratio $L/n$")
    ax1.set_ylabel(r"$\|\mathbb{E}\,\Delta\Theta\|_F \,/\, \|\Theta\|_F$")
    ax1.set_title("relative change of the mean NTK after k steps", fontsize=10)
    ax1.set_xlim(left=0)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xticks(widths, [str(int(w)) for w in widths])
    ax2.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax2.set_xlabel("width $n$")
    ax2.set_ylabel(r"relative change $\|\cdot\|_F / \|\Theta\|_F$")
    ax2.set_title("mean kernel (filled) vs one network (open, rms)", fontsize=10)
    ax3.set_xlabel("layer $l / (L+1)$  (readout at 1)")
    ax3.set_ylabel(r"$n\,\mathbb{E}[\mathrm{tr}\,\Delta\Theta^{(l)}] \,/\, \mathrm{tr}\,\Theta^{(l)}$")
    ax3.set_title("layer by layer: relative change of layer l's NTK", fontsize=10)
    for ax in (ax1, ax2, ax3):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax3.axhline(0, color="0.8", lw=0.8, zorder=0)
    fig.suptitle(
        f"NTK change during training at O(1/n): {params['activation']} at criticality ($C_W$ = {params['C_W']}, "
        f"$C_b$ = {params['C_b']}), 2 training inputs, k = {params['n_steps']} GD steps, "
        f"$\\eta$ = {params['lr_fraction']} x stability limit; {params['n_ensemble']} networks per point, "
        "float64, 1$\\sigma$", fontsize=10)
    return fig


FIGURE = Figure(
    name="ntk_change",
    description="O(1/n) NTK change during training (representation learning) against L/n and layer by layer: "
                "theory vs trained networks",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
