"""Networks and time needed to measure the ReLU vertex slope nu (= 5) to 1% relative standard error:
the per-network-metric (variance-reduced) estimator against the naive output-kurtosis estimator.

Setting: ReLU at criticality (C_W = 2, C_b = 0), ``depth`` L hidden layers of width n, one input,
float64. For this scale-invariant sigma the readout metric obeys exactly, at any width
(:mod:`sft.finite.deep_linear`),

    R = Var(G^(L+1)) / E[G^(L+1)]^2 = (1 + nu/n)^L - 1,      excess kurtosis of f = 3 R,

so nu = n ((1 + R)^(1/L) - 1) (:func:`sft.sim.nu_from_relative_variance`) has no O(1/n)
bias, while the first-order V^(L+1) / (L K^2) = n R / L = nu + O(nu^2 L / n) does (shown for
comparison). Estimators of R, all over S independent networks (jackknife errors, 50 blocks):

    metric (variance reduced): R_hat = k2(G) / mean(G)^2 of the per-network readout metric
        G = (2/n) sum_j relu(z^(L)_j)^2 (:func:`sft.sim.layer_kernels`): uses all n neurons of
        layer L and the exact Gaussianity of the output given layer L (no noise of the output draw);
    naive: R_hat = k4(f) / (3 k2(f)^2), the excess kurtosis of one output f across networks
        (:func:`sft.sim.ensemble_outputs`, the same networks);
    layer ratios (scale-invariant only, for reference): X_l = G^(l+1) / G^(l), l = 1 .. L, are
        i.i.d. over layers and networks with Var(X) = nu / n exactly, so nu_hat = n k2(X)/mean(X)^2
        pools L samples per network.

Networks for 1%: S_1% = (per-network standard deviation / (0.01 nu))^2 with the per-network
standard deviation = (jackknife error) sqrt(S) from a pilot run; then one run of S_1% networks
confirms the metric estimator. Times are wall-clock after a warm-up run (compilation excluded).

Usage (repository root):  PYTHONPATH=. python sims/benchmarks/bench_nu.py [--width 64] [--depth 4] [--pilot 4000]
"""
from __future__ import annotations

import argparse
import math
import time

import jax
import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.sim import jackknife, k2, k4, nu_from_relative_variance
from sft.finite import nu_scale_invariant
from sft.sim import ensemble_outputs, layer_kernels
from sft.workflow import Report

N_BLOCKS = 50


def simulate(kind, seed, *, n_ensemble, width, depth):
    """(array, seconds): per-network metrics G^(l) (S, depth+1) or outputs f (S,) of ReLU networks."""
    x = np.array([[1.0, 0.0, 0.0, 0.0]]) * 2.0  # |x|^2 / n_0 = 1
    kw = dict(n_ensemble=n_ensemble, widths=[width] * depth, activation="relu", C_W=2.0, C_b=0.0)
    fn = layer_kernels if kind == "metric" else ensemble_outputs
    t = time.perf_counter()
    out = jax.block_until_ready(fn(jax.random.key(seed), x, **kw))
    seconds = time.perf_counter() - t
    return np.asarray(out)[:, :, 0, 0] if kind == "metric" else np.asarray(out)[:, 0, 0], seconds


def nu_metric(G, width):
    """(nu_hat, error) from the readout metric, exact inversion of R = (1 + nu/n)^L - 1."""
    widths = [width] * (G.shape[1] - 1)
    return jackknife(lambda g: nu_from_relative_variance(k2(g[:, -1]) / g[:, -1].mean() ** 2, widths),
                     G, n_blocks=N_BLOCKS)


def nu_first_order(G, width):
    """(nu_hat, error) = n R_hat / L = V^(L+1) / (L K^2): first order in 1/n, biased by O(nu^2 L/n)."""
    L = G.shape[1] - 1
    return jackknife(lambda g: width * k2(g[:, -1]) / g[:, -1].mean() ** 2 / L, G, n_blocks=N_BLOCKS)


def nu_naive(f, width, depth):
    """(nu_hat, error) from the excess kurtosis of one output f: R_hat = k4 / (3 k2^2), exact inversion."""
    return jackknife(lambda s: nu_from_relative_variance(k4(s) / (3 * k2(s) ** 2), [width] * depth),
                     f, n_blocks=N_BLOCKS)


def nu_layer_ratios(G, width):
    """(nu_hat, error) = n k2(X) / mean(X)^2 over all X_l = G^(l+1)/G^(l) (jackknife over networks)."""
    def stat(g):
        X = (g[:, 1:] / g[:, :-1]).reshape(-1)
        return width * k2(X) / X.mean() ** 2
    return jackknife(stat, G, n_blocks=N_BLOCKS)


def relu_factor_moments(width, kmax=4):
    """E[X^k], k = 0 .. kmax, of one layer's factor X = G^(l+1)/G^(l) = (2/n) sum_j s_j u_j^2 (ReLU,
    C_W = 2, C_b = 0; s_j ~ Bernoulli(1/2), u_j ~ N(0, 1)): with m ~ Binomial(n, 1/2) active units,
    E[X^k] = (2/n)^k E_m[m (m + 2) .. (m + 2k - 2)] (chi-square moments; THEORY.md's Binomial mixture)."""
    from scipy.stats import binom
    m = np.arange(width + 1.0)
    pm = binom.pmf(m, width, 0.5)
    return np.array([(2.0 / width) ** k * pm @ np.prod([m + 2 * j for j in range(k)], axis=0)
                     if k else 1.0 for k in range(kmax + 1)])


def _relvar_influence_var(M):
    """Var of the influence function of k2/mean^2 for a variable with raw moments M[k] / M[1]^k
    (delta method): with d = x/mean - 1, c_k = E[d^k], Var = c4 - c2^2 - 4 c2 c3 + 4 c2^3."""
    M = M / M[1] ** np.arange(M.size)
    c2, c3 = M[2] - 1, M[3] - 3 * M[2] + 2
    c4 = M[4] - 4 * M[3] + 6 * M[2] - 3
    return c4 - c2 ** 2 - 4 * c2 * c3 + 4 * c2 ** 3


def exact_per_network_sd(width, depth):
    """Large-S standard deviation per network of each nu estimator (delta method on exact moments).

    G^(L+1)/K = prod of L i.i.d. factors X, so E[G^k] = E[X^k]^L; f = sqrt(G) g so E[f^2k] =
    (2k-1)!! E[G^k]. Kurtosis k4/k2^2 of a symmetric f: influence (f^4 - m4)/m2^2 - 2 m4 (f^2 - m2)/m2^3.
    nu = n ((1 + R)^(1/L) - 1), dnu/dR = (n / L) (1 + R)^(1/L - 1); layer ratios: nu = n R_X, L per network.
    """
    X = relu_factor_moments(width)
    M = X ** depth
    R = M[2] / M[1] ** 2 - 1
    dnu = width / depth * (1 + R) ** (1 / depth - 1)
    m2, m4, m6, m8 = M[1], 3 * M[2], 15 * M[3], 105 * M[4]
    a, b = 1 / m2 ** 2, -2 * m4 / m2 ** 3
    var_kurt = a * a * (m8 - m4 ** 2) + b * b * (m4 - m2 ** 2) + 2 * a * b * (m6 - m4 * m2)
    sd_metric = math.sqrt(_relvar_influence_var(M)) * dnu
    return {"metric, exact inversion": sd_metric,
            "metric, first order n R/L": math.sqrt(_relvar_influence_var(M)) * width / depth,
            "layer ratios (scale-inv.)": width * math.sqrt(_relvar_influence_var(X) / depth),
            "naive: kurtosis of f": math.sqrt(var_kurt) / 3 * dnu}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--pilot", type=int, default=4000, help="networks in the pilot run")
    p.add_argument("--target", type=float, default=0.01, help="relative standard error wanted")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    n, L, S = a.width, a.depth, a.pilot
    nu = nu_scale_invariant(1.0, 0.0)
    size = dict(width=n, depth=L)
    print(f"ReLU C_W=2 C_b=0, width {n}, depth {L}, one input, float64; jax {jax.__version__}, "
          f"{jax.device_count()} x {jax.devices()[0].platform}; target {a.target:.0%} of nu = {nu:g}")
    t0 = time.perf_counter()
    for kind in ("metric", "outputs"):  # warm-up: compile with the pilot's shapes
        simulate(kind, a.seed + 1000, n_ensemble=S, **size)
    print(f"warm-up (compilation + one pilot-sized run each): {time.perf_counter() - t0:.1f} s")

    G, t_metric = simulate("metric", a.seed, n_ensemble=S, **size)
    f, t_out = simulate("outputs", a.seed, n_ensemble=S, **size)  # the same networks as G
    rows = [("metric, exact inversion", nu_metric(G, n), t_metric),
            ("metric, first order n R/L", nu_first_order(G, n), t_metric),
            ("layer ratios (scale-inv.)", nu_layer_ratios(G, n), t_metric),
            ("naive: kurtosis of f", nu_naive(f, n, L), t_out)]
    needed, exact_sd = {}, exact_per_network_sd(n, L)
    report = Report(f"nu of ReLU, width {n}, depth {L} (the first-order rows carry an O(nu^2 L/n) bias)")
    print(f"\npilot: {S} networks (metric {t_metric:.2f} s, outputs {t_out:.2f} s); sd/network: "
          "pilot (jackknife) and exact (delta method)")
    print(f"{'estimator':<27} {'nu_hat':>8} {'+-':>7} {'rel.err':>8} {'sd/network':>11} {'exact':>7} "
          f"{'S for 1%':>10} {'(exact)':>9} {'time for 1%':>12}")
    for name, (est, err), seconds in rows:
        sd = float(err) * math.sqrt(S)
        needed[name] = s1 = math.ceil((sd / (a.target * nu)) ** 2)
        s1_exact = math.ceil((exact_sd[name] / (a.target * nu)) ** 2)
        print(f"{name:<27} {float(est):>8.4f} {float(err):>7.4f} {float(err) / nu:>8.2%} {sd:>11.2f} "
              f"{exact_sd[name]:>7.2f} {s1:>10d} {s1_exact:>9d} {s1 * seconds / S:>11.1f}s")
        report.add(f"{name}, S = {S}", theory=nu, estimate=est, error=err)
    ratio = needed["naive: kurtosis of f"] / needed["metric, exact inversion"]
    ratio_exact = (exact_sd["naive: kurtosis of f"] / exact_sd["metric, exact inversion"]) ** 2
    print(f"networks needed, naive / metric: {ratio:.1f}x (pilot), {ratio_exact:.1f}x (exact)")

    S1 = needed["metric, exact inversion"]
    G1, t1 = simulate("metric", a.seed + 1, n_ensemble=S1, **size)
    est, err = nu_metric(G1, n)
    print(f"\nconfirmation: {S1} networks in {t1:.1f} s: nu_hat = {float(est):.4f} +- {float(err):.4f} "
          f"(relative error {float(err) / nu:.2%}, target {a.target:.0%})")
    report.add(f"metric, exact inversion, S = {S1}", theory=nu, estimate=est, error=err)
    for name, fn in (("metric, first order n R/L", nu_first_order), ("layer ratios (scale-inv.)", nu_layer_ratios)):
        est_o, err_o = fn(G1, n)
        report.add(f"{name}, S = {S1}", theory=nu, estimate=est_o, error=err_o)
    print()
    print(report)
    print(f"\ntotal wall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
