"""Local learning coefficient (LLC) from tempered local posterior samples, with error bars.

Estimator (Lau, Furman, Wang, Murfet & Wei 2023, "The local learning coefficient",
arXiv:2308.12108, the estimator lambda-hat of their Definition 3 / eq. (4)):

    lambda_hat(w*) = nbeta (E_t[L_n(w)] - L_n(w*)),    nbeta = n beta = 1/t,

E_t the expectation under p_t(w) ∝ exp(-nbeta L_n(w) - (gamma/2)|w - w*|^2) (:mod:`sft.sim.sgld`).
The default beta = 1/log n (Watanabe's WBIC temperature, :func:`sft.sim.default_nbeta`) uses n = the
number of TRAINING samples over which L_n is a mean, not the SGLD minibatch size. As nbeta -> inf and
gamma -> 0 it tends to the learning coefficient (real log canonical threshold) lambda of w*; at
finite nbeta and gamma it is biased: for a quadratic L_n with Hessian eigenvalues h_k exactly
lambda_hat = sum_k nbeta h_k / (2 (nbeta h_k + gamma)) (:func:`sft.sim.quadratic_llc`).

Error bars. Each chain c gives lambda_c = nbeta (mean over its draws of L_n - L_n(w*)); the chains are
independent, so lambda_hat = mean_c lambda_c with stderr = std_c(lambda_c, ddof=1) / sqrt(chains)
(the error of the finite-run estimator, including any burn-in or step-size bias in its mean). A
second error bar from the pooled draws, std / sqrt(ESS) (ESS of :func:`sft.sim.effective_sample_size`),
and split-R-hat (:func:`sft.sim.split_rhat`) diagnose the chains.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..conventions import require_x64
from .sampling import effective_sample_size, split_rhat
from .sgld import TLBPResult, sample_tlbp

__all__ = ["LLCEstimate", "llc_from_samples", "estimate_llc"]


class LLCEstimate(NamedTuple):
    """llc: lambda_hat; stderr: between-chain standard error; per_chain: (chains,) lambda_c;
    stderr_ess: std of the pooled draws / sqrt(ESS); ess, rhat: of the draws nbeta (L_n - L_n(w*));
    nbeta; n_chains."""
    llc: float
    stderr: float
    per_chain: np.ndarray
    stderr_ess: float
    ess: float
    rhat: float
    nbeta: float
    n_chains: int


def llc_from_samples(result: TLBPResult) -> LLCEstimate:
    """lambda_hat = nbeta (E[L_n] - L_n(w*)) from :func:`sft.sim.sample_tlbp` output (module docstring).

    Needs >= 2 chains and >= 4 draws per chain; ValueError if any recorded loss is NaN or inf.

    >>> from sft.sim import TLBPResult
    >>> loss = np.array([[1.0, 1.2, 1.1, 1.3], [1.2, 1.0, 1.4, 1.2]])   # (chains, draws) of L_n
    >>> est = llc_from_samples(TLBPResult(loss, 1.0, 10.0, 1.0, 5, "sgld", 0.01, None, None))
    >>> round(est.llc, 6), round(est.stderr, 6)              # 10 (mean L_n - 1); chain means 1.15, 1.2
    (1.75, 0.25)
    """
    x = result.nbeta * (np.asarray(result.loss, dtype=np.float64) - result.loss_star)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 4:
        raise ValueError(f"result.loss has shape {x.shape}: the LLC error bar needs (chains, draws) "
                         "with chains >= 2 and draws >= 4")
    if not np.all(np.isfinite(x)):
        raise ValueError("result.loss contains NaN or inf: the chains diverged (reduce step_size)")
    per_chain = x.mean(axis=1)
    ess = effective_sample_size(x)
    return LLCEstimate(float(per_chain.mean()), float(per_chain.std(ddof=1) / math.sqrt(len(per_chain))),
                       per_chain, float(x.std() / math.sqrt(ess)), ess, split_rhat(x),
                       float(result.nbeta), int(x.shape[0]))


def estimate_llc(loss, w_star, key, *, gamma, step_size, n_chains, n_steps, data=None, n=None,
                 nbeta=None, temperature=None, method="sgld", burn_in=0, thin=1,
                 batch_size=None) -> LLCEstimate:
    """:func:`sft.sim.sample_tlbp` then :func:`llc_from_samples`; arguments as sample_tlbp, with the
    default nbeta = n / log n (n = number of training samples, from ``data`` or given)."""
    require_x64("sft.sim.estimate_llc")
    return llc_from_samples(sample_tlbp(
        loss, w_star, key, gamma=gamma, step_size=step_size, n_chains=n_chains, n_steps=n_steps,
        data=data, n=n, nbeta=nbeta, temperature=temperature, method=method, burn_in=burn_in,
        thin=thin, batch_size=batch_size))
