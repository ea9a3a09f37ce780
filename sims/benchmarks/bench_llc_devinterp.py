"""sft's LLC estimator against devinterp's (PyTorch), same model, data and SGLD settings; cost per step.

Estimand (both packages; Lau, Furman, Wang, Murfet & Wei 2023, arXiv:2308.12108):
lambda_hat = nbeta (E[L_n(w)] - L_n(w*)) under p(w) ∝ exp(-nbeta L_n(w) - (gamma/2)|w - w*|^2), with
L_n the MEAN of l(w; x, y) = |f_w(x) - y|^2 / 2 over the n training samples, nbeta = n / log n
(beta = 1/log n, n the number of training samples). Both run the same SGLD update (sft.sim.sgld; in
devinterp 2.x SGMCMC.sgld, read in its source: p -= (lr/2)(nbeta grad L_B + gamma (p - p0)), then
p += sqrt(lr) N(0, 1)), lr = eps = step_size, minibatches of b samples drawn without replacement, C chains
of K steps started at w*, no burn-in, every step averaged. The estimators differ only in what they
average: sft the full-batch L_n(w_k) after each step (thin = 1), devinterp (``devinterp.slt.llc.llc``,
its current entry point; ``estimate_learning_coeff_with_summary`` of devinterp 0.x/1.x is gone from 2.x)
the minibatch loss L_B(w_k) before each step, minus init_loss = the mean loss over
``num_init_loss_batches`` = n / b minibatches (= L_n(w*) exactly when b divides n, float32). devinterp
shuffles once and replays that epoch order (``epoch_mode="cycle"``); we set
``match_sampling_input_ids_across_chains=False`` so that chains are independent (its default True gives
every chain the same minibatch sequence, which correlates them and shrinks the between-chain error
bar). Then devinterp seeds chain c's shuffle and its SGLD noise with the same integer init_seed + c
(two generators started from one seed: slt/sampling.py, slt/sampler.py). Error bars: between-chain standard error std_c(lambda_c, ddof=1)/sqrt(C) for both (devinterp's
own ``llc_std`` is the ddof=0 std of the chains, not an error bar); z = difference / combined error.

Models (sft's parametrization z = sqrt(C_b) beta + sqrt(C_W / n_in) h @ omega, re-implemented in torch;
the worker checks that its L_n(w*) equals sft's to round-off):
 (a) regular: linear regression, d inputs plus a bias (C_W = C_b = 1), D = d + 1 parameters, noisy
     labels, w* = least squares. lambda = D/2; exact stationary value of FULL-batch SGLD at finite
     nbeta, gamma, eps: sft.sim.quadratic_llc(H, step_size=eps) (minibatch noise raises it). Exact
     expected value of EACH package's finite-run estimator (minibatch noise, K steps from w*, its
     batching scheme): :func:`regular_expectations` (closed moment recursions). They differ: the
     minibatch loss that devinterp averages is taken on a batch disjoint from the previous n/b - 1
     batches of its replayed epoch, whose gradient steps (the sum over an epoch of the batch
     gradients at w* is zero) raised the loss on it; this biases devinterp's estimator up (by about
     1% of lambda with the defaults), while its cyclic dynamics alone (full-batch loss) would read
     lower than sft's fresh batches (all three values are printed).
 (b) deep linear network (reduced-rank regression): M inputs, H hidden, N outputs, C_W = 1, C_b = 0
     (biases are flat directions), realizable labels of a rank-r teacher w* whose other H - r channels
     are zero (L_n(w*) = 0). Reference: the learning coefficient of Aoyagi & Watanabe (2005),
     sft.sim.reduced_rank_learning_coefficient (a global value; the estimator at finite nbeta, gamma
     is biased).
 (c) tanh MLP of width h trained by L-BFGS (scipy) to a local minimum on noisy labels of a random
     tanh teacher; no exact value. Shown for scale: the Gaussian (Laplace) value quadratic_llc at w*.

Cost: wall time of the whole estimate; sft once with compilation and once warm (same key: the same
result); devinterp's llc() call (init loss, sampling, zarr writes). chain-steps/s = C K / wall. Both
single-threaded (XLA intra-op threads = 1; torch.set_num_threads(1)); dtype float64 in both.

The devinterp part runs in a separate virtual environment (never imported by sft): this script calls
that environment's python on itself with ``--worker in.npz out.npz``; without it, that part is skipped.
    python3 -m venv /work/venv-devinterp
    /work/venv-devinterp/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /work/venv-devinterp/bin/pip install devinterp numpy

Usage (repository root, sft's environment):
    PYTHONPATH=. python sims/benchmarks/bench_llc_devinterp.py [--chains C] [--steps K] [--batch b]
        [--points n] [--seed S] [--cases regular dln mlp] [--devinterp-python PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ONE_THREAD = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
              "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "TQDM_DISABLE": "1"}
os.environ.update(ONE_THREAD)          # before numpy, jax or torch start their thread pools

import numpy as np  # noqa: E402

DEVINTERP_PYTHON = os.environ.get("SFT_DEVINTERP_PYTHON", "/work/venv-devinterp/bin/python")


# ------------------------------------------------------------------ devinterp side (its own venv)
def worker(path_in, path_out):
    """Run devinterp's LLC estimate on the problem in ``path_in``; write the result to ``path_out``."""
    import torch
    from datasets import Dataset
    from devinterp.slt.llc import llc

    torch.set_num_threads(1)
    p = np.load(path_in)
    cfg = json.loads(str(p["config"]))
    x = torch.tensor(p["x"], dtype=torch.float64)
    y = torch.tensor(p["y"], dtype=torch.float64)
    act = {"linear": lambda z: z, "tanh": torch.tanh}[cfg["activation"]]
    depth = cfg["depth"]

    class SFTNet(torch.nn.Module):
        """sft.sim.networks' parametrization: z = sqrt(C_b) beta + sqrt(C_W / n_in) h @ omega."""
        def __init__(self):
            super().__init__()
            self.omega = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.tensor(p[f"omega{l}"])) for l in range(depth + 1)])
            self.beta = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.tensor(p[f"beta{l}"])) for l in range(depth + 1)])

        def forward(self, h):
            for l, (om, be) in enumerate(zip(self.omega, self.beta)):
                z = math.sqrt(cfg["C_b"]) * be + math.sqrt(cfg["C_W"] / h.shape[-1]) * (h @ om)
                h = act(z) if l < depth else z
            return z

    def per_sample_loss(model, input_ids):
        """devinterp's loss_fn contract: (model, input_ids (B, 2)) -> (B, 1); the ids are sample indices."""
        idx = input_ids[:, 0]
        return 0.5 * ((model(x[idx]) - y[idx]) ** 2).sum(-1, keepdim=True)

    model = SFTNet()
    with torch.no_grad():
        loss_star = float(per_sample_loss(model, torch.arange(len(x))[:, None]).mean())
    ids = np.repeat(np.arange(len(x))[:, None], 2, axis=1)     # "sequences" of length 2: next-token API
    data = Dataset.from_dict({"input_ids": ids}).with_format("torch")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = llc(model, data, {}, lr=cfg["eps"], n_beta=cfg["nbeta"], loss_fn=per_sample_loss,
                  num_chains=cfg["chains"], num_draws=cfg["steps"], batch_size=cfg["batch"],
                  num_burnin_steps=0, num_steps_bw_draws=1,
                  num_init_loss_batches=len(x) // cfg["batch"], localization=cfg["gamma"],
                  init_seed=cfg["seed"], match_sampling_input_ids_across_chains=False,
                  device="cpu", output_path=os.path.join(tmp, "samples.zarr"))
        wall = time.perf_counter() - t
    loop_steps, loop_rate = _optimizer_loop(model, per_sample_loss, len(x), cfg)
    np.savez(path_out, loop_steps=loop_steps, loop_rate=loop_rate, per_chain=np.asarray(out.llc_per_chain.values, dtype=np.float64),
             llc_mean=float(out.llc_mean), llc_std=float(out.llc_std),
             init_loss=float(out.init_loss), loss_star=loss_star, wall=wall,
             versions=json.dumps({"devinterp": _dist_version("devinterp"), "torch": torch.__version__,
                                  "numpy": np.__version__}))


def _optimizer_loop(model, per_sample_loss, n, cfg):
    """Chain-steps/s of devinterp's SGLD optimizer (SGMCMC.sgld) in a bare loop: one chain, fresh
    minibatches (torch.randperm), no loss recording, no zarr: the cost of torch itself per step."""
    import copy

    import torch
    from devinterp.optim import SGMCMC

    model = copy.deepcopy(model)
    opt = SGMCMC.sgld(model.parameters(), lr=cfg["eps"], nbeta=cfg["nbeta"], localization=cfg["gamma"])
    torch.manual_seed(cfg["seed"])
    steps = min(cfg["steps"], 1000)
    t = time.perf_counter()
    for _ in range(steps):
        idx = torch.randperm(n)[:cfg["batch"]]
        opt.zero_grad()
        per_sample_loss(model, idx[:, None]).mean().backward()
        opt.step()
    return steps, steps / (time.perf_counter() - t)


def _dist_version(name):
    from importlib.metadata import version
    return version(name)


def run_devinterp(python, problem, cfg):
    """Write the problem to a temporary .npz, run ``python this_file --worker``, read the result."""
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        layers = {f"{k}{l}": np.asarray(a, dtype=np.float64)
                  for l, (om, be) in enumerate(problem["layers"]) for k, a in (("omega", om), ("beta", be))}
        np.savez(fin, x=problem["x"], y=problem["y"], config=json.dumps(cfg), **layers)
        env = {**os.environ, **ONE_THREAD}
        env.pop("PYTHONPATH", None)
        proc = subprocess.run([python, os.path.abspath(__file__), "--worker", fin, fout], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"devinterp worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        r = np.load(fout)
        return {k: r[k] for k in r.files}


# ------------------------------------------------------------------------------------ sft side
def build_problems(cases, n, seed):
    """(name, problem dict) per case: x, y, layers [(omega, beta)], activation, C_W, C_b, loss, w_star,
    data (sft), reference (name, value)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from scipy.optimize import minimize

    from sft.sim import apply, init_params, network_loss, reduced_rank_learning_coefficient

    rng = np.random.default_rng(seed)
    out = []
    for case in cases:
        if case == "regular":                                  # (a) linear regression, D = d + 1
            d = 9
            x = rng.normal(size=(n, d))
            y = (x @ rng.normal(size=d) / math.sqrt(d) + 0.3 + 0.5 * rng.normal(size=n))[:, None]
            A = np.hstack([x / math.sqrt(d), np.ones((n, 1))])   # f = sqrt(C_W/d) x.omega + sqrt(C_b) beta
            theta = np.linalg.lstsq(A, y[:, 0], rcond=None)[0]
            layers = [(theta[:d, None], theta[d:])]
            w_star, unravel = ravel_pytree([tuple(map(jnp.asarray, layers[0]))])

            def loss(w, batch, unravel=unravel, d=d):
                (om, be), = unravel(w)
                xb, yb = batch
                return 0.5 * jnp.mean(jnp.sum((be + (xb @ om) / math.sqrt(d) - yb) ** 2, axis=-1))
            data = (jnp.asarray(x), jnp.asarray(y))
            prob = dict(activation="linear", C_W=1.0, C_b=1.0, loss=loss, w_star=w_star, data=data,
                        reference=("D/2", (d + 1) / 2), features=A, residuals=A @ theta - y[:, 0])
        elif case == "dln":                                    # (b) reduced-rank regression
            M, H, N, r = 4, 3, 4, 1
            x = rng.normal(size=(n, M))
            om1, om2 = np.zeros((M, H)), np.zeros((H, N))
            om1[:, :r] = rng.normal(size=(M, r)) * 1.5
            om2[:r, :] = rng.normal(size=(r, N)) * 1.5
            layers = [(om1, np.zeros(H)), (om2, np.zeros(N))]
            kw = dict(activation="linear", C_W=1.0, C_b=0.0)
            jl = [tuple(map(jnp.asarray, L)) for L in layers]
            y = np.asarray(apply(jl, jnp.asarray(x), **kw))     # realizable: L_n(w*) = 0
            lam, m = reduced_rank_learning_coefficient(M, N, H, r)
            nl = network_loss(jl, x, y, **kw)
            prob = dict(**kw, loss=nl.loss, w_star=nl.w_star, data=nl.data,
                        reference=(f"lambda(M={M},N={N},H={H},r={r}), m={m}", float(lam)))
        elif case == "mlp":                                    # (c) trained tanh MLP, width 32
            n0, width = 4, 32
            kw = dict(activation="tanh", C_W=1.5, C_b=0.1)
            x = rng.normal(size=(n, n0))
            teacher = [(w[0], b[0]) for w, b in init_params(jax.random.key(seed + 1), n_ensemble=1,
                                                             in_dim=n0, widths=[width])]
            y = np.asarray(apply(teacher, jnp.asarray(x), **kw)) + 0.1 * rng.normal(size=(n, 1))
            p0 = [(w[0], b[0]) for w, b in init_params(jax.random.key(seed + 2), n_ensemble=1,
                                                       in_dim=n0, widths=[width])]
            nl0 = network_loss(p0, x, y, **kw)
            vg = jax.jit(jax.value_and_grad(lambda w: nl0.loss(w, nl0.data)))
            fun = lambda w: tuple(np.asarray(v, dtype=np.float64) for v in vg(jnp.asarray(w)))
            res = minimize(fun, np.asarray(nl0.w_star), jac=True, method="L-BFGS-B",
                           options=dict(maxiter=20000, maxfun=40000, gtol=1e-9, ftol=0.0))
            trained = nl0.unravel(jnp.asarray(res.x))
            layers = [tuple(np.asarray(a) for a in L) for L in trained]
            nl = network_loss(trained, x, y, **kw)
            prob = dict(**kw, loss=nl.loss, w_star=nl.w_star, data=nl.data,
                        reference=("none (L-BFGS |grad| = %.1e)" % np.abs(fun(res.x)[1]).max(), None))
        else:
            raise ValueError(f"case={case!r} is not allowed: use regular, dln or mlp")
        prob.update(x=np.asarray(x, dtype=np.float64), y=np.asarray(y, dtype=np.float64), layers=layers)
        out.append((case, prob))
    return out


def regular_expectations(prob, cfg, n_perms=100, seed=123):
    """Exact expected values of the two finite-run estimators for linear regression (case a).

    With features a_i (D,), residuals r_i = a_i.w* - y_i (sum_i r_i a_i = 0 at least squares),
    H = sum_i a_i a_i^T / n, d = w - w*, one SGLD step on minibatch B is linear:
        d' = A_B d + c_B + sqrt(eps) xi,   A_B = I - (eps/2)(nbeta H_B + gamma I),
        c_B = -(eps/2) nbeta g_B,          H_B, g_B = mean over B of a_i a_i^T, r_i a_i.
    sft (a fresh batch of b distinct samples per step, independent of d): the mean stays 0 and
        S' = E_B[A_B S A_B^T] + E_B[c_B c_B^T] + eps I,
    where, for b of n drawn without replacement, E[H_B S H_B] = M1/b + (b-1)/b (n^2 H S H - n M1)/(n(n-1)),
    M1 = sum_i a_i a_i^T S a_i a_i^T / n, and E[g_B g_B^T] = (n-b)/(b(n-1)) sum_i r_i^2 a_i a_i^T / n;
    its estimator averages nbeta tr(H S_k)/2 over k = 1..K (S_0 = 0: chains start at w*).
    devinterp (one random permutation per chain, its n/b batches replayed in order): m and S follow
    the deterministic periodic recursion m' = A_k m + c_k, S' = A_k S A_k^T + eps I; its estimator
    averages nbeta E[L_{B_k}(w_k) - L_{B_k}(w*)] = nbeta (g_k.m_k + tr(H_k (S_k + m_k m_k^T))/2) over
    k = 0..K-1 (the L_{B_k}(w*) average to init_loss = L_n(w*) over whole epochs); averaged here over
    ``n_perms`` random permutations (mean, standard error). Also the cyclic dynamics with sft's
    full-batch loss, nbeta tr(H (S_k + m_k m_k^T))/2 averaged over k = 0..K-1 (which part of the
    difference is the dynamics, which the minibatch loss). Returns (sft, devinterp, its stderr,
    cyclic with full-batch loss).
    """
    A, r = prob["features"], prob["residuals"]
    n, D = A.shape
    b, K, eps, nbeta, gamma = cfg["batch"], cfg["steps"], cfg["eps"], cfg["nbeta"], cfg["gamma"]
    H, I = A.T @ A / n, np.eye(D)
    T = np.einsum("ni,nj,nk,nl->ijkl", A, A, A, A) / n            # M1 = T : S (contract j, k)
    Ecc = (eps * nbeta / 2) ** 2 * (n - b) / (b * (n - 1)) * (A * r[:, None] ** 2).T @ A / n
    S, acc, c1, q = np.zeros((D, D)), 0.0, 1 - eps * gamma / 2, eps * nbeta / 2
    for _ in range(K):
        M1 = np.einsum("ijkl,jk->il", T, S)
        EHSH = M1 / b + (b - 1) / b * (n * n * H @ S @ H - n * M1) / (n * (n - 1))
        S = c1 ** 2 * S - q * c1 * (H @ S + S @ H) + q ** 2 * EHSH + Ecc + eps * I
        acc += 0.5 * np.trace(H @ S)
    sft = nbeta * acc / K
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(n)[: n - n % b] for _ in range(n_perms)])
    Ab = A[perms].reshape(n_perms, -1, b, D)
    HB = np.einsum("pbsi,pbsj->pbij", Ab, Ab) / b
    gB = np.einsum("pbs,pbsi->pbi", r[perms].reshape(n_perms, -1, b), Ab) / b
    AB, cB = I - eps / 2 * (nbeta * HB + gamma * I), -q * gB
    m, S, acc, full = np.zeros((n_perms, D)), np.zeros((n_perms, D, D)), np.zeros(n_perms), 0.0
    for k in range(K):
        j = k % HB.shape[1]
        second = S + m[:, :, None] * m[:, None, :]
        acc += np.einsum("pi,pi->p", gB[:, j], m) + 0.5 * np.einsum("pij,pji->p", HB[:, j], second)
        full += 0.5 * np.einsum("ij,pji->", H, second) / n_perms
        m = np.einsum("pij,pj->pi", AB[:, j], m) + cB[:, j]
        S = AB[:, j] @ S @ AB[:, j].transpose(0, 2, 1) + eps * I
    dev = nbeta * acc / K
    return sft, float(dev.mean()), float(dev.std(ddof=1) / math.sqrt(n_perms)), nbeta * full / K


def run_sft(prob, cfg):
    """sft.sim.estimate_llc twice with the same key (cold: with compilation; warm), the Laplace value
    quadratic_llc at w* (the Gaussian LLC of the Hessian there, full-batch SGLD at this eps)."""
    import jax
    from sft.sim import estimate_llc, quadratic_llc

    def once():
        t = time.perf_counter()
        est = estimate_llc(prob["loss"], prob["w_star"], jax.random.key(cfg["seed"]), data=prob["data"],
                           nbeta=cfg["nbeta"], gamma=cfg["gamma"], step_size=cfg["eps"],
                           n_chains=cfg["chains"], n_steps=cfg["steps"], batch_size=cfg["batch"],
                           burn_in=0, thin=1)
        return est, time.perf_counter() - t

    (est_cold, cold), (est, warm) = once(), once()
    if not np.array_equal(est_cold.per_chain, est.per_chain):
        raise RuntimeError("sft: the same key gave different chains (reproducibility broken)")
    hess = np.asarray(jax.jit(jax.hessian(lambda w: prob["loss"](w, prob["data"])))(prob["w_star"]))
    quad = quadratic_llc(0.5 * (hess + hess.T), nbeta=cfg["nbeta"], gamma=cfg["gamma"], step_size=cfg["eps"])
    return est, cold, warm, quad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1024, help="n, training samples")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step-ratio", type=float, default=0.5,
                    help="eps = ratio / (nbeta h_max + gamma), h_max the top Hessian eigenvalue at w*")
    ap.add_argument("--gamma", type=float, nargs=3, default=[1.0, 1.0, 10.0],
                    help="localization for regular, dln, mlp")
    ap.add_argument("--cases", nargs="+", default=["regular", "dln", "mlp"])
    ap.add_argument("--devinterp-python", default=DEVINTERP_PYTHON)
    a = ap.parse_args()
    if a.points % a.batch:
        raise ValueError(f"--points={a.points} must be a multiple of --batch={a.batch} (devinterp's "
                         "init_loss is then exactly L_n(w*))")
    import jax
    import sft  # noqa: F401  (float64)
    from sft.sim import default_nbeta
    from sft.sim import sgld as _sgld

    have_devinterp = os.path.exists(a.devinterp_python)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}  ({os.cpu_count()} cores)")
    print(f"jax {jax.__version__}, float64, 1 thread; n = {a.points}, batch {a.batch}, {a.chains} chains x "
          f"{a.steps} steps from w*, no burn-in, nbeta = n/log n = {default_nbeta(a.points):.2f}, seed {a.seed}")
    if not have_devinterp:
        print(f"devinterp part SKIPPED: no python at {a.devinterp_python} (create the venv as in this "
              "script's docstring, or pass --devinterp-python)")
    gammas = dict(zip(["regular", "dln", "mlp"], a.gamma))
    versions = None
    for case, prob in build_problems(a.cases, a.points, a.seed):
        h_max = float(_sgld._top_curvature(prob["loss"], prob["w_star"], prob["data"]))
        nbeta, gamma = default_nbeta(a.points), gammas[case]
        cfg = dict(nbeta=nbeta, gamma=gamma, eps=a.step_ratio / (nbeta * h_max + gamma), chains=a.chains,
                   steps=a.steps, batch=a.batch, seed=a.seed, activation=prob["activation"],
                   C_W=prob["C_W"], C_b=prob["C_b"], depth=len(prob["layers"]) - 1)
        est, cold, warm, quad = run_sft(prob, cfg)
        steps = a.chains * a.steps
        ref_name, ref = prob["reference"]
        print(f"\n({case}) D = {prob['w_star'].shape[0]}, gamma = {gamma}, eps = {cfg['eps']:.3g} "
              f"(eps (nbeta h_max + gamma) = {a.step_ratio}), h_max = {h_max:.4g}; reference {ref_name}"
              + ("" if ref is None else f" = {ref:.4g}") + f"; Laplace (quadratic at w*, full-batch SGLD) = {quad:.4g}")
        print(f"  sft       LLC = {est.llc:8.4f} +- {est.stderr:.4f}  (R-hat {est.rhat:.3f}, ESS {est.ess:.0f})  "
              f"wall {warm:6.2f} s warm, {cold:6.2f} s with compile; {steps / warm:9.0f} chain-steps/s")
        exact = regular_expectations(prob, cfg) if case == "regular" else None
        if exact:
            print(f"  exact expectation of each finite-run estimator (regular_expectations): sft {exact[0]:.4f}, "
                  f"devinterp {exact[1]:.4f} +- {exact[2]:.4f} (its cyclic dynamics with the full-batch loss: "
                  f"{exact[3]:.4f}); z(sft - exact) = {(est.llc - exact[0]) / est.stderr:+.2f}")
        if not have_devinterp:
            continue
        d = run_devinterp(a.devinterp_python, prob, cfg)
        versions = json.loads(str(d["versions"]))
        pc = d["per_chain"]
        d_llc, d_se = float(pc.mean()), float(pc.std(ddof=1) / math.sqrt(len(pc)))
        z = (d_llc - est.llc) / math.hypot(d_se, est.stderr)
        ls = est_loss_star(prob)
        print(f"  devinterp LLC = {d_llc:8.4f} +- {d_se:.4f}  (its llc_std, ddof 0 = {float(d['llc_std']):.4f})"
              f"  wall {float(d['wall']):6.2f} s;       {steps / float(d['wall']):9.0f} chain-steps/s")
        if exact:
            print(f"  z(devinterp - exact) = {(d_llc - exact[1]) / math.hypot(d_se, exact[2]):+.2f}")
        print(f"  z(devinterp - sft) = {z:+.2f}; time per step devinterp/sft(warm) = "
              f"{float(d['wall']) / warm:.1f}; nbeta x (L_n(w*) torch - sft) = {nbeta * (float(d['loss_star']) - ls):.1e}, "
              f"nbeta x (devinterp init_loss (float32) - L_n(w*)) = {nbeta * (float(d['init_loss']) - ls):.1e}")
        print(f"  torch SGMCMC.sgld loop alone (1 chain, {int(d['loop_steps'])} steps, fresh minibatches, no "
              f"recording): {float(d['loop_rate']):9.0f} chain-steps/s")
    if versions:
        print(f"\nversions: {versions}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def est_loss_star(prob):
    return float(prob["loss"](prob["w_star"], prob["data"]))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
