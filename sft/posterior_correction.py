"""First (O(1/n)) correction to the Bayesian posterior mean from the prior's fourth cumulant.

Model: one network output f over N points (training indices ``train``, test indices ``test``),
prior with covariance K and connected four-point function (fourth cumulant) U, higher cumulants
of higher order in 1/n; labels y = f_train + eps, eps ~ N(0, sigma^2 I) (``noise`` = sigma^2).

Derivation (first-order Edgeworth expansion). The characteristic function of z = (y, f_*) is
exp(-t.S.t/2 + U_{ijkl} t_i t_j t_k t_l / 24 + ...) (the Gaussian noise adds nothing to U), so its
density is p(z) = [1 + (1/24) U_{ijkl} d_i d_j d_k d_l] phi_S(z) + O(U^2), with S the covariance of
z (training block K~ = K_train + sigma^2 I). Integrate f_* against p(y, f_*): with
m(y) = k_*^T K~^{-1} y and a = k_*^T K~^{-1} (so d_b m = a_b), terms with all four derivative indices
on training labels give U_{bcde} d_bcde[phi(y) m(y)] = U_{bcde}[m d_bcde phi + 4 a_b d_cde phi];
terms with one index on the test point give, by parts, -4 U_{*cde} d_cde phi; two or more test
indices integrate to zero. Dividing by p(y) = phi(y) [1 + (1/24) U_{bcde} d_bcde phi / phi] and using
d_cde phi(y) / phi(y) = -[y~_c y~_d y~_e - 3 K~^{-1}_{(cd} y~_{e)}] with y~ = K~^{-1} y:

    <f_*> = m(y) + (1/6) [U_{*cde} - a_b U_{bcde}] [y~_c y~_d y~_e - 3 K~^{-1}_{cd} y~_e] + O(U^2).

This is the form of the theory sheet (shared/THEORY.md, "Bayesian posterior, first correction");
cf. Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory* (2022), sec. 6.4, and
Naveh, Ben-David, Sompolinsky & Ringel (2021). Checked in tests against exact Bayes for Gaussian
scale-mixture priors (tests/test_posterior_correction.py).
"""
import numpy as np
import scipy.linalg

__all__ = ["quartic_cumulant_from_vertex", "posterior_mean_correction"]


def _finite(name, a, ndim):
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} has shape {arr.shape}: it must have {ndim} dimensions")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf: it must be finite")
    return arr


def _four_tensor(name, T, N=None):
    T = _finite(name, T, 4)
    if len(set(T.shape)) != 1 or (N is not None and T.shape[0] != N):
        want = f"({N}, {N}, {N}, {N})" if N is not None else "(N, N, N, N)"
        raise ValueError(f"{name} has shape {T.shape}: it must be {want}")
    return T


def quartic_cumulant_from_vertex(V, n) -> np.ndarray:
    """Fourth cumulant of one network output, U_{abcd} = (1/n)[V_(ab)(cd) + V_(ac)(bd) + V_(ad)(bc)].

    V (N, N, N, N): the four-point vertex of the output layer l = L + 1, V[a, b, c, d] = V^(l)_{(ab)(cd)},
    i.e. ``multi_input(...).V[-1]``, normalized so that n Cov(G_ab, G_cd) = V_{(ab)(cd)} with n = n_L the
    width of the last hidden layer (sft.finite_width conventions). Since the output is Gaussian given
    G, E[z_a z_b z_c z_d] - (Wick with E[G]) = Cov(G_ab, G_cd) + Cov(G_ac, G_bd) + Cov(G_ad, G_bc)
    (PDLT eq. (4.77) and sec. 4.3). Returns U (N, N, N, N), fully symmetric when V has the pair symmetries.
    """
    V = _four_tensor("V", V)
    n = float(n)
    if not np.isfinite(n) or n <= 0:
        raise ValueError(f"n = {n}: the width must be a finite positive number")
    return (V + np.einsum("acbd->abcd", V) + np.einsum("adbc->abcd", V)) / n


def _indices(name, idx, N):
    arr = np.asarray(idx)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} = {idx!r}: it must be a non-empty 1-D array of integer indices")
    if arr.min() < 0 or arr.max() >= N:
        raise ValueError(f"{name} = {idx!r}: indices must lie in [0, {N})")
    if len(set(arr.tolist())) != arr.size:
        raise ValueError(f"{name} = {idx!r}: indices must be distinct")
    return arr


def posterior_mean_correction(K, U, y, *, train, test, noise) -> np.ndarray:
    """First-order shift of the posterior mean at the test points from the prior's fourth cumulant.

        Delta<f_*> = (1/6) [U_{*cde} - (k_*^T K~^{-1})_b U_{bcde}] [y~_c y~_d y~_e - 3 K~^{-1}_{cd} y~_e],

    K~ = K_train + noise I, y~ = K~^{-1} y, indices b..e over training points (derivation: module
    docstring). Add to the Gaussian mean k_*^T K~^{-1} y (:func:`sft.predictors.gp_posterior`).

    K (N, N) prior covariance over all points; U (N, N, N, N) fourth cumulant (e.g. from
    :func:`quartic_cumulant_from_vertex`); y (P,) labels; train (P,), test (M,) integer indices into
    the N points; noise = sigma^2 >= 0. Returns (M,). Linear in U.
    """
    K = _finite("K", K, 2)
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"K has shape {K.shape}: it must be square (N, N)")
    if np.max(np.abs(K - K.T), initial=0.0) > 1e-12 * np.max(np.abs(K), initial=0.0):
        raise ValueError("K is not symmetric: a covariance matrix must be")
    N = K.shape[0]
    U = _four_tensor("U", U, N)
    train, test = _indices("train", train, N), _indices("test", test, N)
    y = _finite("y", y, 1)
    if y.shape != train.shape:
        raise ValueError(f"y has shape {y.shape}: it must be ({train.size},), one label per training index")
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise = {noise}: it must be a finite variance >= 0")
    Kt = K[np.ix_(train, train)] + noise * np.eye(train.size)
    try:
        c = scipy.linalg.cho_factor(Kt, lower=True)
    except np.linalg.LinAlgError:
        lam = np.linalg.eigvalsh(Kt)[0]
        raise ValueError(f"K_train + noise I is not positive definite (smallest eigenvalue {lam:.3g}, "
                         f"noise = {noise:g})") from None
    Kinv = scipy.linalg.cho_solve(c, np.eye(train.size))
    yt = Kinv @ y
    a = K[np.ix_(test, train)] @ Kinv                                           # (M, P)
    W = (np.einsum("c,d,e->cde", yt, yt, yt) - np.einsum("cd,e->cde", Kinv, yt)
         - np.einsum("ce,d->cde", Kinv, yt) - np.einsum("de,c->cde", Kinv, yt))  # symmetric in c,d,e
    Utr = U[np.ix_(train, train, train, train)]
    Ute = U[np.ix_(test, train, train, train)]
    return (np.einsum("mcde,cde->m", Ute, W) - a @ np.einsum("bcde,cde->b", Utr, W)) / 6.0
