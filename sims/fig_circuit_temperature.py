"""Figure circuit_temperature: planted circuits against the temperature of the tempered local posterior
(TLBP) -- the precision dial noises away each circuit above its threshold temperature t_k.

Model (sft.circuits.survival, float64): a linear layer W (n, m = 2n) trained (least squares) on N = m inputs
with labels of a teacher C = sum_k theta_k u_k v_k^T (three circuits, u, v Haar, no background), theta_k^2 =
t_k^iso sqrt(n m) so the whitened thresholds are t_k^iso = ``t_k`` for every size. Two input laws: whitened
(S = X^T X / N = 1) and non-whitened (half the inputs of variance 1, half 1/4).
Sampling (points): :func:`sft.sim.sample_tlbp`, MALA (exact), gamma = 0, on the actual loss L_N of both
layers at once (the sum of the two losses on a shared sample axis: a product density of independent blocks,
one compilation per temperature); step ``step_fraction`` x t (top curvature 1/t in both blocks; 0.15 at
D = 2 x 288, 0.1 at D = 2 x 1152, where 0.15 leaves some chains accepting < 5%), chains from w*,
``burn_in`` steps, then ``n_steps`` with a draw every ``thin``; per chain the mean over its draws, mean
+- 1 standard error over ``n_chains`` chains. JAX seed ``seed`` + temperature index.
Finite-size reference (dashed): exact draws W = w* + Z (S/t)^{-1/2} of the same problems
(:func:`sft.circuits.tlbp_gaussian_draws`, numpy seed ``seed``), ``n_exact`` per temperature.
Theory (solid, n, m -> oo): whitened, the Benaych-Georges & Nadakuditi (2012) closed forms
(:func:`sft.circuits.isotropic_survival`); non-whitened, the T-matrix with the Silverstein resolvent of the
column-variance background (:func:`sft.circuits.anisotropic_survival`). Vertical dotted lines: t_k
(:func:`sft.circuits.threshold_temperature`, :func:`sft.circuits.anisotropic_threshold_temperature`).
Panel (f): what happens ABOVE t_k at finite size -- the overlap of the top singular vector with u_1 against
the size n at fixed t / t_1 (exact draws, ``n_decay`` per point), with the fitted power of n.
Run ``python sims/fig_circuit_temperature.py [--quick]`` or ``sft figures --only circuit_temperature``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np

from sft.circuits import (anisotropic_survival, anisotropic_threshold_temperature, isotropic_survival,
                          planted_linear_layer, survival_statistics, threshold_temperature, tlbp_gaussian_draws)
from sft.sim import sample_tlbp
from sft.workflow import Figure, run_script

COMMON = dict(t_k=[4.0, 1.5, 0.5], variances=[1.0, 0.25], seed=0, dtype="float64")
QUICK = dict(n=12, temperatures=[0.3, 3.0], n_chains=8, n_steps=120, burn_in=300, thin=40, step_fraction=0.15,
             dense=[0.1, 0.3, 1.0, 3.0, 10.0, 30.0], n_exact=200, decay_sizes=[8, 16, 32],
             decay_ratios=[2.0, 8.0], n_decay=100, n_theory=30, **COMMON)
FULL = dict(n=24, temperatures=[0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.5, 2.2, 3.0, 4.5, 7.0, 12.0, 30.0],
            n_chains=64, n_steps=800, burn_in=800, thin=40, step_fraction=0.1, dense=list(np.geomspace(0.05, 60, 30)),
            n_exact=400, decay_sizes=[12, 24, 48, 96, 192], decay_ratios=[0.5, 1.0, 2.0, 4.0, 16.0],
            n_decay=200, n_theory=80, **COMMON)
FIELDS = ("left", "right", "output", "score")


def _input_variances(m, variances):
    return np.where(np.arange(m) < m // 2, *variances)


def problems(n, t_k, variances, seed):
    """(whitened, non-whitened) linear-layer problems of size n x 2n with whitened thresholds t_k."""
    m = 2 * n
    th = np.sqrt(np.array(t_k) * np.sqrt(n * m))
    return [planted_linear_layer(n, m, th, n_samples=m, seed=seed + j, input_variances=lam)
            for j, lam in enumerate((None, _input_variances(m, variances)))]


def pieces(params):
    base = dict(n=params["n"], t_k=params["t_k"], variances=params["variances"], seed=params["seed"],
                dtype=params["dtype"])
    out = {f"mala_t{i}": dict(kind="mala", t=float(t), index=i, n_chains=params["n_chains"],
                              n_steps=params["n_steps"], burn_in=params["burn_in"], thin=params["thin"],
                              step_fraction=params["step_fraction"], **base)
           for i, t in enumerate(params["temperatures"])}
    out["exact"] = dict(kind="exact", dense=[float(t) for t in params["dense"]], n_exact=params["n_exact"], **base)
    ts = list(params["temperatures"]) + list(params["dense"])
    out["theory"] = dict(kind="theory", t_range=[min(ts) / 1.3, max(ts) * 1.3], n_theory=params["n_theory"], **base)
    out["decay"] = dict(kind="decay", sizes=params["decay_sizes"], ratios=params["decay_ratios"],
                        n_decay=params["n_decay"], **{**base, "n": None})
    return out


def compute(*, kind, n, t_k, variances, seed, dtype, **kw):
    assert dtype == "float64"
    if kind == "mala":
        return _mala(n=n, t_k=t_k, variances=variances, seed=seed, **kw)
    if kind == "theory":
        m = 2 * n
        th = np.sqrt(np.array(t_k) * np.sqrt(n * m))
        lam = _input_variances(m, variances)
        tt = np.geomspace(*kw["t_range"], kw["n_theory"])
        theory = [isotropic_survival(th, tt, n=n, m=m), anisotropic_survival(th, tt, lam, n=n)]
        out = dict(t=tt, t_k0=threshold_temperature(th, n=n, m=m), t_k1=anisotropic_threshold_temperature(th, lam, n=n))
        out.update({f"{f}{j}": getattr(theory[j], f) for f in FIELDS for j in range(2)})
        return out
    if kind == "exact":
        probs = problems(n, t_k, variances, seed)
        out = {}
        for j, p in enumerate(probs):
            for i, t in enumerate(kw["dense"]):
                st = survival_statistics(tlbp_gaussian_draws(p, t, kw["n_exact"], seed=seed + 100 + i), p.U, p.V,
                                         p.thetas)
                for f in FIELDS:
                    out.setdefault(f"{f}{j}", []).append(st[f].mean(0))
        return {k: np.array(v) for k, v in out.items()}
    # decay: overlap of circuit 1 (whitened) at t = ratio * t_1 against the size
    ov = np.zeros((len(kw["ratios"]), len(kw["sizes"]), 2))
    for b, size in enumerate(kw["sizes"]):
        p = problems(size, t_k, variances, seed + 7 * b)[0]
        for a, ratio in enumerate(kw["ratios"]):
            st = survival_statistics(tlbp_gaussian_draws(p, ratio * t_k[0], kw["n_decay"], seed=seed + 1000 + b), p.U,
                                     p.V, p.thetas)
            ov[a, b] = st["left"][:, 0].mean(), st["left"][:, 0].std(ddof=1) / np.sqrt(kw["n_decay"])
    return dict(overlap=ov)


def _mala(*, n, t_k, variances, seed, t, index, n_chains, n_steps, burn_in, thin, step_fraction):
    """Per-chain means of the survival statistics of both problems at temperature t (MALA)."""
    probs = problems(n, t_k, variances, seed)
    D = probs[0].w_star.size

    def loss(w, batch):
        return probs[0].loss(w[:D], batch[:2]) + probs[1].loss(w[D:], batch[2:])

    r = sample_tlbp(loss, jnp.asarray(np.concatenate([p.w_star for p in probs])), jax.random.key(seed + index),
                    data=probs[0].data + probs[1].data, temperature=t, gamma=0.0, method="mala",
                    step_size=step_fraction * t, n_chains=n_chains, n_steps=n_steps, burn_in=burn_in, thin=thin,
                    record=lambda w: w)
    samples = np.asarray(r.samples)
    out = dict(acceptance=np.asarray(r.acceptance_rate))
    for j, p in enumerate(probs):
        st = survival_statistics(samples[..., j * D:(j + 1) * D].reshape(n_chains, -1, n, 2 * n), p.U, p.V, p.thetas)
        for f in FIELDS:
            out[f"{f}{j}"] = st[f].mean(axis=1)            # (chains, circuits)
    return out


def plot(results, params):
    n, m, tk_iso = params["n"], 2 * params["n"], np.array(params["t_k"])
    th = np.sqrt(tk_iso * np.sqrt(n * m))
    ts = np.array(params["temperatures"])
    dense = np.array(params["dense"])
    theo = results["theory"]
    tt, tks = theo["t"], [theo["t_k0"], theo["t_k1"]]
    fig = matplotlib.figure.Figure(figsize=(15, 9), layout="constrained")
    ax = fig.subplots(2, 3)
    panels = [(0, 0, "left", 0), (0, 1, "output", 0), (0, 2, "score", 0), (1, 0, "left", 1), (1, 1, "output", 1)]
    ylabels = dict(left=r"overlap $|\langle \hat u_k, u_k\rangle|^2$ ($k$-th singular pair)",
                   output=r"output kept $a_k = s_k\langle\hat u_k,u_k\rangle\langle\hat v_k,v_k\rangle/\theta_k$",
                   score=r"held-out score $S_K = 1 - |W_K - C|_F^2/|C|_F^2$, $K = k$")
    words = dict(left="overlap", output="output kept by the k-th pair", score="interpretation keeping k pairs")
    case = ["whitened inputs", "non-whitened inputs (variances 1, 1/4)"]
    for row, col, field, j in panels:
        a = ax[row, col]
        for k in range(th.size):
            colr = f"C{k}"
            a.plot(tt, theo[f"{field}{j}"][:, k], "-", color=colr, lw=1.6,
                   label=rf"circuit {k + 1}: theory $n\to\infty$, $t_{k + 1}$ = {tks[j][k]:.3g}")
            a.plot(dense, results["exact"][f"{field}{j}"][:, k], "--", color=colr, lw=0.9, alpha=0.8,
                   label=f"exact Gaussian TLBP, {n} x {m}" if k == 0 else None)
            pc = np.array([results[f"mala_t{i}"][f"{field}{j}"][:, k] for i in range(ts.size)])
            a.errorbar(ts, pc.mean(1), pc.std(1, ddof=1) / np.sqrt(pc.shape[1]), fmt="o", color=colr, ms=4.5,
                       capsize=2.5, label=f"MALA, {n} x {m}" if k == 0 else None)
            a.axvline(tks[j][k], color=colr, ls=":", lw=1)
        a.set(xscale="log", xlabel=r"temperature $t = 1/(n\beta)$", ylabel=ylabels[field])
        a.set_title(f"({'abcde'[3 * row + col]}) {case[j]}: {words[field]}", fontsize=10)
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="upper right" if field == "score" else "lower left")
    ax[0, 2].set_ylim(-1.5, 1.05)
    # (f) finite-size decay above t_1
    d = results["decay"]["overlap"]
    sizes = np.array(params["decay_sizes"], dtype=float)
    a = ax[1, 2]
    for i, ratio in enumerate(params["decay_ratios"]):
        y, se = d[i, :, 0], d[i, :, 1]
        slope = np.polyfit(np.log(sizes), np.log(y), 1)[0]
        a.errorbar(sizes, y, se, fmt="o-", color=f"C{i + 3}", ms=4, capsize=2.5, lw=1,
                   label=rf"$t/t_1$ = {ratio:g}: slope {slope:.2f}")
        if ratio < 1:   # n -> oo overlap (depends on t/t_1 only); 0 at and above the threshold
            a.axhline(isotropic_survival(th[:1], ratio * tk_iso[0], n=n, m=m).left[0, 0], color=f"C{i + 3}", lw=0.8)
    a.plot(sizes, 1 / sizes, "k:", label=r"$1/n$ (random direction)")
    a.set(xscale="log", yscale="log", xlabel=r"size $n$ ($m = 2n$)", ylabel=r"$|\langle \hat u_1, u_1\rangle|^2$")
    a.set_xticks(sizes, [f"{int(v)}" for v in sizes])
    a.minorticks_off()
    a.set_title(r"(f) circuit 1 at fixed $t/t_1$ against size (exact draws)", fontsize=10)
    a.grid(alpha=0.3, which="both")
    a.legend(fontsize=7)
    fig.suptitle("Planted circuits against the temperature of the tempered local posterior (linear layer, "
                 rf"$\gamma = 0$): BBP threshold $t_k$ where $\theta_k^2 = \sqrt{{nm}}\,t_k$ (whitened)"
                 f"\nMALA: {params['n_chains']} chains, mean $\\pm$ 1 s.e. over chains, float64; dashed: "
                 f"{params['n_exact']} exact Gaussian draws of the same finite problem", fontsize=10)
    return fig


FIGURE = Figure(name="circuit_temperature",
                description="planted circuits against TLBP temperature: overlap, output, held-out score; BBP t_k",
                quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
