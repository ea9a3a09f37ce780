"""Figure residual_gp: scoring interpretations of a network by interpretation + Gaussian-process residual
(sft.circuits.residual_gp).

(a) Planted network, d = 16 Gaussian inputs: f = 3 sparse strong relu circuits b_k relu(3 u_k . x - 4.5)
    (u_k orthonormal, b = 3, -2, 2.5; each fires on 7% of inputs) + a background of N = 1000 relu neurons,
    N^{-1/2} sum a_i relu(w_i . x), a_i ~ N(0, 1), w_i ~ N(0, I/d). Interpretations = subsets of the
    circuits. Points: held-out log-likelihood per point of the network's outputs under interpretation +
    residual GP (random-feature relu NNGP kernel, m features, hyperparameters by maximum marginal
    likelihood on n_fit inputs with input_scale = 1, C_b = 0 fixed (the background's true values), scored
    on M fresh inputs); error bars std(z^2/2)/sqrt(M). Labels: fitted
    noise variance (prediction for the complete interpretation: -> 0, amplitude -> a_var = 1).
(b) Whitened held-out residuals z of the complete interpretation and of one missing circuit 3, against
    N(0, 1) (line); legend: skewness and excess-kurtosis z-scores (null errors sqrt(6/M), sqrt(24/M)).
(c) Complete interpretation of (a) against the number m of random features: fitted amplitude (prediction
    a_var = 1) and fitted noise / a_var E[relu^2] (prediction 0 as m, n_fit -> oo); points only, no error
    bars (one fit per m). Observed (full mode): noise / variance falls from 0.30 (m = 32) to 0.01 (m = 2048)
    as predicted; the amplitude is ~1 for m <= 256 but drops to ~0.6-0.7 for m >= 512: the prediction
    holds for a background much wider than the data (N >> n_fit); here N = 1000 < n_fit = 2000, so the
    background is a rank-N function on the fitting set and the full-rank kernel sees that finite width.
    At M = 5000 the complete interpretation's kurtosis z is ~6 (flagged; it is < 4 at M <= 2000), against
    ~90 / ~380 (skew / kurtosis z) when circuit 3 is missed.
(d) Trained network: a student (one hidden layer, width 64, relu, standard parameterization with
    1/width readout, float64) trained by full-batch gradient descent on P inputs labelled by a sparse
    teacher of 3 relu units (same form as the circuits of (a), d = 8). Circuits of the student = its
    neurons aligned with a teacher unit (cosine of (w, b) with (u, c) > 0.9); background = the rest.
    Interpretations: all aligned neurons, all but those of one teacher unit, none; same diagnostics, with
    the residual kernel's input_scale = mean |w_i|^2 and C_b = mean c_i^2 over the background neurons
    (moment-matched to the student's own background, not learnt). Observed (full mode): the complete
    interpretation scores far above every incomplete one, but is itself flagged (excess kurtosis): the
    trained student's leftover ~16 neurons are a small structured remainder, not a wide random background,
    so "Gaussian background" is only a rough description of it.
Run ``python sims/fig_residual_gp.py [--quick]`` or ``sft figures --only residual_gp``.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np

from sft.circuits import residual_gp as rg
from sft.workflow import Figure, run_script

PLANTED = dict(d=16, width=1000, weight=3.0, bias=-4.5, b=[3.0, -2.0, 2.5])
TEACHER = dict(d=8, student_width=64, weight=3.0, bias=-3.0, b=[3.0, -2.0, 2.5], P=2000, steps=4000, lr=0.05)
QUICK = dict(n_fit=400, M=600, n_features=96, seed=0, dtype="float64", all_subsets=False,
             m_sweep=[32, 64, 128])
FULL = dict(n_fit=2000, M=5000, n_features=512, seed=0, dtype="float64", all_subsets=True,
            m_sweep=[32, 64, 128, 256, 512, 1024, 2048])


def planted(seed, n, d, width, weight, bias, b):
    """x (n, d), per-circuit outputs (n, K), background outputs (n,)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    bg = rg.neuron_contributions(x, rng.normal(size=(width, d)) / np.sqrt(d), rng.normal(size=width),
                                 activation="relu", scale=width ** -0.5).sum(1)
    U = np.linalg.qr(rng.normal(size=(d, len(b))))[0].T
    return x, rg.neuron_contributions(x, weight * U, np.array(b), activation="relu", bias=np.full(len(b), bias)), bg


def _summary(d):
    return np.array([d.heldout_loglik, d.heldout_loglik_err, d.noise, d.amplitude, d.prior_variance,
                     d.skewness_z, d.kurtosis_z, d.flagged])


SUMMARY = "heldout_loglik, err, noise, amplitude, prior_variance, skewness_z, kurtosis_z, flagged"


def compute_planted(*, n_fit, M, n_features, seed, dtype, all_subsets, m_sweep):
    x, circ, bg = planted(seed, n_fit + M, **PLANTED)
    f = bg + circ.sum(1)
    K = circ.shape[1]
    subsets = ([s for k in range(K + 1) for s in itertools.combinations(range(K), k)] if all_subsets
               else [tuple(range(k)) for k in range(K + 1)] + [(0, 1)])
    subsets = list(dict.fromkeys(subsets))
    rows, zs = [], {}
    for s in subsets:
        g = circ[:, list(s)].sum(1)
        d = rg.diagnose_interpretation((f[:n_fit], f[n_fit:]), (g[:n_fit], g[n_fit:]), x[:n_fit], x[n_fit:],
                                       key=jax.random.key(seed + 1), n_features=n_features, learn_input=False)
        rows.append(_summary(d))
        if s in ((0, 1, 2), (0, 1)):
            zs[s] = d.z
    mask = np.array([[k in s for k in range(K)] for s in subsets])
    g = circ.sum(1)
    sweep = np.array([_summary(rg.diagnose_interpretation((f[:n_fit], f[n_fit:]), (g[:n_fit], g[n_fit:]), x[:n_fit],
                                                          x[n_fit:], key=jax.random.key(seed + 2), n_features=m,
                                                          learn_input=False)) for m in m_sweep])
    return dict(mask=mask, summary=np.array(rows), z_complete=zs[(0, 1, 2)], z_missing=zs[(0, 1)], sweep=sweep,
                predicted_variance=rg.background_variance("relu", a_var=1.0))


def train_student(seed, d, student_width, weight, bias, b, P, steps, lr):
    """Teacher (U (3, d), c), student params (W, c_s, a) after full-batch GD on 1/2 mean (f - y)^2."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.normal(size=(d, len(b))))[0].T * weight
    c = np.full(len(b), bias)
    teacher = lambda x: rg.neuron_contributions(x, U, np.array(b), activation="relu", bias=c).sum(1)
    x = rng.normal(size=(P, d))
    y = jnp.asarray(teacher(x))
    params = (jnp.asarray(rng.normal(size=(student_width, d)) / np.sqrt(d)), jnp.zeros(student_width),
              jnp.asarray(rng.normal(size=student_width)))
    xj = jnp.asarray(x)

    def out(p, x):
        W, cs, a = p
        return jax.nn.relu(x @ W.T + cs) @ a / student_width

    def loss(p):
        return 0.5 * jnp.mean((out(p, xj) - y) ** 2)

    @jax.jit
    def run(p):
        def step(p, _):
            l, g = jax.value_and_grad(loss)(p)
            return jax.tree_util.tree_map(lambda q, gq: q - lr * student_width * gq, p, g), l
        return jax.lax.scan(step, p, None, length=steps)

    params, losses = run(params)
    return U, c, teacher, tuple(np.asarray(q) for q in params), np.asarray(losses)


def compute_trained(*, n_fit, M, n_features, seed, dtype, all_subsets, m_sweep):
    U, c, teacher, (W, cs, a), losses = train_student(seed, **TEACHER)
    width = TEACHER["student_width"]
    rng = np.random.default_rng(seed + 7)
    x = rng.normal(size=(n_fit + M, TEACHER["d"]))
    contrib = rg.neuron_contributions(x, W, a, activation="relu", bias=cs, scale=1.0 / width)
    f = contrib.sum(1)
    tv = np.concatenate([U, c[:, None]], 1)
    sv = np.concatenate([W, cs[:, None]], 1)
    cos = (sv @ tv.T) / np.linalg.norm(sv, axis=1)[:, None] / np.linalg.norm(tv, axis=1)[None, :]
    owner = np.where(cos.max(1) > 0.9, cos.argmax(1), -1)  # teacher unit each student neuron serves, or -1
    K = U.shape[0]
    subsets = [tuple(range(K))] + [tuple(j for j in range(K) if j != k) for k in range(K)] + [()]
    bgn = owner < 0  # background kernel moment-matched to the background neurons' own weights
    cw, cb = float(np.mean(np.sum(W[bgn] ** 2, 1))), float(np.mean(cs[bgn] ** 2))
    rows, zs = [], []
    for s in subsets:
        g = contrib[:, np.isin(owner, s)].sum(1)
        d = rg.diagnose_interpretation((f[:n_fit], f[n_fit:]), (g[:n_fit], g[n_fit:]), x[:n_fit], x[n_fit:],
                                       key=jax.random.key(seed + 1), n_features=n_features, learn_input=False,
                                       input_scale=cw, C_b=cb)
        rows.append(_summary(d))
        zs.append(d.z)
    rel = np.mean((f - teacher(x)) ** 2) / np.var(teacher(x))
    return dict(summary=np.array(rows), mask=np.array([[k in s for k in range(K)] for s in subsets]),
                owner=owner, kernel_input_scale=cw, kernel_C_b=cb, final_loss=losses[-1], relative_test_error=rel,
                z_complete=zs[0],
                max_cos=cos.max(0))


def pieces(params):
    return {"planted": dict(kind="planted", **params), "trained": dict(kind="trained", **params)}


def compute(*, kind, **kw):
    return compute_planted(**kw) if kind == "planted" else compute_trained(**kw)


def _label(row):
    return "{" + ",".join(str(k + 1) for k in np.nonzero(row)[0]) + "}"


def _loglik_panel(ax, res, title):
    s, mask = res["summary"], res["mask"]
    order = np.argsort([m.sum() for m in mask], kind="stable")
    xs = np.arange(len(order))
    for i, j in enumerate(order):
        col = "C3" if s[j, 7] else "C0"
        ax.errorbar(i, s[j, 0], yerr=s[j, 1], fmt="o", color=col, capsize=3)
        ax.annotate(f"noise {s[j, 2]:.2g}", (i, s[j, 0]), textcoords="offset points", xytext=(-14, -14), fontsize=7)
    ax.set_xticks(xs, [_label(mask[j]) for j in order], fontsize=8)
    ax.set_xlim(-0.5, len(order) - 0.2)
    lo, hi = np.min(s[:, 0] - s[:, 1]), np.max(s[:, 0] + s[:, 1])
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.3 * (hi - lo))
    ax.set_xlabel("circuits kept in the interpretation")
    ax.set_ylabel("held-out log-likelihood per point")
    ax.set_title(title, fontsize=10)
    ax.plot([], [], "o", color="C0", label="Gaussian residual (|z| < 4)")
    ax.plot([], [], "o", color="C3", label="flagged: skew or kurtosis |z| > 4")
    ax.legend(fontsize=8, loc="center left")
    ax.grid(alpha=0.3)


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(19, 4.8), layout="constrained")
    ax1, ax2, ax4, ax3 = fig.subplots(1, 4)
    p, t = results["planted"], results["trained"]
    _loglik_panel(ax1, p, "(a) planted: 3 sparse circuits + 1000-neuron background")
    full = p["summary"][p["mask"].all(1)][0]
    ax1.text(0.02, 0.97, f"complete: amplitude {full[3]:.2f} (predicted a_var = 1)\n"
             f"prior variance {full[4]:.2f} (predicted {float(p['predicted_variance']):.2f})",
             transform=ax1.transAxes, va="top", fontsize=8)
    bins = np.linspace(-5, 8, 66)
    zz = np.linspace(-5, 8, 300)
    ax2.plot(zz, np.exp(-zz ** 2 / 2) / np.sqrt(2 * np.pi), "k-", label="N(0, 1)")
    for key, name, col in (("z_complete", "complete {1,2,3}", "C0"), ("z_missing", "missing circuit 3", "C3")):
        g1, zs, g2, zk = rg.standardized_moments(p[key])
        ax2.hist(np.clip(p[key], -5, 8), bins=bins, density=True, histtype="step", color=col, lw=1.5,
                 label=f"{name}: skew z = {zs:.1f}, kurt z = {zk:.1f}")
    ax2.set_yscale("log")
    ax2.set_ylim(1e-4, 1)
    ax2.set_xlabel("whitened held-out residual z (clipped to [-5, 8])")
    ax2.set_ylabel("density")
    ax2.set_title("(b) planted: whitened held-out residuals", fontsize=10)
    ax2.legend(fontsize=8)
    m = np.array(params["m_sweep"], dtype=float)
    sw = p["sweep"]
    ax4.plot(m, sw[:, 3], "o", color="C0", label="fitted amplitude s")
    ax4.axhline(1.0, color="C0", ls="-", lw=1, label="prediction (N >> n_fit): a_var = 1")
    ax4.plot(m, sw[:, 2] / float(p["predicted_variance"]), "s", color="C1",
             label="fitted noise / background variance")
    ax4.axhline(0.0, color="C1", ls="-", lw=1, label="prediction: noise -> 0 (m, n_fit -> oo)")
    ax4.set_xscale("log")
    ax4.set_xticks(m, [f"{int(v)}" for v in m])
    ax4.minorticks_off()
    ax4.set_xlabel("number of random features m")
    ax4.set_ylabel("fitted value")
    ax4.set_title("(c) planted, complete interpretation: fit vs prediction", fontsize=10)
    ax4.legend(fontsize=8)
    ax4.grid(alpha=0.3)
    _loglik_panel(ax3, t, "(d) trained student (width 64) of a 3-unit sparse teacher")
    ax3.text(0.02, 0.97, f"student relative test error {float(t['relative_test_error']):.1e}; aligned neurons\n"
             f"per teacher unit: {np.bincount(t['owner'][t['owner'] >= 0], minlength=3).tolist()}",
             transform=ax3.transAxes, va="top", fontsize=8)
    fig.suptitle(f"Interpretation + residual GP: fitted on n_fit = {params['n_fit']}, scored on M = {params['M']} "
                 f"fresh Gaussian inputs; relu random-feature NNGP kernel, m = {params['n_features']} features; "
                 f"float64, seed {params['seed']}", fontsize=10)
    return fig


FIGURE = Figure(name="residual_gp",
                description="interpretation + GP residual: held-out log-lik, skew/kurtosis flags; planted and trained",
                quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
