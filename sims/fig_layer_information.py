"""Figure layer_information: information of one neuron of layer l about itself at precision sigma,
I_l(sigma) = I(Z; Z + sigma eps), against depth l, over the parameter ensemble at two fixed inputs.

Z = (z^(l)_1(x_a), z^(l)_1(x_b)) is one neuron of layer l (l = 1..5; depth 4, layer 5 the readout) of a
tanh MLP, C_b = 0, at criticality (C_W = 1) and off it (C_W = 0.7: the kernel dies exponentially;
C_W = 1.5: it flows to a nonzero fixed point); inputs x_a = sqrt(2) (1, 0), x_b = sqrt(2) (0.6, 0.8)
(|x|^2 / n_0 = 1). Precision scales sigma = 0.03 .. 1 (colours). Units: nats.
- solid lines: infinite width, (1/2) log det(I + K^(l)/sigma^2) (:func:`sft.predict.layer_information`);
- dashed: with the O(1/n) kernel shift and the vertex's O(1/n^2) term at hidden width n;
- filled points: Monte Carlo over S networks of width n, the exact conditional law of the neuron given
  the previous layer (per-network metrics, :func:`sft.sim.sample_metrics`, float64) and
  :func:`sft.sim.scale_mixture_information` (1 sigma error from the per-sample influence);
- open squares: KSG (k = 3) on the S samples (Z, Y) of the same networks (one neuron per network);
  open triangles: the Gaussian plug-in on them. Error bars: the std over 4 disjoint quarters of the
  samples / 2 (KSG, plug-in). KSG falls below the truth where I is large (small sigma): its known
  saturation (about log S) on nearly deterministic maps.
Bottom row: the finite-width part n (I - I_inf): solid the O(1/n) coefficient (1/2) tr[(K + sigma^2)^{-1} G1]
(negative for tanh: G1 < 0 lowers the kernel), dashed adding n times the vertex's O(1/n^2) term; points the
Monte Carlo n (I_MC - I_inf) with n times its error bar.
Third row: n times the information between the whole layer l-1 and the noisy neuron of layer l,
I(layer l-1; Z_l + sigma eps) = I(G^(l); Y) (Markov), at O(1/n) (1/(4n)) sum M^-1 V M^-1 (lines, field ``metric``
of :func:`sft.predict.layer_information`; zero at infinite width), points :func:`sft.sim.metric_information`
on the same networks.
Run ``python sims/fig_layer_information.py [--quick]`` or ``sft figures --only layer_information``.
"""
from __future__ import annotations

import matplotlib.figure
import numpy as np

from sft.predict import layer_information
from sft.sim import (gaussian_plugin_information, ksg_information, metric_information, sample_metrics,
                     scale_mixture_information)
from sft.workflow import Figure, run_script

DEPTH = 4
X = np.sqrt(2.0) * np.array([[1.0, 0.0], [0.6, 0.8]])
SETTINGS = {"ordered": 0.7, "critical": 1.0, "chaotic": 1.5}     # label -> C_W (tanh, C_b = 0)
QUICK = dict(sigmas=[0.03, 0.3, 1.0], width=32, n_networks=600, seed=0, dtype="float64")
FULL = dict(sigmas=[0.03, 0.1, 0.3, 1.0], width=32, n_networks=5000, seed=0, dtype="float64")


def pieces(params):
    return {label: dict(C_W=C_W, sigmas=params["sigmas"], width=params["width"],
                        n_networks=params["n_networks"], seed=params["seed"] + i, dtype=params["dtype"])
            for i, (label, C_W) in enumerate(SETTINGS.items())}


def compute(*, C_W, sigmas, width, n_networks, seed, dtype):
    if dtype != "float64":
        raise ValueError(f"dtype={dtype!r} is not allowed: this figure samples in float64")
    th = layer_information(X, depth=DEPTH, activation="tanh", C_W=C_W, C_b=0.0, sigma=sigmas, widths=width)
    rng = np.random.default_rng(seed)
    G = sample_metrics(rng, C_W * X @ X.T / 2, widths=[width] * DEPTH, activation="tanh", C_W=C_W, C_b=0.0,
                       n_networks=n_networks)
    shape = (len(sigmas), DEPTH + 1)
    mc, mc_err, ksg, ksg_err, gp, gp_err, mi, mi_err = (np.zeros(shape) for _ in range(8))
    for l in range(DEPTH + 1):
        lam, vec = np.linalg.eigh(G[:, l])
        Z = np.einsum("sab,sb->sa", vec * np.sqrt(np.clip(lam, 0, None))[:, None, :],
                      rng.standard_normal((n_networks, 2)))
        for j, s in enumerate(sigmas):
            mc[j, l], mc_err[j, l] = scale_mixture_information(G[:, l], s, rng=rng)
            if l > 0:       # layer 1 is deterministic given the inputs: I(inputs; Y_1) is not a layer-to-layer term
                mi[j, l], mi_err[j, l] = metric_information(G[:, l], s, rng=rng)
            Y = Z + s * rng.standard_normal(Z.shape)
            for out, err, fn in ((ksg, ksg_err, ksg_information), (gp, gp_err, gaussian_plugin_information)):
                out[j, l] = fn(Z, Y)
                quarters = [fn(Z[q::4], Y[q::4]) for q in range(4)]
                err[j, l] = np.std(quarters, ddof=1) / 2.0
    return dict(infinite=th.infinite, corrected=th.first_order + th.vertex_term, shift=th.shift,
                vertex=th.vertex_term, metric=th.metric, mi=mi, mi_err=mi_err, mc=mc, mc_err=mc_err,
                ksg=ksg, ksg_err=ksg_err, gauss=gp, gauss_err=gp_err)


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(13, 11.5), layout="constrained")
    grid = fig.subplots(3, len(SETTINGS), sharey="row", height_ratios=[1.3, 1, 1])
    axes = grid[0]
    layers = np.arange(1, DEPTH + 2)
    n = params["width"]
    for ax, ax2, ax3, (label, C_W) in zip(axes, grid[1], grid[2], SETTINGS.items()):
        r = results[label]
        for j, s in enumerate(params["sigmas"]):
            c = f"C{j}"
            ax3.plot(layers[1:], n * r["metric"][j, 1:], "-", color=c, lw=1.6)
            ax3.errorbar(layers[1:] + 0.05 * (j - 1.5), n * r["mi"][j, 1:], yerr=n * r["mi_err"][j, 1:], fmt="o",
                         ms=4, color=c, capsize=2, lw=0.9, zorder=3)
        ax3.axhline(0.0, color="0.6", lw=0.6)
        ax3.set_xticks(layers)
        ax3.set_xlabel("layer $l$ (5 = readout)")
        ax3.grid(True, alpha=0.25)
        for j, s in enumerate(params["sigmas"]):
            c = f"C{j}"
            ax2.plot(layers, r["shift"][j], "-", color=c, lw=1.6)
            ax2.plot(layers, r["shift"][j] + n * r["vertex"][j], "--", color=c, lw=1.2)
            ax2.errorbar(layers + 0.05 * (j - 1.5), n * (r["mc"][j] - r["infinite"][j]), yerr=n * r["mc_err"][j],
                         fmt="o", ms=4, color=c, capsize=2, lw=0.9, zorder=3)
        ax2.axhline(0.0, color="0.6", lw=0.6)
        ax2.set_xticks(layers)
        ax2.grid(True, alpha=0.25)
        for j, s in enumerate(params["sigmas"]):
            c = f"C{j}"
            ax.plot(layers, r["infinite"][j], "-", color=c, lw=1.6)
            ax.plot(layers, r["corrected"][j], "--", color=c, lw=1.2)
            ax.errorbar(layers - 0.08, r["mc"][j], yerr=r["mc_err"][j], fmt="o", ms=4, color=c, capsize=2,
                        lw=0.9, zorder=3)
            ax.errorbar(layers + 0.08, r["ksg"][j], yerr=r["ksg_err"][j], fmt="s", ms=4, color=c, mfc="white",
                        capsize=2, lw=0.9, zorder=3)
            ax.errorbar(layers + 0.16, r["gauss"][j], yerr=r["gauss_err"][j], fmt="^", ms=4, color=c,
                        mfc="white", capsize=2, lw=0.9, zorder=3)
        ax.set_xticks(layers)
        ax.set_yscale("log")
        ax.set_title(f"tanh, $C_W$ = {C_W}, $C_b$ = 0 ({label})", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel(r"$I(Z;\,Z+\sigma\varepsilon)$ of one neuron (nats)")
    grid[1, 0].set_ylabel(r"$n\,(I - I_\infty)$ (nats)")
    grid[2, 0].set_ylabel("$n\\,I$(layer $l-1$; $Z_l+\\sigma\\varepsilon$) (nats)")
    ax = axes[0]
    h = [ax.plot([], [], "-", color="0.3", lw=1.6)[0], ax.plot([], [], "--", color="0.3", lw=1.2)[0],
         ax.errorbar([], [], yerr=[], fmt="o", color="0.3", capsize=2),
         ax.errorbar([], [], yerr=[], fmt="s", color="0.3", mfc="white", capsize=2),
         ax.errorbar([], [], yerr=[], fmt="^", color="0.3", mfc="white", capsize=2)]
    names = ["theory: top infinite width (NNGP log-det); middle the $O(1/n)$ coefficient "
             r"$\frac{1}{2}\mathrm{tr}[(K+\sigma^2)^{-1}G_1]$; bottom $\frac{1}{4}M^{-1}VM^{-1}$",
             f"with $O(1/n)$ shift + vertex $O(1/n^2)$, $n$ = {params['width']}",
             f"Monte Carlo, {params['n_networks']} networks (scale mixture, 1$\\sigma$)", "KSG ($k$ = 3) on the same samples",
             "Gaussian plug-in on the same samples"]
    h += [ax.plot([], [], "-", color=f"C{j}", lw=3)[0] for j in range(len(params["sigmas"]))]
    names += [rf"$\sigma$ = {s:g}" for s in params["sigmas"]]
    fig.legend(h, names, loc="outside lower center", ncol=3, fontsize=8.5)
    fig.suptitle("Information of one neuron about itself at precision $\\sigma$, over the parameter ensemble at "
                 "two inputs ($x_a \\cdot x_b / n_0$ = 0.6, $|x|^2/n_0$ = 1), against depth; float64", fontsize=10)
    return fig


FIGURE = Figure(
    name="layer_information",
    description="I(Z; Z + sigma eps) of one neuron vs layer (tanh, ordered/critical/chaotic) for several sigma: NNGP log-det, O(1/n), MC, KSG, Gaussian plug-in",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
