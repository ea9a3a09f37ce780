"""Figure aspect_ratio: test error of trained deep ensembles against depth-to-width ratio L/n, with the
predicted optimum (:func:`sft.predict.ensemble_test_error` on :func:`sft.predict.trained_ensemble_gd`).

Task: 3 inputs in R^3 (2 training, labels (0.5, -0.4); test input x* with label y* = 0.2), tanh MLP at
criticality (C_W = 1, C_b = 0) with L hidden layers of width n, NTK parameterization, float64; k = 40
full-batch GD steps with eta = 0.3 x 2/lambda_max(Theta_XX) (per depth). The expected squared test error
of one trained network is E_n[(f_k(x*) - y*)^2] = e0(L) + e1(L)/n + O(1/n^2) (bias^2 + variance): the
infinite-width part e0 falls with depth (the output variance shrinks at criticality) while the finite-width
cost e1 grows ~ L, so at fixed n the error is smallest at an intermediate depth L*(n) (marked; the
best of the depths computed, so in quick mode it may sit at the largest one).
Points: plain Monte Carlo over trained networks (sft.sim.train_ensemble, seed per (L, n)), jackknife
1 sigma; lines: theory e0 + e1/n at integer L (dashed: e0, infinite width).
Run ``python sims/fig_aspect_ratio.py [--quick]`` or ``sft figures --only aspect_ratio``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.finite import output_meta_kernels
from sft.predict import ensemble_test_error, gd_stability_limit, trained_ensemble_gd
from sft.sim import jackknife, train_ensemble
from sft.workflow import Figure, run_script

X = [[-1.0, 0.5, 0.3], [1.3, -0.3, 0.2], [0.1, 0.8, 0.9]]
Y = [0.5, -0.4]
Y_STAR = 0.2
TASK = dict(activation="tanh", C_W=1.0, C_b=0.0, lr_fraction=0.3, n_steps=40)
QUICK = dict(depths=[1, 2, 3], widths=[16], n_ensemble=1000, seed=0, dtype="float64", **TASK)
FULL = dict(depths=list(range(1, 11)), widths=[16, 32], n_ensemble=20000, seed=0, dtype="float64", **TASK)


def _eta(mk, lr_fraction):
    return lr_fraction * gd_stability_limit(mk.Theta[:2, :2])


def pieces(params):
    task = {k: params[k] for k in TASK}
    out = {}
    for L in params["depths"]:
        out[f"theory_L{L}"] = dict(kind="theory", depth=L, **task)
        for j, w in enumerate(params["widths"]):
            out[f"L{L}_n{w}"] = dict(kind="sim", depth=L, width=w, seed=params["seed"] + 1000 * L + j,
                                     n_ensemble=params["n_ensemble"], dtype=params["dtype"], **task)
    return out


def compute(*, kind, depth, activation, C_W, C_b, lr_fraction, n_steps, width=None, seed=None,
            n_ensemble=None, dtype=None):
    mk = output_meta_kernels(np.array(X), depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    eta = _eta(mk, lr_fraction)
    if kind == "theory":
        r = trained_ensemble_gd(mk, np.array(Y), n_train=2, learning_rate=eta, n_steps=n_steps,
                                record_every=n_steps)
        e0, e1 = ensemble_test_error(r, np.array([Y_STAR]), n_train=2)
        return dict(e0=e0[-1], e1=e1[-1])
    x = np.array(X)
    tr = train_ensemble(jax.random.key(seed), x[:2], np.array(Y), x[2:], n_ensemble=n_ensemble,
                        widths=[width] * depth, activation=activation, C_W=C_W, C_b=C_b, learning_rate=eta,
                        n_steps=n_steps, record_every=n_steps, dtype=dtype)
    sq = (np.asarray(tr.test_predictions[:, -1, 0], dtype=np.float64) - Y_STAR) ** 2
    est, err = jackknife(lambda s: s.mean(0), sq)
    return dict(err=np.float64(est), err_err=np.float64(err))


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    L = np.array(params["depths"])
    e0 = np.array([results[f"theory_L{d}"]["e0"] for d in L])
    e1 = np.array([results[f"theory_L{d}"]["e1"] for d in L])
    for j, n in enumerate(params["widths"]):
        th = e0 + e1 / n
        ax.plot(L / n, th, "-", color=f"C{j}", lw=2, label=f"theory $e_0 + e_1/n$, n = {n}")
        ax.plot(L / n, e0, "--", color=f"C{j}", lw=1, label=f"infinite width $e_0(L)$ (at L/n, n = {n})")
        i = int(np.argmin(th))
        ax.axvline(L[i] / n, color=f"C{j}", lw=1, ls=":")
        ax.plot(L[i] / n, th[i], "*", color=f"C{j}", ms=14, label=f"predicted optimum L/n = {L[i]}/{n} (of the depths shown)")
        m = np.array([results[f"L{d}_n{n}"]["err"] for d in L])
        s = np.array([results[f"L{d}_n{n}"]["err_err"] for d in L])
        ax.errorbar(L / n, m, s, fmt="o", ms=4, capsize=2, color=f"C{j}", mfc="white",
                    label=f"trained networks, n = {n}")
    ax.set_xlabel("aspect ratio  L / n  (hidden layers / width)")
    ax.set_ylabel(r"test error  $\mathbb{E}_n[(f_k(x^*) - y^*)^2]$")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5)
    ax.set_title(
        f"Optimal aspect ratio: {params['activation']} at criticality ($C_W$ = {params['C_W']}, "
        f"$C_b$ = {params['C_b']}), {params['n_steps']} GD steps,\n"
        f"$\\eta$ = {params['lr_fraction']} x stability limit; {params['n_ensemble']} networks per point, "
        "float64, jackknife 1$\\sigma$", fontsize=9.5)
    return fig


FIGURE = Figure(
    name="aspect_ratio",
    description="test error of trained deep ensembles vs L/n at O(1/n), with the predicted optimal aspect ratio",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
