"""Figure fitted_couplings: couplings of the output's effective action fitted to finite-width ensembles
(Halverson-Maiti-Stoner style) against the couplings sft computes from the O(1/n^2) theory.

Action (:mod:`sft.symbolic.effective_action`; Euclidean e^{-S}, propagator K = K^(L+1)):
S[f] = f^2/(2K) + g2 f^2/2 + g4 f^4/4! + g6 f^6/6!, one input, g2 = g2[1]/n + g2[2]/n^2,
g4 = g4[1]/n + g4[2]/n^2, g6 = g6[2]/n^2. Networks of depth L = 2, width n, C_b = 0, |x|^2/n_0 = 1
(ReLU C_W = 2, tanh C_W = 1, linear C_W = 1).
- lines: theory, n g2 = g2[1] + g2[2]/n, n g4 = g4[1] + g4[2]/n, n^2 g6 = g6[2], and the ratio
  g6 K^3/(g4 K^2)^2, from :func:`sft.symbolic.couplings_from_cumulants` applied to the cumulants of
  :func:`sft.finite.second_order_single_input` (kappa2 = K + G1/n + G2/n^2, kappa4 = 3V/n + 3V1/n^2,
  kappa6 = 15U/n^2);
- dotted (linear, ReLU): the same map applied to the exact cumulants at width n
  (:func:`sft.finite.relu_exact.output_cumulant_ratios`; kappa2 = K exactly), i.e. the couplings a fit
  to infinitely many networks of width n would return;
- points: fitted at each width, the same map applied to the measured n (kappa2 - K), n kappa4,
  n^2 kappa6 (every coupling free: at one input the fit is exact, as many couplings as correlators),
  measured from the per-network readout metrics (f | G ~ N(0, G): kappa4 = 3 k2(G), kappa6 = 15 k3(G))
  of S networks sampled layer by layer from their exact conditional law (:func:`sft.sim.sample_metrics`),
  float64, delete-a-block jackknife (``n_blocks``) of the whole map, 1 sigma. The metrics are
  heavy-tailed (nearly log-normal for linear and ReLU at small n), so the jackknife error of k3(G)
  from a few 1e4 networks can understate the spread (measured at linear, n = 8: the error from 2e4
  networks is about that from 1e5); use the full mode for quantitative comparisons.
Run ``python sims/fig_fitted_couplings.py [--quick]`` or ``sft figures --only fitted_couplings``.
"""
from __future__ import annotations

import matplotlib.figure
import numpy as np

from sft.finite import second_order_single_input
from sft.finite.relu_exact import output_cumulant_ratios
from sft.sim import jackknife, output_cumulants_from_metrics, sample_metrics
from sft.symbolic import couplings_from_cumulants
from sft.workflow import Figure, run_script

#: label -> (activation, C_W, slopes (a+, a-) if scale-invariant else None, title)
SETTINGS = {"linear": ("linear", 1.0, (1.0, 1.0), "linear, $C_W$ = 1"),
            "relu": ("relu", 2.0, (1.0, 0.0), "ReLU, $C_W$ = 2"),
            "tanh": ("tanh", 1.0, None, "tanh, $C_W$ = 1")}
DEPTH = 2
QUICK = dict(widths=[8, 16, 32], n_networks=40000, n_blocks=20, seed=0, dtype="float64")
FULL = dict(widths=[8, 12, 16, 24, 32, 48, 64], n_networks=200000, n_blocks=20, seed=0, dtype="float64")
ROWS = ("n g2", "n g4", "n^2 g6", "ratio")


def pieces(params):
    out = {}
    for i, (label, (activation, C_W, _, _)) in enumerate(SETTINGS.items()):
        out[f"{label}_theory"] = dict(kind="theory", activation=activation, C_W=C_W)
        for j, width in enumerate(params["widths"]):
            out[f"{label}_n{width}"] = dict(kind="mc", activation=activation, C_W=C_W, width=width,
                                            n_networks=params["n_networks"], n_blocks=params["n_blocks"],
                                            seed=params["seed"] + 100 * i + j, dtype=params["dtype"])
    return out


def _scaled_couplings(K, series, n):
    """[n g2, n g4, n^2 g6, g6 K^3 / (g4 K^2)^2] at width n from a cumulant series (keys of
    :func:`sft.symbolic.coupling_keys`)."""
    g = couplings_from_cumulants(K, series)
    g2 = g[(2, 1)].item() + g[(2, 2)].item() / n
    g4 = g[(4, 1)].item() + g[(4, 2)].item() / n
    g6 = g[(6, 2)].item()
    return np.array([g2, g4, g6, g6 * K ** 3 / (g4 * K ** 2) ** 2])


def compute(*, kind, activation, C_W, width=None, n_networks=None, n_blocks=None, seed=None, dtype=None):
    so = second_order_single_input(1.0, depth=DEPTH, activation=activation, C_W=C_W, C_b=0.0)
    K, G1, G2, V, V1, U = (float(getattr(so, a)[DEPTH]) for a in ("K", "G1", "G2", "V", "V1", "U"))
    if kind == "theory":
        series = {(2, 1): G1, (2, 2): G2, (4, 1): 3 * V, (4, 2): 3 * V1, (6, 2): 15 * U}
        n_grid = np.unique(np.geomspace(6, 80, 30).round())
        slopes = next(v[2] for v in SETTINGS.values() if v[0] == activation)
        exact = np.full((n_grid.size, len(ROWS)), np.nan)
        if slopes:  # kappa2 = K exactly; exact kappa4, kappa6 at width n, through the same map
            for i, n in enumerate(n_grid):
                r4, r6 = output_cumulant_ratios([int(n)] * DEPTH, max_order=6, a_plus=slopes[0],
                                                a_minus=slopes[1])
                exact[i] = _scaled_couplings(K, {(4, 1): n * r4 * K ** 2, (6, 2): n ** 2 * r6 * K ** 3}, n)
        return dict(n_grid=n_grid, theory=np.array([_scaled_couplings(K, series, n) for n in n_grid]),
                    exact=exact)
    if dtype != "float64":
        raise ValueError(f"dtype={dtype!r} is not allowed: this figure samples in float64")
    G = sample_metrics(np.random.default_rng(seed), 1.0, widths=[width] * DEPTH, activation=activation,
                       C_W=C_W, C_b=0.0, n_networks=n_networks)[:, -1]

    def fitted(g):
        k2, k4, k6 = (t.item() for t in output_cumulants_from_metrics(g))
        series = {(2, 1): width * (k2 - K), (4, 1): width * k4, (6, 2): width ** 2 * k6}
        return _scaled_couplings(K, series, width)
    est, err = jackknife(fitted, G, n_blocks=n_blocks)
    return dict(sim=est, sim_err=err)


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(13, 9), layout="constrained")
    axes = fig.subplots(len(ROWS), len(SETTINGS), sharex=True)
    widths = np.array(params["widths"])
    ylabels = [r"$n\,g_2$", r"$n\,g_4$", r"$n^2\,g_6$", r"$g_6K^3/(g_4K^2)^2$"]
    for col, (label, (_, _, slopes, title)) in enumerate(SETTINGS.items()):
        th = results[f"{label}_theory"]
        sim = np.array([results[f"{label}_n{w}"]["sim"] for w in widths])
        err = np.array([results[f"{label}_n{w}"]["sim_err"] for w in widths])
        for row in range(len(ROWS)):
            ax = axes[row, col]
            ax.plot(th["n_grid"], th["theory"][:, row], "-", color="C0", lw=1.6)
            if slopes:
                ax.plot(th["n_grid"], th["exact"][:, row], ":", color="C3", lw=2.0)
            ax.errorbar(widths, sim[:, row], yerr=err[:, row], fmt="o", ms=4, color="k", mfc="white",
                        capsize=2, lw=0.9, zorder=3)
            ax.set_xscale("log")
            ax.set_xticks([8, 16, 32, 64], labels=["8", "16", "32", "64"])
            ax.set_xticks([], minor=True)
            ax.grid(True, alpha=0.25)
            if col == 0:
                ax.set_ylabel(ylabels[row])
        line = th["exact"] if slopes else th["theory"]
        ref = np.array([[np.interp(w, th["n_grid"], line[:, r]) for r in range(len(ROWS))] for w in widths])
        zmax = np.max(np.abs((sim - ref) / err))
        axes[0, col].set_title(title + f", depth {DEPTH}, one input\nmax |fit - "
                               + ("exact" if slopes else "theory") + f"| / error = {zmax:.1f}", fontsize=10)
        axes[-1, col].set_xlabel("hidden width $n$")
    h = [axes[0, 0].plot([], [], "-", color="C0", lw=1.6)[0],
         axes[0, 0].plot([], [], ":", color="C3", lw=2.0)[0],
         axes[0, 0].errorbar([], [], yerr=[], fmt="o", color="k", mfc="white", capsize=2)]
    fig.legend(h, [r"computed by sft: $O(1/n^2)$ recursion $\to$ Legendre map (diagrams)",
                   "same map on the exact law at width $n$ (linear, ReLU)",
                   f"fitted to Monte Carlo at each width ({params['n_networks']} networks, jackknife 1$\\sigma$)"],
               loc="outside lower center", ncol=2, fontsize=9)
    fig.suptitle("Couplings of the output's effective action $S = f^2/2K + g_2 f^2/2 + g_4 f^4/4! + "
                 "g_6 f^6/6!$: fitted to finite-width ensembles vs computed\n(float64, per-network "
                 r"metric estimator; $g_4 < 0$, $g_6 > 0$). The $1/n$ series of the couplings converges "
                 r"slowly ($|g_4^{[2]}/g_4^{[1]}| \gg 1$): at $n \lesssim 30$ the fitted couplings carry "
                 "large higher orders", fontsize=10)
    return fig


FIGURE = Figure(
    name="fitted_couplings",
    description="effective-action couplings g2, g4, g6 fitted to ensembles vs computed from the O(1/n^2) theory (depth 2)",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
