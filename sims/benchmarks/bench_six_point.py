"""Cost of the O(1/n^2) theory and of measuring the six-point function by Monte Carlo.

Part A, theory at depth 10 (tanh, C_W = 1, C_b = 0; inputs on the sphere |x|^2/n_0 = 1 of R^8
spread at random, seed 0), for N = 1, 2, 3, 4, 8 inputs, seconds (best of ``--repeats`` after a
warm-up call, so JAX compilation is excluded; helper ``best_time`` shared with bench_ensemble.py; one
repeat at N = 8) and peak Python/numpy memory (tracemalloc, one call; JAX buffers are not traced):
- reference, measured in the same run: the O(1/n) four-point vertex recursion
  :func:`sft.finite.multi_input` (single input: :func:`sft.finite.single_input`) at the same N; the
  ratio column is (time) / (reference time);
- the six-point vertex recursion to O(1/n^2): :func:`sft.finite.second_order_single_input` (N = 1) and
  :func:`sft.finite.second_order_multi_input` (default route: the exact nested rule for N <= 3, randomized
  quasi-Monte Carlo for N >= 4 with its defaults, 8 scrambles of 2^13 (N = 4) or 2^15 (N = 8) Sobol points);
  the last column is its relative integration error, max stderr(U) / max |U| at the readout ("exact" on the
  rule: quadrature accuracy ~1e-12);
- the effective-action map (:func:`sft.symbolic.couplings_from_cumulants`, order 2) on N inputs, from
  random symmetric cumulant tensors (its cost depends only on N; the N^6 six-point tensor dominates).

Part B, Monte Carlo cost of kappa6 to 5 % (one input, width ``--width``, depth ``--mc-depth``, tanh
and ReLU at criticality, float64): a pilot of S networks gives the jackknife relative error e(S) of
kappa6 by two estimators of the same quantity,
- plain: the sixth cumulant of the outputs f (k-statistics from raw moments,
  :func:`sft.sim.output_cumulants_from_samples`), f = G^(1/2) u with u ~ N(0, 1) (the exact law of a
  network's output given its readout metric G);
- variance-reduced: 15 k3(G) from the per-network metrics (conditional Gaussianity,
  :func:`sft.sim.output_cumulants_from_metrics`);
and the networks needed for 5 % are S (e(S) / 0.05)^2 (error ~ S^-1/2), e relative to the
variance-reduced value (the precise one) for both. The metrics G are sampled
layer by layer from their exact conditional law (:func:`sft.sim.sample_metrics`); the time per
network of real networks (:func:`sft.sim.layer_kernels`, measured here at S = ``--real``) converts
network counts to seconds.

Usage (repository root): PYTHONPATH=. python sims/benchmarks/bench_six_point.py [--repeats R]
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
import tracemalloc
from pathlib import Path

import jax
import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.finite import multi_input, second_order_multi_input, second_order_single_input, single_input
from sft.sim import (jackknife, layer_kernels, output_cumulants_from_metrics,
                     output_cumulants_from_samples, sample_metrics)
from sft.symbolic import coupling_keys, couplings_from_cumulants

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ensemble import best_time  # noqa: E402  (same timing helper as the other benchmarks)


def peak_mib(fn):
    """Peak traced memory (MiB) of one call of fn."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def _sym(t):
    return sum(np.transpose(t, p) for p in itertools.permutations(range(t.ndim))) / math.factorial(t.ndim)


def theory_rows(repeats):
    rng = np.random.default_rng(0)
    kw = dict(activation="tanh", C_W=1.0, C_b=0.0)
    depth = 10
    rows = []
    for N in (1, 2, 3, 4, 8):
        x = rng.normal(size=(N, 8))
        x *= np.sqrt(8) / np.linalg.norm(x, axis=1, keepdims=True)  # |x|^2 / n_0 = 1
        rep = repeats if N < 8 else 1  # the N = 8 reference takes ~10-30 s per call
        if N == 1:
            ref = lambda: single_input(1.0, depth=depth, **kw)  # noqa: E731
        else:
            ref = lambda: multi_input(x, depth=depth, **kw)  # noqa: E731
        t_ref = best_time(ref, rep)
        rows.append((N, "O(1/n) four-point vertex recursion (reference)", t_ref, peak_mib(ref), 1.0, ""))
        if N == 1:
            f = lambda: second_order_single_input(1.0, depth=depth, **kw)  # noqa: E731
            t = best_time(f, rep)
            rows.append((N, "O(1/n^2) six-point vertex recursion, single input", t, peak_mib(f), t / t_ref,
                         "exact"))
        out = {}
        f = lambda: out.update(res=second_order_multi_input(x, depth=depth, **kw))  # noqa: E731
        t = best_time(f, rep)
        res = out["res"]
        err = ("exact" if res.stderr is None else
               f"{np.abs(res.stderr['U'][-1]).max() / np.abs(res.U[-1]).max():.1e}")
        rows.append((N, f"O(1/n^2) six-point vertex recursion, multi-input ({res.integration})", t, peak_mib(f),
                     t / t_ref, err))
        A = rng.normal(size=(N, N))
        K = A @ A.T + N * np.eye(N)
        kap = {key: _sym(rng.normal(size=(N,) * key[0])) for key in coupling_keys(2)}
        f = lambda: couplings_from_cumulants(K, kap)  # noqa: E731
        t = best_time(f, rep)
        rows.append((N, "effective-action couplings g2, g4, g6 to O(1/n^2)", t, peak_mib(f), t / t_ref, ""))
    return rows


def mc_rows(width, depth, pilot, n_real):
    rows = []
    x = np.zeros((1, 8))
    x[0, 0] = np.sqrt(8)
    for activation, C_W in (("tanh", 1.0), ("relu", 2.0)):
        kw = dict(widths=[width] * depth, activation=activation, C_W=C_W, C_b=0.0)
        t0 = time.perf_counter()
        G = sample_metrics(np.random.default_rng(1), 1.0, n_networks=pilot, **kw)[:, -1]
        t_sample = (time.perf_counter() - t0) / pilot
        f = np.sqrt(G[:, 0, 0]) * np.random.default_rng(2).standard_normal(pilot)
        real = lambda: layer_kernels(jax.random.key(3), x, n_ensemble=n_real, dtype="float64", **kw)  # noqa: E731
        t_real = best_time(real, 1) / n_real
        k6_metric, e_metric = jackknife(lambda g: output_cumulants_from_metrics(g)[2].item(), G)
        k6_plain, e_plain = jackknife(lambda s: output_cumulants_from_samples(s[:, None])[2].item(), f)
        for name, k6, e in (("plain (outputs)", k6_plain, e_plain),
                            ("variance-reduced (metrics)", k6_metric, e_metric)):
            rel = abs(e / k6_metric)  # relative to the precise (variance-reduced) value
            need = pilot * (rel / 0.05) ** 2
            rows.append((activation, name, float(k6), float(rel), need, need * t_real, need * t_sample))
    return rows, t_real, t_sample


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--mc-depth", type=int, default=2)
    p.add_argument("--pilot", type=int, default=200_000)
    p.add_argument("--real", type=int, default=20_000)
    a = p.parse_args(argv)
    print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].platform}, float64; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("\nPart A: theory at depth 10, tanh (C_W = 1, C_b = 0); compilation excluded")
    print(f"{'N':>2}  {'task':<68} {'seconds':>9} {'peak MiB':>9} {'x ref':>8} {'int. err U':>10}")
    for N, task, t, mem, ratio, err in theory_rows(a.repeats):
        print(f"{N:>2}  {task:<68} {t:>9.4f} {mem:>9.2f} {ratio:>8.2f} {err:>10}")
    rows, t_real, t_sample = mc_rows(a.width, a.mc_depth, a.pilot, a.real)
    print(f"\nPart B: Monte Carlo kappa6 to 5 %, one input, width {a.width}, depth {a.mc_depth}, "
          f"pilot {a.pilot} networks; real networks {t_real * 1e6:.1f} us each (layer_kernels, "
          f"S = {a.real}), metric sampler {t_sample * 1e6:.2f} us each")
    print(f"{'act':<5} {'estimator':<28} {'kappa6':>10} {'rel.err':>8} {'networks for 5%':>16} "
          f"{'s (real nets)':>14} {'s (sampler)':>12}")
    for act, name, k6, rel, need, s_real, s_samp in rows:
        print(f"{act:<5} {name:<28} {k6:>10.4g} {rel:>8.3f} {need:>16.3g} {s_real:>14.3g} {s_samp:>12.3g}")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
