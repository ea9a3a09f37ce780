"""Figure posterior_correction: the O(1/n) correction to the Bayesian posterior of finite networks,
theory (sft.predict.posterior_correction) against the exact posterior of finite networks, on a 1-D regression task.

Task: P = 3 training points x_a = -1.5, 0, 1.5 with labels y_a = 2 sin(x_a), noise variance sigma^2 = 0.2,
test grid of M points on [-2.5, 2.5]; inputs embedded in d = 2 as (x, 1). One hidden layer (erf, C_W = 1.5,
C_b = 0.1 in both layers), NTK parameterization, float64.

Theory: GP posterior (mean m, variance v) and its 1/n coefficients c_m(x), c_v(x) from the four-point vertex
(:func:`sft.predict.network_posterior_correction`; G1 = 0 for one hidden layer).
Simulation (points, 1 sigma): the exact posterior of width-n networks by importance sampling from the prior
(:func:`sft.predict.importance_posterior` on the readout metrics of S prior networks from
:func:`sft.sim.layer_kernels`; jackknife over 20 blocks), and at one width MALA samples of the
network posterior (:func:`sft.sim.sample_network_posterior`; error = std / sqrt(ESS) per point,
ESS of Vehtari et al. 2021). Panels: n (posterior mean - GP mean) and n (posterior variance - GP variance)
against x, theory c(x) as lines; and |deviation| at one test point against n (log-log) with the theory
|c|/n, with a fit n Delta = c0 + c1/n + c2/n^2 whose c0 is compared to c in the legend.
Run ``python sims/fig_posterior_correction.py [--quick]`` or ``sft figures --only posterior_correction``.
"""
from __future__ import annotations

import time

import jax
import matplotlib.figure
import numpy as np

from sft.sim import fit_inverse_width
from sft.workflow import Figure, run_script
from sft.sim import layer_kernels
from sft.predict import importance_posterior, network_posterior_correction
from sft.sim import effective_sample_size, sample_network_posterior, split_rhat

TASK = dict(activation="erf", C_W=1.5, C_b=0.1, noise=0.2, P=3, label_amp=2.0)
QUICK = dict(widths=[4, 8, 16], M=13, n_ensemble=20_000, seed=0, dtype="float64",
             langevin=dict(width=8, n_chains=16, n_steps=2000, burn_in=500, thin=10, step_size=0.05), **TASK)
FULL = dict(widths=[4, 8, 16, 32, 64, 128], M=17, n_ensemble=200_000, seed=0, dtype="float64",
            langevin=dict(width=8, n_chains=64, n_steps=20_000, burn_in=5000, thin=10, step_size=0.05), **TASK)
FINE = 101  # theory lines
CHUNK = 50_000  # networks per layer_kernels call (memory)


def task_data(P, M, label_amp):
    """x_train (P, 2), y_train (P,), x_test (M, 2), and the raw 1-D test grid (M,)."""
    xs, xt = np.linspace(-1.5, 1.5, P), np.linspace(-2.5, 2.5, M)
    embed = lambda x: np.stack([x, np.ones_like(x)], axis=1)
    return embed(xs), label_amp * np.sin(xs), embed(xt), xt


def pieces(params):
    keys = ("activation", "C_W", "C_b", "noise", "P", "M", "label_amp")
    base = {k: params[k] for k in keys}
    out = {"theory": dict(kind="theory", **base)}
    for j, w in enumerate(params["widths"]):
        out[f"n{w}"] = dict(kind="importance", width=w, n_ensemble=params["n_ensemble"], seed=params["seed"] + j,
                            dtype=params["dtype"], **base)
    out["langevin"] = dict(kind="langevin", seed=params["seed"] + 1000, dtype=params["dtype"],
                           **params["langevin"], **base)
    return out


def compute(*, kind, activation, C_W, C_b, noise, P, M, label_amp, **kw):
    x_train, y, x_test, _ = task_data(P, M, label_amp)
    net = dict(activation=activation, C_W=C_W, C_b=C_b)
    if kind == "theory":  # on the test grid and on a fine grid (for the lines)
        c = network_posterior_correction(x_train, y, x_test, depth=1, noise=noise, **net)
        x_fine = task_data(P, FINE, label_amp)[2]
        cf = network_posterior_correction(x_train, y, x_fine, depth=1, noise=noise, **net)
        return dict(mean=c.mean, var=np.diag(c.cov), c_mean=c.mean_correction, c_var=np.diag(c.cov_correction),
                    fine_c_mean=cf.mean_correction, fine_c_var=np.diag(cf.cov_correction))
    if kind == "importance":
        x = np.concatenate([x_train, x_test])
        S, key = kw["n_ensemble"], jax.random.key(kw["seed"])  # chunks of CHUNK networks, keys fold_in(key, c)
        G = np.concatenate([np.asarray(layer_kernels(jax.random.fold_in(key, c), x, n_ensemble=min(CHUNK, S - a),
                                                     widths=[kw["width"]], dtype=kw["dtype"], **net))[:, -1]
                            for c, a in enumerate(range(0, S, CHUNK))])
        r = importance_posterior(G, y, train=np.arange(P), test=np.arange(P, P + M), noise=noise)
        return dict(mean=r.mean, var=np.diag(r.cov), mean_err=r.mean_err, var_err=np.diag(r.cov_err),
                    ess=np.float64(r.ess))
    t0 = time.perf_counter()
    r = sample_network_posterior(jax.random.key(kw["seed"]), x_train, y, x_test, widths=[kw["width"]], noise=noise,
                                 temperature=1.0, n_chains=kw["n_chains"], step_size=kw["step_size"],
                                 n_steps=kw["n_steps"], burn_in=kw["burn_in"], thin=kw["thin"], **net)
    f = np.asarray(r.samples, dtype=np.float64)                                   # (chains, draws, M)
    seconds = time.perf_counter() - t0
    mean = f.mean((0, 1))
    sq = (f - mean) ** 2
    ess_m = np.array([effective_sample_size(f[:, :, m]) for m in range(M)])
    ess_v = np.array([effective_sample_size(sq[:, :, m]) for m in range(M)])
    return dict(mean=mean, var=sq.mean((0, 1)), mean_err=f.std((0, 1)) / np.sqrt(ess_m),
                var_err=sq.std((0, 1)) / np.sqrt(ess_v), ess=ess_m, seconds=np.float64(seconds),
                acceptance=np.asarray(r.acceptance_rate).mean(),
                rhat=np.array([split_rhat(f[:, :, m]) for m in range(M)]), width=np.float64(kw["width"]))


def plot(results, params):
    th = results["theory"]
    _, _, _, xt = task_data(params["P"], params["M"], params["label_amp"])
    xs = np.linspace(-1.5, 1.5, params["P"])
    widths = params["widths"]
    fig = matplotlib.figure.Figure(figsize=(14, 5.2), layout="constrained")
    axes = fig.subplots(1, 3)
    offs = np.linspace(-0.06, 0.06, len(widths))
    for ax, q, label in ((axes[0], "mean", "mean"), (axes[1], "var", "variance")):
        ax.plot(np.linspace(-2.5, 2.5, FINE), th[f"fine_c_{q}"], "-", color="k", lw=1.5,
                label="theory $c(x)$ (1/n coefficient)", zorder=3)
        for k, (w, o) in enumerate(zip(widths, offs)):
            r = results[f"n{w}"]
            ax.errorbar(xt + o, w * (r[q] - th[q]), yerr=w * r[f"{q}_err"], fmt="o", ms=3.5, capsize=2, lw=0.8,
                        color=f"C{k}", label=f"n = {w} (importance sampling)")
        lg = results["langevin"]
        n = float(lg["width"])
        ax.errorbar(xt + 0.09, n * (lg[q] - th[q]), yerr=n * lg[f"{q}_err"], fmt="s", mfc="white", ms=5,
                    capsize=2, lw=0.8, color="C3", label=f"n = {int(n)} (MALA Langevin)")
        for x0 in xs:
            ax.axvline(x0, color="0.8", lw=0.8, zorder=0)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xlabel("test input $x$ (grey: training inputs)")
        ax.set_ylabel(rf"$n\,$(posterior {label} $-$ GP {label})")
        ax.set_title(f"posterior {label}: $n\\,\\Delta$ vs theory", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    # panel 3: |deviation| vs n at the test point with the largest theory correction, log-log
    ax = axes[2]
    n = np.array(widths, dtype=float)
    nn = np.geomspace(n[0] / 1.3, n[-1] * 1.3, 50)
    for k, (q, label, mk) in enumerate((("mean", "mean", "o"), ("var", "variance", "D"))):
        j = int(np.argmax(np.abs(th[f"c_{q}"])))
        c = th[f"c_{q}"][j]
        d = np.array([results[f"n{w}"][q][j] - th[q][j] for w in widths])
        e = np.array([results[f"n{w}"][f"{q}_err"][j] for w in widths])
        coef, cerr, chi2 = fit_inverse_width(n, n * d, n * e, powers=(0, 1, 2)) if len(n) >= 4 else ([np.nan], [np.nan], np.nan)
        color = f"C{k}"
        ax.errorbar(n, np.abs(d), yerr=e, fmt=mk, color=color, capsize=3,
                    label=rf"|posterior {label} $-$ GP| at $x$ = {xt[j]:.2f}")
        ax.plot(nn, np.abs(c) / nn, "-", color=color,
                label=rf"theory $|c|/n$, c = {c:.3f}" + ("" if np.isnan(coef[0]) else
                      f"\nfit $n\\Delta = c_0 + c_1/n + c_2/n^2$: $c_0$ = {coef[0]:.3f} ± {cerr[0]:.3f}"
                      f" (z = {(coef[0] - c) / cerr[0]:.1f})"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 8)  # room for the legend
    ax.set_xticks(n, [f"{w:d}" for w in widths])
    ax.minorticks_off()
    ax.set_xlabel("hidden width $n$")
    ax.set_ylabel("|finite-width posterior $-$ GP posterior|")
    ax.set_title("deviation vs width (log-log)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper right")
    lg = results["langevin"]
    ess_s = lg["ess"].min() / float(lg["seconds"])
    ref = results.get(f"n{int(lg['width'])}")
    zmax = "" if ref is None else ", |MALA $-$ importance sampling| / error $\\leq$ " + f"{max(np.max(np.abs(lg[q] - ref[q]) / np.hypot(lg[q + '_err'], ref[q + '_err'])) for q in ('mean', 'var')):.1f}"
    fig.suptitle(
        f"Bayesian posterior of one-hidden-layer networks ({params['activation']}, $C_W$ = {params['C_W']}, "
        f"$C_b$ = {params['C_b']}): O(1/n) correction from the four-point vertex, theory vs exact finite-width posterior\n"
        f"{params['P']} training points, $y$ = {params['label_amp']:g} sin $x$, noise $\\sigma^2$ = {params['noise']}; "
        f"importance sampling from {params['n_ensemble']:,} prior networks per width; float64, 1$\\sigma$ errors\n"
        f"MALA (n = {int(lg['width'])}): "
        f"{params['langevin']['n_chains']} chains, min ESS {lg['ess'].min():.0f} ({ess_s:.0f}/s), "
        f"max split-$\\hat R$ {lg['rhat'].max():.3f}{zmax}", fontsize=9.5)
    return fig


FIGURE = Figure(
    name="posterior_correction",
    description="O(1/n) posterior mean/variance correction, theory vs importance-sampled and Langevin-sampled networks",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
