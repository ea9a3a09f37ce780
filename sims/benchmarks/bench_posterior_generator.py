"""Compile and run times of the generated perturbative posterior (sft.predict.perturbative_posterior), numpy
against JAX, orders 1 and 2, N = 5, 10, 15 points.

Prior data: random fully symmetric float64 tensors (seed 0): K = A A^T / N + 0.1 I, dK, kappa_4, kappa_6 normal
entries symmetrized; P = N - 2 training points, M = 2 test points, noise 0.3, n = 1, four_point=True (every
generated term: 3/3/1 at order 1, plus 19/20/8 at order 2).

Measured (this machine; load average printed, since it is shared; best of ``--repeats`` for run times):
- numpy: path search (the one-off einsum_path search of the program, _program), call (the whole
  perturbative_posterior call: input validation, which reads every tensor a few times, plus evaluation) and
  eval (the contraction program alone, _assemble on prepared inputs);
- reference route in the same run: every connected term as its own np.einsum with optimize=True (contraction
  order searched per call, nothing shared between terms), the same prepared inputs: compare with numpy eval;
- jax: compile (first call minus a call: one jax.jit trace + XLA compile per order and shapes, after a warm-up
  of JAX itself), call (numpy inputs: validation in numpy, the copy of the inputs to JAX, the compiled
  program) and eval (the compiled program alone on inputs already in JAX: N = 15 moves 91 MB of kappa_6),
  and the jit(grad) compile of d(sum of the order-2 mean)/d(noise) (order 2 only);
- the machine's float64 matrix-product rate (1024^3) as the hardware reference.
The eager / per-term jax.numpy.einsum route of the issue (185 s eager, 62 s to jit at N = 5) is not re-run.

Usage (repository root):  PYTHONPATH=. python sims/benchmarks/bench_posterior_generator.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import time

import numpy as np

import sft  # noqa: F401  (float64 in JAX)
import sft.predict.nearly_gaussian_posterior as ngp
from sft.predict import perturbative_posterior


def matmul_gflops(n=1024, repeats=3):
    a, b = np.random.default_rng(0).normal(size=(2, n, n))
    best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _symmetrized(rng, shape):
    T = rng.normal(size=shape)
    perms = list(itertools.permutations(range(T.ndim)))
    return sum(np.transpose(T, p) for p in perms) / len(perms)


def case(N, order, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(N, N))
    K = A @ A.T / N + 0.1 * np.eye(N)
    prior = dict(dK=[_symmetrized(rng, (N, N)) for _ in range(order)],
                 kappa4=[_symmetrized(rng, (N,) * 4) for _ in range(order)],
                 kappa6=_symmetrized(rng, (N,) * 6) if order == 2 else None)
    return K, rng.normal(size=N - 2), dict(train=np.arange(N - 2), test=np.arange(N - 2, N), noise=0.3, n=1.0,
                                           order=order, four_point=True, **prior)


def best_time(f, repeats):
    out = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        out = min(out, time.perf_counter() - t)
    return out


def prepared(K, y, kw):
    """Gaussian pieces and scaled vertex tensors (n = 1) as perturbative_posterior prepares them."""
    _, train, test, Kinv, yt, R = ngp._setup(K, y, kw["train"], kw["test"], kw["noise"])
    tensors = {f"dK{j + 1}": kw["dK"][j] for j in range(kw["order"])}
    tensors.update({f"U{j + 1}": kw["kappa4"][j] for j in range(kw["order"])})
    if kw["order"] == 2:
        tensors["S"] = kw["kappa6"]
    return train, test, Kinv, yt, R, tensors


def per_term_reference(K, train, test, Kinv, yt, R, tensors, order):
    """Every term its own np.einsum(optimize=True), summed and symmetrized as perturbative_posterior does."""
    N = K.shape[0]
    y_full, Kinv_full = np.zeros(N), np.zeros((N, N))
    y_full[train], Kinv_full[np.ix_(train, train)] = yt, Kinv
    out = {}
    for (j, m), terms in ngp.posterior_series(order).items():
        total = sum(ngp._einsum_term(t, tensors, y_full, Kinv_full, R.T) for t in terms)
        out[(j, m)] = sum(np.transpose(total, p) for p in itertools.permutations(range(m)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    print(f"load average {os.getloadavg()}, cpus {os.cpu_count()}, jax {jax.__version__}, float64")
    gf = matmul_gflops()
    print(f"matrix product (1024^3, float64): {gf:.1f} GFLOP/s (one 1024^3 product: {2 * 1024 ** 3 / gf / 1e6:.0f} ms)")
    warm = case(3, 1)                                  # JAX start-up (backend, Cholesky) out of the timings
    perturbative_posterior(warm[0], warm[1], backend="jax", **warm[2])
    print(f"{'N':>3} {'order':>5} | {'numpy':>18} {'call':>8} {'eval':>8} {'per-term':>8} {'ratio':>5} | "
          f"{'jax compile':>11} {'call':>8} {'eval':>8} {'eval jax/np':>11} {'max rel diff':>12} | {'jit(grad)':>9}")
    print(f"{'':>3} {'':>5} | {'path search':>18} {'':>8} {'':>8} {'eval':>8} {'':>5} | {'':>11} {'':>8} {'':>8} "
          f"{'':>11} {'jax vs numpy':>12} | {'compile':>9}")
    for N in (5, 10, 15):
        for order in (1, 2):
            K, y, kw = case(N, order)
            train, test, Kinv, yt, R, tensors = prepared(K, y, kw)
            series = tuple((key, tuple(terms)) for key, terms in ngp.posterior_series(order).items())
            ngp._program.cache_clear()
            t = time.perf_counter()
            program = ngp._program(series, N, test.size)
            np_path = time.perf_counter() - t
            ref = perturbative_posterior(K, y, **kw)
            np_call = best_time(lambda: perturbative_posterior(K, y, **kw), a.repeats)
            np_eval = best_time(lambda: ngp._assemble(np, program, order, K, train, test, Kinv, yt, tensors, 1.0),
                                a.repeats)
            naive = best_time(lambda: per_term_reference(K, train, test, Kinv, yt, R, tensors, order), a.repeats)
            t = time.perf_counter()
            got = perturbative_posterior(K, y, backend="jax", **kw)
            got[0].block_until_ready()
            jax_first = time.perf_counter() - t
            jax_call = best_time(lambda: perturbative_posterior(K, y, backend="jax", **kw)[0].block_until_ready(),
                                 a.repeats)
            f = ngp._jax_posterior(program, order)
            dev = [jnp.asarray(x) for x in (K, y)] + [{k: jnp.asarray(v) for k, v in tensors.items()}]
            jax_eval = best_time(lambda: f(dev[0], dev[1], train, test, kw["noise"], 1.0, dev[2])[0]
                                 .block_until_ready(), a.repeats)
            diff = max(float(np.max(np.abs(np.asarray(g) - r)) / np.max(np.abs(r))) for g, r in zip(got, ref))
            grad = ""
            if order == 2:
                g = jax.jit(jax.grad(
                    lambda s: perturbative_posterior(K, y, backend="jax", **dict(kw, noise=s)).mean[2].sum()))
                t = time.perf_counter()
                g(0.3).block_until_ready()
                grad = f"{time.perf_counter() - t - best_time(lambda: g(0.3).block_until_ready(), a.repeats):8.2f}s"
            print(f"{N:>3} {order:>5} | {np_path:17.3f}s {np_call:7.4f}s {np_eval:7.4f}s {naive:7.4f}s "
                  f"{naive / np_eval:5.1f} | {jax_first - jax_call:10.2f}s {jax_call:7.4f}s {jax_eval:7.4f}s "
                  f"{jax_eval / np_eval:11.2f} {diff:12.2e} | {grad:>9}")
    print("ratio = per-term eval / numpy eval (the shared-partials program against one einsum per term); max rel diff "
          f"= max over mean, cov, four-point of |jax - numpy| / max|numpy|; load average now {os.getloadavg()}")


if __name__ == "__main__":
    main()
