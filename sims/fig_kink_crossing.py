"""Figure kink_crossing: kinked activations move the NTK and the mean output at O(n^{-1/2}), smooth ones at
O(1/n) -- trained one-hidden-layer ensembles against :func:`sft.predict.kink_ntk_change`.

Task: 3 training inputs in R^3 (labels (0.8, -0.5, 0.3)), one hidden layer of width n, C_W = 2, C_b = 0.1,
NTK parameterization, k = 4 full-batch GD steps with eta = 0.4 (eta lambda_max(Theta_XX) = 1.29, stability
limit 2) (:func:`sft.sim.train_ensemble`, float64, ``n_ensemble`` networks per width, seed per (activation,
width)). x axis: 1/sqrt(n) (widths on the top axis), so a + b / sqrt(n) is a straight line.
Left: sqrt(n) E[Theta_k - Theta_0]_aa on the three training inputs. Relu (colours): the kink-crossing
theory (thick solid ticks at 1/sqrt(n) = 0, the n -> inf value; band: its Monte Carlo 1 sigma) and trained
networks (points, 1 sigma standard errors); dotted: weighted fits a + b / sqrt(n), extrapolated to 0.
Tanh (grey squares): sqrt(n) E[..] falls linearly in 1/sqrt(n) to 0 (its NTK change is O(1/n)).
Right: sqrt(n) (E[f_k] - f_k^inf) on the training inputs, measured as sqrt(n) E[f_k - f_k^lin], f^lin the
linear GD from each network's own f0 and Theta_0 (same mean up to O(1/n); the per-network difference has
a far smaller variance than f_k). Same conventions.
Third panel: two hidden layers of width n (relu, C_W = 2, C_b = 0.1 in every layer, k = 4 GD steps with
eta = 0.25, eta lambda_max(Theta_XX) = 1.30; the setup measured in :mod:`sft.predict.kink_crossing_deep`),
same three training inputs: sqrt(n) E[Theta^(l)_k - Theta^(l)_0]_11 on the first training input x_1 for the
parameters of layer 1, layer 2 and the readout (:func:`sft.sim.train_layer_ntk`, float64,
``deep_ensembles[j]`` networks at ``deep_widths[j]``, 1 sigma standard errors) against
:func:`sft.predict.kink_ntk_change_deep` (thick ticks at 1/sqrt(n) = 0, band its Monte Carlo 1 sigma; the
readout's change is O(1/n), theory 0 at this order); dotted: weighted fits a + b / sqrt(n).
Measured (FULL, 2-core CPU, float64, 3 min 22 s wall): intercepts of the fits (5 widths, chi^2 3.9, 2.5, 4.7
for 3 dof) -0.708 +- 0.025 (layer 1), -0.324 +- 0.017 (layer 2), +0.002 +- 0.005 (readout) against the theory
-0.682 +- 0.011, -0.305 +- 0.007, 0 (n_samples 100000): z = -0.9, -1.1, +0.4. One layer: all six relu
intercepts within |z| <= 2.1 of :func:`sft.predict.kink_ntk_change`.
Run ``python sims/fig_kink_crossing.py [--quick]`` or ``sft figures --only kink_crossing``.
"""
from __future__ import annotations

import math

import jax
import matplotlib.figure
import numpy as np

from sft.predict import kink_ntk_change, kink_ntk_change_deep
from sft.sim import train_ensemble, train_layer_ntk
from sft.workflow import Figure, run_script

X = [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]]
Y = [0.8, -0.5, 0.3]
TASK = dict(C_W=2.0, C_b=0.1, learning_rate=0.4, n_steps=4)
DEEP_TASK = dict(C_W=2.0, C_b=0.1, learning_rate=0.25, n_steps=4)     # two hidden layers (third panel)
QUICK = dict(widths=[128, 512], n_ensemble=300, n_samples=4000, seed=0, dtype="float64", **TASK,
             deep_widths=[128, 256], deep_ensembles=[300, 200], deep_n_samples=3000, deep_n_grid=256)
FULL = dict(widths=[128, 256, 512, 1024, 2048, 4096], n_ensemble=4000, n_samples=100000, seed=0,
            dtype="float64", **TASK, deep_widths=[128, 256, 512, 1024, 2048],
            deep_ensembles=[4000, 3000, 2000, 1200, 600],
            deep_n_samples=100000, deep_n_grid=512)
ACTIVATIONS = ("relu", "tanh")
LAYERS = ("layer 1", "layer 2", "readout")


def pieces(params):
    task = {k: params[k] for k in TASK}
    out = {"theory": dict(kind="theory", n_samples=params["n_samples"], seed=params["seed"], **task)}
    for i, act in enumerate(ACTIVATIONS):
        for j, w in enumerate(params["widths"]):
            out[f"{act}_n{w}"] = dict(kind="sim", activation=act, width=w, n_ensemble=params["n_ensemble"],
                                      seed=params["seed"] + 100 * i + j, dtype=params["dtype"], **task)
    out["deep_theory"] = dict(kind="deep_theory", n_samples=params["deep_n_samples"], n_grid=params["deep_n_grid"],
                              seed=params["seed"], **DEEP_TASK)
    for j, (w, S) in enumerate(zip(params["deep_widths"], params["deep_ensembles"])):
        out[f"deep_n{w}"] = dict(kind="deep_sim", width=w, n_ensemble=S, seed=params["seed"] + 200 + j,
                                 dtype=params["dtype"], **DEEP_TASK)
    return out


def compute(*, kind, C_W, C_b, learning_rate, n_steps, n_samples=None, n_grid=None, seed=None, activation=None,
            width=None, n_ensemble=None, dtype=None):
    x, y = np.array(X), np.array(Y)
    if kind == "theory":
        r = kink_ntk_change(x, y, activation="relu", C_W=C_W, C_b=C_b, learning_rate=learning_rate,
                            n_steps=n_steps, n_samples=n_samples, seed=seed)
        return dict(ntk=np.diag(r.ntk), ntk_err=np.diag(r.ntk_stderr), mean=r.mean, mean_err=r.mean_stderr)
    if kind == "deep_theory":                                            # (3 layers, P, P)
        r = kink_ntk_change_deep(x, y, activation="relu", C_W=C_W, C_b=C_b, learning_rate=learning_rate,
                                 n_steps=n_steps, n_samples=n_samples, n_grid=n_grid, seed=seed)
        return dict(ntk=r.ntk, ntk_err=r.ntk_stderr)
    if dtype != "float64":
        raise ValueError(f"dtype={dtype!r} is not allowed: this figure trains in float64")
    if kind == "deep_sim":                       # sqrt(n) (Theta^(l)_k - Theta^(l)_0) per network, (S, 3, P, P)
        _, t = train_layer_ntk(jax.random.key(seed), x, y, x, n_ensemble=n_ensemble, widths=[width, width],
                               activation="relu", C_W=C_W, C_b=C_b, learning_rate=learning_rate, n_steps=n_steps,
                               record_every=n_steps, chunk_size=max(2, min(256, 2 ** 24 // width ** 2)))  # RSS < 1 GB
        d = math.sqrt(width) * (t[:, 1] - t[:, 0])
        return dict(ntk=d.mean(0), ntk_err=d.std(0, ddof=1) / math.sqrt(n_ensemble))
    run = train_ensemble(jax.random.key(seed), x, y, x[:1], n_ensemble=n_ensemble, widths=[width],
                         activation=activation, C_W=C_W, C_b=C_b, learning_rate=learning_rate,
                         n_steps=n_steps, record_every=n_steps, record_ntk=True)
    ntk, f = np.asarray(run.ntk), np.asarray(run.train_predictions)          # (S, 2, P, P), (S, 2, P)
    lin, res = f[:, 0].copy(), f[:, 0] - y
    for _ in range(n_steps):                     # linear GD with each network's own f0 and Theta_0
        step = np.einsum("sab,sb->sa", ntk[:, 0], res)
        lin, res = lin - learning_rate * step, res - learning_rate * step
    d_ntk = math.sqrt(width) * np.diagonal(ntk[:, 1] - ntk[:, 0], axis1=1, axis2=2)
    d_f = math.sqrt(width) * (f[:, 1] - lin)
    S = n_ensemble
    return dict(ntk=d_ntk.mean(0), ntk_err=d_ntk.std(0, ddof=1) / math.sqrt(S), mean=d_f.mean(0),
                mean_err=d_f.std(0, ddof=1) / math.sqrt(S))


def _fit(n, m, e):
    """Weighted least squares m = a + b / sqrt(n) (QR/SVD of the whitened design): (a, b)."""
    A = np.stack([np.ones_like(n), 1 / np.sqrt(n)], 1) / e[:, None]
    return np.linalg.lstsq(A, m / e, rcond=None)[0]


def _x_axis(ax, n, q):
    ax.set_xlim(0.0, q[0] * 1.08)
    ax.set_xlabel(r"$1/\sqrt{n}$ ($n$ = hidden width; top axis)")
    top = ax.secondary_xaxis("top", functions=(lambda u: u, lambda u: u))
    top.set_xticks(q, [f"{int(w)}" for w in n], fontsize=7, rotation=90)


def _deep_panel(ax, results, params):
    """Two hidden layers: sqrt(n) E[dTheta^(l)]_11 per layer, trained points, fits, theory ticks."""
    n = np.array(params["deep_widths"], dtype=float)
    q = 1 / np.sqrt(n)
    q_line = np.linspace(0.0, q[0] * 1.05, 50)
    th = results["deep_theory"]
    for l, name in enumerate(LAYERS):
        c = f"C{l + 3}"
        t, te = th["ntk"][l, 0, 0], th["ntk_err"][l, 0, 0]
        ax.plot([0.0, 0.35 * q[-1]], [t, t], "-", color=c, lw=3, solid_capstyle="butt")
        ax.fill_between([0.0, 0.35 * q[-1]], t - te, t + te, color=c, alpha=0.25, lw=0)
        m = np.array([results[f"deep_n{w}"]["ntk"][l, 0, 0] for w in params["deep_widths"]])
        e = np.array([results[f"deep_n{w}"]["ntk_err"][l, 0, 0] for w in params["deep_widths"]])
        ax.errorbar(q * (1.0 + 0.015 * (l - 1)), m, e, fmt="D", color=c, ms=4, capsize=2,
                    label=name + (" (theory: 0\nat this order)" if l == 2 else ""))
        if n.size > 2:
            fa, fb = _fit(n, m, e)
            ax.plot(q_line, fa + fb * q_line, ":", color=c, lw=1)
    ax.axhline(0.0, color="0.5", lw=1)
    _x_axis(ax, n, q)
    ax.set_ylabel(r"$\sqrt{n}\ \mathbb{E}[\Theta^{(\ell)}_k - \Theta^{(\ell)}_0]_{11}$")
    ax.set_title(f"two hidden layers (relu, $\\eta$ = {DEEP_TASK['learning_rate']}): per-layer NTK change on "
                 "$x_1$", fontsize=10)


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(16, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    n = np.array(params["widths"], dtype=float)
    q = 1 / np.sqrt(n)                                                   # x axis: n^{-1/2}
    q_line = np.linspace(0.0, q[0] * 1.05, 50)
    th = results["theory"]
    for ax, key, ylabel in ((axes[0], "ntk", r"$\sqrt{n}\ \mathbb{E}[\Theta_k - \Theta_0]_{aa}$"),
                            (axes[1], "mean", r"$\sqrt{n}\ (\mathbb{E} f_k(x_a) - f_k^\infty(x_a))$")):
        for a in range(len(X)):
            c = f"C{a}"
            t, te = th[key][a], th[f"{key}_err"][a]
            ax.plot([0.0, 0.35 * q[-1]], [t, t], "-", color=c, lw=3, solid_capstyle="butt")
            ax.fill_between([0.0, 0.35 * q[-1]], t - te, t + te, color=c, alpha=0.25, lw=0)
            m = np.array([results[f"relu_n{w}"][key][a] for w in params["widths"]])
            e = np.array([results[f"relu_n{w}"][f"{key}_err"][a] for w in params["widths"]])
            ax.errorbar(q, m, e, fmt="o", color=c, ms=4, capsize=2, label=f"relu, $a$ = {a + 1}")
            if n.size > 2:
                fa, fb = _fit(n, m, e)
                ax.plot(q_line, fa + fb * q_line, ":", color=c, lw=1)
            m = np.array([results[f"tanh_n{w}"][key][a] for w in params["widths"]])
            e = np.array([results[f"tanh_n{w}"][f"{key}_err"][a] for w in params["widths"]])
            ax.errorbar(q * (1.0 + 0.02 * (a - 1)), m, e, fmt="s", color="0.5", mfc="none", ms=4, capsize=2,
                        label="tanh, $a$ = 1, 2, 3" if a == 0 else None)
        ax.axhline(0.0, color="0.5", lw=1)
        _x_axis(ax, n, q)
        ax.set_ylabel(ylabel)
    axes[0].set_title(f"one hidden layer ($\\eta$ = {params['learning_rate']}): NTK change", fontsize=10)
    axes[1].set_title(f"one hidden layer ($\\eta$ = {params['learning_rate']}): mean output shift", fontsize=10)
    _deep_panel(axes[2], results, params)
    h, lab = axes[0].get_legend_handles_labels()
    order = sorted(range(len(lab)), key=lambda i: lab[i].startswith("tanh"))   # relu first, then tanh
    h, lab = [h[i] for i in order], [lab[i] for i in order]
    h += [axes[0].plot([], [], "-", color="k", lw=3)[0], axes[0].plot([], [], ":", color="k")[0]]
    lab += ["relu theory at $n \\to \\infty$\n(kink crossings, band 1$\\sigma$)", "fit $a + b/\\sqrt{n}$"]
    h2, lab2 = axes[2].get_legend_handles_labels()
    h += [axes[0].plot([], [], " ")[0]] + h2
    lab += ["two hidden layers,\nparameters of:"] + lab2
    fig.legend(h, lab, loc="outside right center", fontsize=8.5)
    deep = ", ".join(str(S) for S in params["deep_ensembles"])
    fig.suptitle(f"Kink crossings: {params['n_steps']} GD steps on 3 training inputs, $C_W$ = {params['C_W']}, "
                 f"$C_b$ = {params['C_b']}. Left, centre: one hidden layer, relu moves at $O(n^{{-1/2}})$ (nonzero "
                 "intercept), tanh at $O(1/n)$ (intercept 0).\nRight: two hidden layers, relu: the NTK of both "
                 "hidden layers' parameters moves at $O(n^{-1/2})$, the readout's at $O(1/n)$. Points: trained "
                 f"networks, float64, 1$\\sigma$ standard errors;\n{params['n_ensemble']} per width (one layer), "
                 f"{', '.join(str(S) for S in params['deep_ensembles'])} at $n$ = "
                 f"{', '.join(str(w) for w in params['deep_widths'])} (two layers)", fontsize=10)
    return fig


FIGURE = Figure(
    name="kink_crossing",
    description="relu vs tanh, one hidden layer: sqrt(n) E[NTK change] and sqrt(n) mean output shift after GD "
                "vs n; two hidden layers (relu): per-layer NTK change; kink-crossing theory",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
