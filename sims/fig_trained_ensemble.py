"""Figure trained_ensemble: O(1/n) corrections to the mean, the variance and the NTK of trained deep ensembles,
theory (:func:`sft.predict.trained_ensemble_gd`, :func:`sft.predict.ntk_change_gd`, meta-kernels of
:func:`sft.finite.output_meta_kernels`) against trained finite-width networks (:func:`sft.sim.train_ensemble`).

Task: 3 inputs in R^3 (2 training, labels (0.5, -0.4); 1 test), tanh MLP with 2 hidden layers of width n,
C_W = 1.5, C_b = 0.1, NTK parameterization, float64; full-batch GD, eta = 0.3 x 2/lambda_max(Theta_XX),
k = 0..20 steps (quick: 10). Each network's deviation is taken against its own infinite-width linearized prediction
f_lin = a_k + B_k f_0 (control variate; Var(f_lin) = B_k (K + G1/n) B_k^T is exact and its G1 part is added
to the simulated variance). Left: n (E f_k - m_k) at the test input and at training input 1; middle:
n (Var_n f_k - Var_inf f_k) at the test input; right: n E[H_k - H_0] (NTK change, training block).
Points: trained ensembles (jackknife 1 sigma, 20 blocks); lines: theory (the 1/n coefficient).
Relu is not shown: its ddNTK diverges at coinciding inputs (sft.finite.meta_kernels), so the O(1/n)
trained ensemble does not exist for it.
Run ``python sims/fig_trained_ensemble.py [--quick]`` or ``sft figures --only trained_ensemble``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.finite import output_meta_kernels
from sft.predict import gd_stability_limit, ntk_change_gd, trained_ensemble_gd
from sft.sim import jackknife, train_ensemble
from sft.workflow import Figure, run_script

X = [[-1.0, 0.5, 0.3], [1.3, -0.3, 0.2], [0.1, 0.8, 0.9]]
Y = [0.5, -0.4]
TASK = dict(depth=2, activation="tanh", C_W=1.5, C_b=0.1, lr_fraction=0.3)
QUICK = dict(widths=[32, 64], n_ensemble=500, n_steps=10, record_every=2, seed=0, dtype="float64", **TASK)
FULL = dict(widths=[32, 64, 128], n_ensemble=8000, n_steps=20, record_every=2, seed=0, dtype="float64", **TASK)


def _setup(depth, activation, C_W, C_b, lr_fraction):
    mk = output_meta_kernels(np.array(X), depth=depth, activation=activation, C_W=C_W, C_b=C_b)
    return mk, lr_fraction * gd_stability_limit(mk.Theta[:2, :2])


def pieces(params):
    task = {k: params[k] for k in (*TASK, "n_steps", "record_every")}
    out = {"theory": dict(kind="theory", **task)}
    for j, w in enumerate(params["widths"]):
        out[f"n{w}"] = dict(kind="sim", width=w, seed=params["seed"] + j, n_ensemble=params["n_ensemble"],
                            dtype=params["dtype"], **task)
    return out


def compute(*, kind, depth, activation, C_W, C_b, lr_fraction, n_steps, record_every, width=None, seed=None,
            n_ensemble=None, dtype=None):
    mk, eta = _setup(depth, activation, C_W, C_b, lr_fraction)
    y = np.array(Y)
    if kind == "theory":
        r = trained_ensemble_gd(mk, y, n_train=2, learning_rate=eta, n_steps=n_steps)
        steps, dl, _ = ntk_change_gd(mk, y, n_train=2, learning_rate=eta, n_steps=n_steps)
        return dict(steps=r.times, mean=r.mean_correction, var=r.cov_correction[:, 2, 2],
                    mean_parts=np.stack([r.mean_parts[k] for k in ("ntk", "dntk", "ddntk")]),
                    ntk=dl[:, [0, 0], [0, 1]], eta=np.float64(eta))
    x = np.array(X)
    tr = train_ensemble(jax.random.key(seed), x[:2], y, x[2:], n_ensemble=n_ensemble, widths=[width] * depth,
                        activation=activation, C_W=C_W, C_b=C_b, learning_rate=eta, n_steps=n_steps,
                        record_every=record_every, record_ntk=True, dtype=dtype)
    f = np.concatenate([np.asarray(tr.train_predictions), np.asarray(tr.test_predictions)], 2)  # (S, T, 3)
    B, a = _linear_maps(mk.Theta, eta, n_steps, record_every)
    flin = a[None] + np.einsum("tij,sj->sti", B, f[:, 0])
    D = f - flin
    G1_var = np.einsum("ti,ij,tj->t", B[:, 2], mk.G1, B[:, 2])  # (B G1 B^T)_{x* x*}: exact part of Var f_lin
    dH = np.asarray(tr.ntk - tr.ntk[:, :1])[:, :, [0, 0], [0, 1]]  # (S, T, 2)
    T = f.shape[1]

    def stat(z):
        u, d, h = z[:, :T], z[:, T:2 * T], z[:, 2 * T:].reshape(len(z), T, 2)
        var = np.array([2 * np.cov(u[:, t], d[:, t])[0, 1] + d[:, t].var(ddof=1) for t in range(T)])
        return np.concatenate([width * d.mean(0), width * var + G1_var, width * h.mean(0).ravel()])
    z = np.concatenate([flin[:, :, 2], D[:, :, 2], dH.reshape(len(dH), -1)], 1)
    zt = np.concatenate([flin[:, :, 0], D[:, :, 0], dH.reshape(len(dH), -1)], 1)
    est, err = jackknife(stat, z)
    est1, err1 = jackknife(lambda s: width * s[:, T:2 * T].mean(0), zt)
    return dict(steps=tr.steps, mean_test=est[:T], mean_test_err=err[:T], var=est[T:2 * T],
                var_err=err[T:2 * T], ntk=est[2 * T:].reshape(T, 2), ntk_err=err[2 * T:].reshape(T, 2),
                mean_train=est1, mean_train_err=err1)


def _linear_maps(Theta, eta, n_steps, every):
    """Infinite-width GD: f_k = a_k + B_k f_0 on all inputs, recorded every ``every`` steps."""
    N = Theta.shape[0]
    B, a, Bs, As = np.eye(N), np.zeros(N), [np.eye(N)], [np.zeros(N)]
    for k in range(1, n_steps + 1):
        B, a = B - eta * Theta[:, :2] @ B[:2], a - eta * Theta[:, :2] @ (a[:2] - np.array(Y))
        if k % every == 0:
            Bs.append(B)
            As.append(a)
    return np.array(Bs), np.array(As)


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(13, 4.4), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    th = results["theory"]
    k = th["steps"]
    widths = params["widths"]
    ax1.plot(k, th["mean"][:, 2], "-", color="k", lw=2, label="theory, test input")
    ax1.plot(k, th["mean"][:, 0], "-", color="C3", lw=2, label="theory, training input 1")
    for name, style in zip(("NTK fluct.", "dNTK", "ddNTK"), (":", "--", "-.")):
        i = ("NTK fluct.", "dNTK", "ddNTK").index(name)
        ax1.plot(k, th["mean_parts"][i][:, 2], style, color="0.5", lw=1, label=f"part (test): {name}")
    for j, w in enumerate(widths):
        r = results[f"n{w}"]
        s = r["steps"] + (j - (len(widths) - 1) / 2) * 0.25
        ax1.errorbar(s, r["mean_test"], r["mean_test_err"], fmt="o", ms=3.5, capsize=2, color=f"C{j}",
                     label=f"trained, n = {w}")
        ax1.errorbar(s, r["mean_train"], r["mean_train_err"], fmt="s", ms=3.5, capsize=2, color=f"C{j}",
                     mfc="none")
        ax2.errorbar(s, r["var"], r["var_err"], fmt="o", ms=3.5, capsize=2, color=f"C{j}", label=f"n = {w}")
        for c, (mk, lab) in enumerate((("o", "(1,1)"), ("s", "(1,2)"))):
            ax3.errorbar(s, r["ntk"][:, c], r["ntk_err"][:, c], fmt=mk, ms=3.5, capsize=2, color=f"C{j}",
                         mfc="none" if c else None, label=f"n = {w}, $H_{{{lab}}}$")
    ax2.plot(k, th["var"], "-", color="k", lw=2, label="theory")
    for c in range(2):
        ax3.plot(k, th["ntk"][:, c], "-" if c == 0 else "--", color="k", lw=2,
                 label="theory $H_{(1,1)}$" if c == 0 else "theory $H_{(1,2)}$")
    for ax, ylab, title in (
            (ax1, r"$n\,(\mathbb{E}_n f_k - m_k)$", "mean (filled: test, open: training input 1)"),
            (ax2, r"$n\,(\mathrm{Var}_n f_k - \mathrm{Var}_\infty f_k)$  (test input)", "variance"),
            (ax3, r"$n\,\mathbb{E}_n[H_k - H_0]$", "NTK change (representation learning)")):
        ax.set_xlabel("GD step $k$")
        ax.set_ylabel(ylab)
        ax.set_title(title, fontsize=10)
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Trained deep ensembles at O(1/n): {params['activation']}, {params['depth']} hidden layers, "
        f"$C_W$ = {params['C_W']}, $C_b$ = {params['C_b']}, $\\eta$ = {float(th['eta']):.3g} "
        f"= {params['lr_fraction']} x stability limit; {params['n_ensemble']} networks per width, float64, "
        "jackknife 1$\\sigma$", fontsize=10)
    return fig


FIGURE = Figure(
    name="trained_ensemble",
    description="O(1/n) mean, variance and NTK change of trained deep (tanh) ensembles: theory vs simulation",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
