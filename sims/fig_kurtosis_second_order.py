"""Figure kurtosis_second_order: the output's excess kurtosis against depth/width at first and second
order in 1/n, against the exact law (linear, ReLU) and Monte Carlo: where does the second order buy
accuracy?

Networks at criticality, one input with |x|^2/n_0 = 1, C_b = 0 (ReLU C_W = 2, tanh C_W = 1, linear
C_W = 1), L hidden layers of equal width n, x = L/n up to ``x_max``.
- dashed: first order, kappa4/kappa2^2 = 3 V / (n K^2);
- solid: second order, + (3 V1 / K^2 - 6 V G1 / K^3) / n^2 (:func:`sft.finite.second_order_single_input`,
  recursion derived in derivations/second_order_recursion.py);
- dotted (ReLU, linear): exact at width n, :func:`sft.finite.relu_exact.output_cumulant_ratios`
  (scale-invariant law: 3 [(1 + nu/n)^L - 1], nu = 5 ReLU, 2 linear);
- points: Monte Carlo, 3 k2(G) / mean(G)^2 from the per-network readout metrics (f | G ~ N(0, G)),
  sampled layer by layer from their exact conditional law (:func:`sft.sim.sample_metrics`), float64,
  jackknife 1 sigma; one ensemble of depth x_max n per width gives every L.
For ReLU at nu L/n >~ 1 the metric is heavy-tailed (nearly log-normal), so at S networks the estimate of
Var(G) is skewed low and its jackknife error understates the spread (points below the exact line).
Bottom row: relative error of the first- and second-order predictions against the exact law (linear,
ReLU; lines) and against Monte Carlo (tanh; points with the Monte Carlo error bar).
Run ``python sims/fig_kurtosis_second_order.py [--quick]`` or ``sft figures --only kurtosis_second_order``.
"""
from __future__ import annotations

import matplotlib.figure
import numpy as np

from sft.finite import second_order_single_input
from sft.finite.relu_exact import output_cumulant_ratios
from sft.sim import jackknife, sample_metrics
from sft.workflow import Figure, run_script

#: label -> (activation, C_W, slopes (a+, a-) if scale-invariant else None, title)
SETTINGS = {
    "linear": ("linear", 1.0, (1.0, 1.0), "linear, $C_W$ = 1"),
    "relu": ("relu", 2.0, (1.0, 0.0), "ReLU, $C_W$ = 2"),
    "tanh": ("tanh", 1.0, None, "tanh, $C_W$ = 1"),
}
QUICK = dict(widths=[8, 32], x_max=0.5, n_networks=4000, seed=0, dtype="float64")
FULL = dict(widths=[8, 32], x_max=0.5, n_networks=40000, seed=0, dtype="float64")


def pieces(params):
    out = {}
    for i, (label, (activation, C_W, _, _)) in enumerate(SETTINGS.items()):
        for j, width in enumerate(params["widths"]):
            out[f"{label}_n{width}"] = dict(activation=activation, C_W=C_W, width=width,
                                            depth=max(1, round(params["x_max"] * width)),
                                            n_networks=params["n_networks"],
                                            seed=params["seed"] + 100 * i + j, dtype=params["dtype"])
    return out


def compute(*, activation, C_W, width, depth, n_networks, seed, dtype):
    """For L = 1 .. depth: first- and second-order theory, exact law (NaN unless scale-invariant),
    Monte Carlo estimate and error of kappa4/kappa2^2."""
    if dtype != "float64":
        raise ValueError(f"dtype={dtype!r} is not allowed: this figure samples in float64")
    label = next(k for k, v in SETTINGS.items() if v[0] == activation)
    slopes = SETTINGS[label][2]
    so = second_order_single_input(1.0, depth=depth, activation=activation, C_W=C_W, C_b=0.0)
    a1, a2 = so.kappa4[1:, 0], so.kappa4[1:, 1]
    L = np.arange(1, depth + 1)
    exact = np.array([output_cumulant_ratios([width] * l, max_order=4, a_plus=slopes[0],
                                             a_minus=slopes[1])[0] if slopes else np.nan for l in L])
    G = sample_metrics(np.random.default_rng(seed), 1.0, widths=[width] * depth, activation=activation,
                       C_W=C_W, C_b=0.0, n_networks=n_networks)[:, 1:, 0, 0]
    sim, err = jackknife(lambda g: 3 * np.var(g, axis=0, ddof=1) / g.mean(axis=0) ** 2, G)
    return dict(L=L, first=a1 / width, second=a1 / width + a2 / width ** 2, exact=exact, sim=sim,
                sim_err=err)


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(13, 7.6), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True)
    widths = params["widths"]
    notes = []
    for col, (label, (_, _, slopes, title)) in enumerate(SETTINGS.items()):
        top, bot = axes[0, col], axes[1, col]
        for k, width in enumerate(widths):
            r = results[f"{label}_n{width}"]
            c = f"C{k}"
            x = np.r_[0, r["L"] / width]
            top.plot(x, np.r_[0, r["first"]], "--", color=c, lw=1.3)
            top.plot(x, np.r_[0, r["second"]], "-", color=c, lw=1.6)
            if slopes:
                top.plot(x, np.r_[0, r["exact"]], ":", color=c, lw=2.0)
                ref, ref_err = r["exact"], None
            else:
                ref, ref_err = r["sim"], r["sim_err"]
            top.errorbar(r["L"] / width, r["sim"], yerr=r["sim_err"], fmt="o", ms=4, color=c,
                         mfc="white", capsize=2, lw=0.9, zorder=3)
            e1, e2 = r["first"] / ref - 1, r["second"] / ref - 1
            if slopes:
                bot.plot(x[1:], e1, "--", color=c, lw=1.3)
                bot.plot(x[1:], e2, "-", color=c, lw=1.6)
            else:
                rel = r["second"] / ref ** 2 * ref_err  # error of (theory / MC - 1) from the MC error
                bot.errorbar(x[1:], e1, yerr=r["first"] / ref ** 2 * ref_err, fmt="s", ms=3.5,
                             color=c, mfc="white", capsize=2, lw=0.8)
                bot.errorbar(x[1:], e2, yerr=rel, fmt="o", ms=4, color=c, capsize=2, lw=0.8)
            i = int(np.argmin(np.abs(x[1:] - 0.25)))
            notes.append(f"{label}, n = {width}, L/n = {x[1:][i]:.2f}: first order {100 * e1[i]:+.1f}%, "
                         f"second {100 * e2[i]:+.1f}%" + ("" if slopes else " (vs MC)"))
        bot.axhline(0.0, color="0.5", lw=0.8)
        top.set_title(title + r", $C_b$ = 0, one input", fontsize=10)
        top.set_ylim(0, None)
        top.grid(True, alpha=0.3)
        bot.grid(True, alpha=0.3)
        bot.set_xlabel(r"depth / width  $L/n$")
        bot.set_ylim(-0.7, 0.3)
    axes[0, 0].set_ylabel(r"excess kurtosis $\kappa_4/\kappa_2^2$ of the output")
    axes[1, 0].set_ylabel("relative error of the 1/n expansion\n(vs exact: linear, ReLU; vs MC: tanh)")
    ax = axes[0, 0]
    h = [ax.plot([], [], "--", color="0.3", lw=1.3)[0], ax.plot([], [], "-", color="0.3", lw=1.6)[0],
         ax.plot([], [], ":", color="0.3", lw=2.0)[0],
         ax.errorbar([], [], yerr=[], fmt="o", color="0.3", mfc="white", capsize=2)]
    names = ["first order in $1/n$", "second order in $1/n$", "exact law at width $n$ (linear, ReLU)",
             f"Monte Carlo, {params['n_networks']} networks (1$\\sigma$); bottom, tanh: squares first, "
             "dots second order"]
    h += [ax.plot([], [], "-", color=f"C{k}", lw=3)[0] for k in range(len(widths))]
    names += [f"width $n$ = {w}" for w in widths]
    fig.legend(h, names, loc="outside lower center", ncol=3, fontsize=8.5)
    fig.suptitle("Excess kurtosis of the output against depth/width: the second order removes most of the "
                 "first-order error while $\\nu L/n \\lesssim 1$\n" + ";  ".join(notes[:3]) + "\n"
                 + ";  ".join(notes[3:]), fontsize=9.5)
    return fig


FIGURE = Figure(
    name="kurtosis_second_order",
    description="excess kurtosis vs L/n: first and second order in 1/n vs exact (linear, relu) and MC (tanh)",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
