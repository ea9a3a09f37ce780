"""Conventions of sft, stated once and used everywhere.

Network (a fully-connected MLP of ``depth`` hidden layers and a linear readout):

    z^(1)_a   = b^(1) + W^(1) x_a,                  W^(1)_ij ~ N(0, C_W^(1) / n_0)
    z^(l+1)_a = b^(l+1) + W^(l+1) sigma(z^(l)_a),   W^(l+1)_ij ~ N(0, C_W^(l+1) / n_l)
    b^(l)_i ~ N(0, C_b^(l)),   l = 1 .. depth + 1,   f(x) = z^(depth+1)(x)  (the readout).

``depth`` counts nonlinearities (hidden layers); layer ``depth + 1`` is the readout, with its own
(C_W, C_b) (by default the same as the hidden layers). n_0 is the input dimension.

NTK parameterization (neural-tangents' default): every weight is W = sqrt(C_W / n) * omega and every
bias b = sqrt(C_b) * beta with omega, beta ~ N(0, 1) the trained parameters. The NTK is
Theta(x, x') = sum_params df(x)/dp df(x')/dp, i.e. learning rates lambda_W = C_W, lambda_b = C_b.

Kernels (infinite width), K^(l)_{ab} = E[z_a z_b] for one neuron of layer l:

    K^(1)_{ab}     = C_b^(1) + C_W^(1) x_a . x_b / n_0
    K^(l+1)_{ab}   = C_b^(l+1) + C_W^(l+1) <sigma(z_a) sigma(z_b)>_{K^(l)}
    Theta^(1)      = K^(1)
    Theta^(l+1)    = K^(l+1) + C_W^(l+1) <sigma'(z_a) sigma'(z_b)>_{K^(l)} Theta^(l)

These equal neural-tangents' ``stax.serial([Dense(w, W_std=sqrt(C_W), b_std=sqrt(C_b)), act] * depth
+ [Dense(1, W_std=sqrt(C_W), b_std=sqrt(C_b))])`` kernels (PDLT ch. 4 and 7 in the same notation).

Numerics: theory in float64. ``import sft`` switches on ``jax_enable_x64`` for the whole process
(JAX's default is float32). Every sft entry point that computes with JAX arrays calls
:func:`require_x64` first and raises a ``RuntimeError`` if the flag is off at call time (for example
after ``jax.config.update("jax_enable_x64", False)`` or inside ``jax.enable_x64(False)``), instead of
silently returning float32 or failing later with an obscure error. Fix: call
``jax.config.update("jax_enable_x64", True)`` (or wrap the call in ``with jax.enable_x64(True):``).
Simulations that want float32 pass ``dtype=jnp.float32`` explicitly; the flag must still be on.

Opt-out: set the environment variable ``SFT_NO_X64=1`` before the first ``import sft`` and sft leaves
the global flag alone. Consequence: sft's JAX entry points (``sft.sim``, ``sft.kernels`` ...) then
raise until you enable x64 yourself, globally or with ``with jax.enable_x64(True): ...`` around the
sft calls; your own JAX code keeps JAX's float32 default. Pure numpy/sympy parts of sft are unaffected.

Random networks: a parameter is drawn by ``jax.random.normal(key, shape, dtype)``, so the SAME key
with ``dtype=float32`` and ``dtype=float64`` gives DIFFERENT networks (different samples, not a
rounded copy); compare dtypes statistically, never network by network.

Tolerances: no computed quantity is compared with exact zero. Positive (semi-)definiteness of a
symmetric matrix is decided by :func:`psd_eigh` (tol = 10 n eps max|lambda|, stated in its errors);
symmetric positive-definite systems are solved by Cholesky after that check (:func:`pd_inverse`),
Hermitian ones by eigendecomposition, and general ones by :func:`solve_checked` (LU whose normwise
backward error must be <= 10 n eps).
"""
from __future__ import annotations

import numbers

import numpy as np

#: Relative tolerances of deterministic comparisons, keyed by dtype. Statistical comparisons use
#: z-scores from error bars instead (see ``Z_MAX``).
RTOL = {np.dtype("float64"): 1e-10, np.dtype("float32"): 1e-5}
#: Largest |z| accepted by the statistical tests at a fixed seed.
Z_MAX = 4.0


def require_x64(name: str) -> None:
    """Raise ``RuntimeError`` unless JAX's ``jax_enable_x64`` is on now (module docstring).

    ``name`` is the calling entry point, quoted in the message. Reads the effective value, so
    ``with jax.enable_x64(True):`` around a call also satisfies it.

    >>> require_x64("sft.sim.layer_kernels")  # x64 is on after ``import sft``
    """
    import jax  # noqa: PLC0415  (conventions stays importable without loading JAX)

    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{name} needs JAX float64, but jax_enable_x64 is off (JAX would silently compute in "
            "float32). Fix: jax.config.update(\"jax_enable_x64\", True), or call it inside "
            "`with jax.enable_x64(True):`. (sft turns the flag on at import unless SFT_NO_X64=1.)")


#: Default PSD tolerance factor: tol = PSD_RTOL_FACTOR * n * eps * max|lam| (see :func:`psd_eigh`).
PSD_RTOL_FACTOR = 10.0


def psd_eigh(name: str, A, *, definite: bool = False, rtol: float | None = None, vectors: bool = True):
    """Eigen-decomposition of a real symmetric matrix (or stack (..., n, n)) that must be positive
    semi-definite (``definite=False``) or positive definite (``definite=True``), within a tolerance.

    Tolerance rule (per matrix): ``tol = rtol * max|lam|`` with default ``rtol = 10 n eps``, n the size
    and eps = 2.2e-16 the float64 machine epsilon. Symmetric eigensolvers are backward stable, so the
    computed eigenvalues are exact for A + E with ||E||_2 ~ n eps ||A||_2 (Golub & Van Loan, *Matrix
    Computations*, 4th ed., sec. 8.3), and rounding the entries of A itself (a Gram matrix X X^T, a
    kernel) adds errors of the same order: an exactly singular PSD matrix may come out with
    lam_min = -1e-16 lam_max on one CPU and +1e-16 on another. Hence

    - PSD: accepted iff lam_min >= -tol; eigenvalues in [-tol, 0) are returned as exactly 0;
    - PD:  accepted iff lam_min > tol (a matrix singular within rounding is not invertible);

    otherwise ValueError naming ``name``, lam_min, lam_max and tol. Callers whose matrix carries a
    larger known error (e.g. a quadrature) pass a larger ``rtol`` and say why. The matrix must be
    finite, square and symmetric within ``RTOL[float64] * max|A|`` (else ValueError); the symmetric
    part 0.5 (A + A^T) is decomposed (numpy ``eigh``/``eigvalsh``, ascending eigenvalues).

    Returns ``(lam, V)`` ((..., n), (..., n, n)) or ``lam`` alone if ``vectors=False``.

    >>> import numpy as np
    >>> x = np.array([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])        # rank 1: G = x x^T is singular
    >>> lam = psd_eigh("G", x @ x.T, vectors=False)             # PSD: fine, lam_min >= 0 (clipped)
    >>> bool(lam.min() >= 0), round(float(lam[-1]), 12)
    (True, 26.25)
    >>> psd_eigh("G", x @ x.T, definite=True)                   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: G is not positive definite: its smallest eigenvalue is ... <= tol = ...
    """
    a = np.asarray(A, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2] or a.shape[-1] < 1:
        raise ValueError(f"{name} has shape {a.shape}: it must be a square (n, n) matrix with n >= 1")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf: it must be finite")
    n = a.shape[-1]
    scale = np.max(np.abs(a), axis=(-2, -1), keepdims=True)
    asym = np.max(np.abs(a - np.swapaxes(a, -1, -2)), axis=(-2, -1), keepdims=True)
    rtol_sym = RTOL[np.dtype("float64")]
    if np.any(asym > rtol_sym * scale):
        i = np.argmax((asym / np.where(scale > 0, scale, 1.0)).ravel())
        raise ValueError(f"{name} is not symmetric: max |A - A^T| = {asym.ravel()[i]:.3g} exceeds "
                         f"{rtol_sym:g} x max |A| = {rtol_sym * scale.ravel()[i]:.3g}")
    a = 0.5 * (a + np.swapaxes(a, -1, -2))
    if rtol is None:
        rtol = PSD_RTOL_FACTOR * n * np.finfo(np.float64).eps
    elif not (np.isfinite(rtol) and rtol >= 0):
        raise ValueError(f"rtol={rtol!r} is not allowed: a finite number >= 0")
    lam, V = np.linalg.eigh(a) if vectors else (np.linalg.eigvalsh(a), None)
    tol = rtol * np.max(np.abs(lam), axis=-1, keepdims=True)
    bad = lam[..., :1] <= tol if definite else lam[..., :1] < -tol
    if np.any(bad):
        i = np.argmax(bad.ravel())
        lo, hi, t = lam.reshape(-1, n)[i, 0], lam.reshape(-1, n)[i, -1], tol.ravel()[i]
        which = "" if a.ndim == 2 else \
            f" (matrix {tuple(int(j) for j in np.unravel_index(i, a.shape[:-2]))} of the stack)"
        rule = f"<= tol = {t:.3g}" if definite else f"< -tol = {-t:.3g}"
        raise ValueError(f"{name} is not positive {'definite' if definite else 'semi-definite'}{which}: "
                         f"its smallest eigenvalue is {lo:.6g} {rule} (largest {hi:.6g}; tol = {rtol:.3g} x "
                         "max|lambda|, the rounding level of a symmetric eigensolver)")
    lam = np.where(lam < 0, 0.0, lam)
    return (lam, V) if vectors else lam


def pd_inverse(name: str, A, *, rtol: float | None = None) -> np.ndarray:
    """A^{-1} of a symmetric positive-definite matrix (or stack (..., n, n)): checked positive definite by
    :func:`psd_eigh` with ``definite=True`` (ValueError if A is singular within its tolerance), then
    A = L L^T (Cholesky, backward stable for PD A) and A^{-1} = L^{-T} L^{-1}, symmetric by construction.
    (Cholesky rather than V diag(1/lam) V^T: for an ill-conditioned A, e.g. a low-rank kernel plus a small
    noise, eigh's absolute eigenvalue error eps lam_max costs relative accuracy in 1/lam_min.)

    >>> pd_inverse("K", [[2.0, 1.0], [1.0, 2.0]]).round(12).tolist()
    [[0.666666666667, -0.333333333333], [-0.333333333333, 0.666666666667]]
    """
    a = np.asarray(A, dtype=np.float64)
    psd_eigh(name, a, definite=True, rtol=rtol, vectors=False)
    L = np.linalg.cholesky(0.5 * (a + np.swapaxes(a, -1, -2)))
    Linv = np.linalg.solve(L, np.broadcast_to(np.eye(a.shape[-1]), L.shape))   # triangular: no growth
    return np.swapaxes(Linv, -1, -2) @ Linv


#: Largest accepted normwise backward error of a general linear solve, in units of n eps (see
#: :func:`solve_checked`).
SOLVE_BACKWARD_FACTOR = 10.0


def solve_residual(A, X, B) -> float:
    """Normwise backward error ||A X - B||_inf / (||A||_inf ||X||_inf + ||B||_inf) of a solution X of
    A X = B (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., thm. 7.1 / eq. (7.2)).
    0 for an exact solution; a backward-stable solver gives O(n eps) whatever the condition of A."""
    A, X, B = np.asarray(A), np.asarray(X), np.asarray(B)
    X2, B2 = X.reshape(X.shape[0], -1), B.reshape(B.shape[0], -1)
    norm = lambda M: float(np.max(np.sum(np.abs(M), axis=1), initial=0.0))  # noqa: E731  (inf-norm)
    den = norm(A) * norm(X2) + norm(B2)
    r = norm(A @ X2 - B2)
    return r / den if den > 0 else r


def solve_checked(name: str, A, B) -> np.ndarray:
    """X = A^{-1} B for a general square A: LU with partial pivoting, then Householder QR if LU was
    inaccurate, each checked by its normwise backward error.

    LU with partial pivoting (``scipy.linalg.solve``) is backward stable only while its growth factor
    stays small; it fails silently on cyclic banded matrices (a ring Hamiltonian z - H: growth 3e8 at
    L = 800 with eta = 0.05, O(1) errors at L = 2000). Householder QR has no growth factor (always
    backward stable, ~2x the cost) and is used when the LU result's backward error
    :func:`solve_residual` exceeds 10 n eps (n = A.shape[0]). If the QR result also exceeds it (or A
    is singular to working precision) ``numpy.linalg.LinAlgError`` (a ValueError) names ``name``, the
    backward error and the limit. For symmetric/Hermitian matrices prefer an eigendecomposition
    (:func:`psd_eigh`, ``numpy.linalg.eigh``) or Cholesky (:func:`pd_inverse`).

    >>> solve_checked("A", [[2.0, 1.0], [0.0, 4.0]], [1.0, 2.0]).tolist()
    [0.25, 0.5]
    """
    import scipy.linalg  # noqa: PLC0415

    A, B = np.asarray(A), np.asarray(B)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or B.shape[:1] != A.shape[:1]:
        raise ValueError(f"{name} has shape {A.shape} and the right-hand side {B.shape}: need (n, n) and (n, ...)")
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
        raise ValueError(f"{name} or the right-hand side contains NaN or inf: they must be finite")
    limit = SOLVE_BACKWARD_FACTOR * A.shape[0] * np.finfo(np.float64).eps
    try:
        X = scipy.linalg.solve(A, B)
        err = solve_residual(A, X, B)
        if not err <= limit:                       # LU growth: retry with Householder QR
            Q, R = scipy.linalg.qr(A)
            X = scipy.linalg.solve_triangular(R, Q.conj().T @ B)
            err = solve_residual(A, X, B)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgWarning) as exc:
        raise np.linalg.LinAlgError(f"{name} is singular to working precision: {exc}") from None
    if not err <= limit:
        raise np.linalg.LinAlgError(
            f"the linear solve with {name} ({A.shape[0]} x {A.shape[0]}) is inaccurate: normwise backward "
            f"error ||A X - B|| / (||A|| ||X|| + ||B||) = {err:.3g} > {limit:.3g} (= 10 n eps) after LU and "
            "Householder QR; the matrix is singular or too ill-conditioned for float64")
    return X


def check_depth(depth) -> int:
    """Validate ``depth`` (number of hidden layers): an integer >= 1."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth={depth!r} is not allowed: depth must be an integer >= 1 "
                         "(the number of hidden layers / nonlinearities)")
    return int(depth)


def check_widths(widths) -> tuple[int, ...]:
    """Validate a sequence of hidden-layer widths (integers >= 1)."""
    try:
        ws = tuple(widths)
    except TypeError:
        ws = (widths,)
    if len(ws) == 0:
        raise ValueError("widths=() is not allowed: give at least one hidden-layer width")
    for w in ws:
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise ValueError(f"widths={ws!r} is not allowed: every width must be an integer >= 1")
    return tuple(int(w) for w in ws)


def layer_constants(depth, C_W, C_b) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer (C_W, C_b) as float64 arrays of length ``depth + 1`` (layers 1 .. depth+1, readout last).

    ``C_W`` and ``C_b`` are scalars (the same in every layer) or sequences of length ``depth + 1``.
    C_W must be > 0 and C_b >= 0, all finite.
    """
    depth = check_depth(depth)
    out = []
    for name, val, lo_ok in (("C_W", C_W, False), ("C_b", C_b, True)):
        arr = check_array(name, val, ndim=(0, 1))
        if arr.ndim == 0:
            arr = np.full(depth + 1, float(arr))
        if arr.ndim != 1 or arr.shape[0] != depth + 1:
            raise ValueError(f"{name}={val!r} is not allowed: give a scalar or a sequence of length "
                             f"depth + 1 = {depth + 1} (hidden layers then readout)")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}={val!r} is not allowed: values must be finite")
        bad = arr < 0 if lo_ok else arr <= 0
        if np.any(bad):
            rule = ">= 0" if lo_ok else "> 0"
            raise ValueError(f"{name}={val!r} is not allowed: {name} must be {rule}")
        out.append(arr)
    return out[0], out[1]


def check_inputs(x1, x2=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs of shape (N, d): float64, finite, equal feature dimensions. ``x2=None`` -> x1."""
    arrays = []
    for name, x in (("x1", x1), ("x2", x1 if x2 is None else x2)):
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"{name} has shape {a.shape}: inputs must have shape (N, d) with N, d >= 1")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf: inputs must be finite")
        arrays.append(a)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(f"x1 has feature dimension {arrays[0].shape[1]} but x2 has "
                         f"{arrays[1].shape[1]}: they must be equal")
    return arrays[0], arrays[1]


# ------------------------------------------------------------------ scalar, flag and array arguments
# Entry-point checks shared by sft's public functions: each returns the cleaned value or raises a
# ValueError that names the argument, quotes the value and says what is allowed.

def check_flag(name: str, value) -> bool:
    """A boolean flag: ``True``/``False`` (Python or numpy bool) only, never a truthy string or number.

    >>> check_flag("all_layers", False)
    False
    >>> check_flag("all_layers", "no")
    Traceback (most recent call last):
    ValueError: all_layers='no' is not allowed: all_layers is a flag, give True or False
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name}={value!r} is not allowed: {name} is a flag, give True or False")


def check_int(name: str, value, minimum: int | None = None) -> int:
    """An integer (Python or numpy; not a bool, not a float such as 2.0) >= ``minimum`` if given.

    >>> check_int("n_steps", 3, 1)
    3
    >>> check_int("n_steps", 2.5, 1)
    Traceback (most recent call last):
    ValueError: n_steps=2.5 is not allowed: n_steps must be an integer >= 1
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or (minimum is not None and value < minimum):
        rule = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer{rule}")
    return int(value)


def check_real(name: str, value, *, minimum=None, maximum=None, strict: bool = False) -> float:
    """A finite real scalar (Python/numpy number or 0-d array; not a bool, str, complex or array)
    with ``minimum <= value <= maximum`` (``strict=True``: ``minimum < value < maximum``).

    >>> check_real("noise", 0.5, minimum=0, strict=True)
    0.5
    >>> check_real("noise", float("nan"), minimum=0, strict=True)
    Traceback (most recent call last):
    ValueError: noise=nan is not allowed: noise must be a finite real number > 0
    """
    v = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
    ok = not isinstance(v, (bool, np.bool_)) and isinstance(v, numbers.Real) and np.isfinite(v)
    if ok and minimum is not None:
        ok = v > minimum if strict else v >= minimum
    if ok and maximum is not None:
        ok = v < maximum if strict else v <= maximum
    if not ok:
        lo = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        hi = "" if maximum is None else f"{' and' if lo else ''} {'<' if strict else '<='} {maximum:g}"
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be a finite real number{lo}{hi}")
    return float(v)


def check_array(name: str, value, *, ndim=None, dtype=np.float64, min_size: int = 1) -> np.ndarray:
    """A finite numeric array of ``dtype`` (float64 default; complex128 for complex data; None keeps it) with
    ``ndim`` dimensions (an int or a tuple of allowed ints; None = any) and at least ``min_size``
    entries. Strings, objects, NaN and inf are rejected with a ValueError naming ``name``.

    >>> check_array("x", [[1.0, 2.0]], ndim=2).shape
    (1, 2)
    >>> check_array("x", [1.0, float("nan")])
    Traceback (most recent call last):
    ValueError: x contains NaN or inf: it must be finite
    """
    try:
        if np.asarray(value).dtype.kind in "USV":
            raise TypeError("strings are not numbers")
        complex_input = np.iscomplexobj(value)
        a = None if complex_input and np.dtype(dtype).kind == "f" else np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not allowed: give a numeric array "
                         f"({np.dtype(dtype).name})") from None
    if a is None:
        raise ValueError(f"{name} is complex: it must be real")
    if a.dtype.kind not in "biufc":
        raise ValueError(f"{name} has dtype {a.dtype}: give a numeric array")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and a.ndim not in allowed:
        want = " or ".join(str(d) for d in allowed)
        raise ValueError(f"{name} has shape {a.shape}: it must have {want} dimension(s)")
    if a.size < min_size:
        raise ValueError(f"{name} has shape {a.shape}: it must have at least {min_size} entries")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf: it must be finite")
    return a


def check_key(name: str, key):
    """One JAX PRNG key: a typed key (``jax.random.key(seed)``) or a raw uint32 key of shape (2,)
    (``jax.random.PRNGKey(seed)``); not an int seed, not a batch of keys.

    >>> import jax
    >>> check_key("key", 0)
    Traceback (most recent call last):
    ValueError: key=0 is not allowed: give one JAX PRNG key, e.g. jax.random.key(0)
    """
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    ok = isinstance(key, jax.Array) and (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
        or key.dtype == jnp.uint32 and key.shape == (2,))
    if not ok:
        raise ValueError(f"{name}={key!r} is not allowed: give one JAX PRNG key, e.g. jax.random.key(0)")
    return key
