"""Singular values of an MLP's input–output Jacobian, as pure per-variant JAX functions.

Contract
--------
Row-vector convention of ``sweep.nets.mlp``: hidden layers ``l = 1..L``, ``h^l = x^{l-1} W^l + b^l`` and
``x^l = φ(h^l)``; ``hidden_w = params["hidden"]["w"]`` stacks ``W^2..W^L`` as ``[L-1, N, N]`` and
``hidden_b`` the biases ``[L-1, N]``; ``h1 = h^1`` is the first hidden layer's pre-activation at one input.
The measured Jacobian is

    J = ∂x^L/∂x^1 = D_L W_Lᵀ ⋯ D_2 W_2ᵀ,   D_l = diag(φ'(h^l)),

an ``N × N`` matrix with ``L - 1`` factors (``D_1`` is not in it: the product starts at the output of the
first hidden layer; pass ``n_factors = L - 1`` to ``sweep.theory.free_probability``). A depth-1 network
(``L - 1 = 0``) has ``J = I``. Singular values are returned as ``log10`` because they span 1e±30 and more
at depth 100+ outside criticality, beyond float32.

Every function is written for ONE variant at ONE input, with no Python control flow on traced values and
with ``lax.scan`` over layers (compile time independent of depth); lift it with ``jax.vmap`` over inputs
and over variants. ``phi`` is the elementwise activation (a Python callable: static, bind it with
``functools.partial`` before ``jax.jit``); ``φ'`` is taken by ``jax.jvp``. Arrays keep the inputs' dtype:
float64 when ``jax_enable_x64`` is on and the inputs are float64. Matrix products inside use
``Precision.HIGHEST`` (no TF32/bf16 passes on accelerators: this is a measurement).

Two ways to the same numbers
----------------------------
``exact_log10_singular_values`` (``N`` up to ~1024): accumulates ``Jᵀ`` factor by factor in a
``lax.scan``, dividing the running product at every layer by the power of two ``2^e`` nearest its
Frobenius norm (exact in floating point) and adding ``e`` to an integer accumulator, then takes
``jnp.linalg.svd`` of the normalised product: ``log10 σ = log10 σ_normalised + e_total log10 2``. Nothing
over- or underflows at any depth and the scale adds no round-off (at depth 200, σ = 1e±60 in float32 come
out to ~1e-5 in log10). Resolution: the normalised product carries round-off of relative size ``ε`` (1e-7
in float32, 1e-16 in float64) per layer, so singular values much smaller than the largest — below about
1e-6 of it in float32 (1e-14 in float64) — are at round-off level: a floor, not a measurement (in the
chaotic or ordered phase at large depth, and even near criticality for saturating φ, the bottom of the
spectrum is such a floor). Exact zeros (e.g. a layer with every unit dead, or — when LAPACK returns them
exactly — relu's dead units in the last layer) give ``-inf``, never NaN; otherwise zero singular values
show up at the round-off floor. Non-finite forward pre-activations (a forward pass that itself
overflowed) propagate as NaN: the variant diverged. Cost ``O(L N³)`` per input, ``O(N²)`` memory.

``matrix_free_log10_singular_values`` (wide nets): never forms ``J``. One forward scan stores ``φ'(h^l)``
(``[L-1, N]``); ``J v`` and ``Jᵀ u`` are scans of matrix–vector products over the layers. Per-layer scales
``2^{e_l}`` — the growth, rounded to a power of two, of a block of random ±1/√N probe vectors pushed
through the layers and renormalised at every layer — are divided out of every factor, so that vectors stay
O(1) at any depth (exactly, without round-off). On the rescaled operator ``J̃ = J / 2^{Σ e_l}`` it runs
``n_iter`` steps of Golub–Kahan–Lanczos bidiagonalisation with full reorthogonalisation (``lax.fori_loop``).
This is Lanczos on ``JᵀJ`` (its tridiagonal matrix is ``BᵀB``), but the singular values are read from the
bidiagonal ``B`` directly, so small ones are resolved to ``ε σ_max`` rather than ``√ε σ_max``. Each step
costs one ``J v`` and one ``Jᵀ u``: ``4 (L-1) N²`` flops. Top values converge fast. The BOTTOM values are
less accurate: they converge only when ``n_iter`` approaches ``N`` or the bottom is well separated, are
upper bounds of the true smallest singular values before that, and are not trustworthy below a round-off
floor of order ``ε σ_max`` (as in the exact route). Ritz values that are exactly zero give ``-inf``. The
mean squared singular value ``log10(tr(JᵀJ)/N)`` is estimated Hutch++-style: exactly on the Krylov subspace
(``‖J̃ V‖_F² = ‖B‖_F²``) plus Hutchinson with the same probes projected off it — unbiased for the trace
(the log adds a small bias), relative standard error ``≤ sqrt(2 Σσ⁴/(Σσ²)² / n_probes)`` and much less
when the top of the spectrum dominates (it is caught by the subspace); exact when ``n_iter = N``.

``spectrum_summary`` turns ``log10`` singular values into per-variant scalars without leaving log space
where values could overflow; ``use_matrix_free`` picks the route from the width.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

Activation = Callable[[jax.Array], jax.Array]

_HIGHEST = jax.lax.Precision.HIGHEST
N_PROBES = 8  # matrix-free route: Hutchinson probes, the default of every measurement
_LN10 = 2.302585092994046
_LOG10_2 = 0.30102999566398120

__all__ = [
    "exact_log10_singular_values",
    "matrix_free_log10_singular_values",
    "spectrum_summary",
    "use_matrix_free",
]


def _derivative(phi: Activation, h: jax.Array) -> jax.Array:
    """``φ'(h)`` elementwise (``φ`` is elementwise, so a JVP with a ones tangent is its derivative)."""
    return jax.jvp(phi, (h,), (jnp.ones_like(h),))[1]


def _exponent(norm: jax.Array) -> jax.Array:
    """``e`` (int32) with ``norm / 2^e ∈ [0.5, 1)``; 0 for a zero norm. Dividing by ``2^e`` is exact."""
    return jnp.frexp(norm)[1].astype(jnp.int32)


@jax.custom_batching.custom_vmap
def singular_values(a: jax.Array) -> jax.Array:
    """Singular values of ONE matrix ``a [m, n]``, descending: ``[min(m, n)]``.

    Under ``vmap`` the matrices are decomposed one after another (``lax.map``), never as one batched
    LAPACK call: jaxlib's batched CPU kernels split the batch over XLA's intra-op thread pool and block
    a pool thread until the parts finish, which deadlocks once every pool thread is such a kernel (one
    per CPU device, one XLA CPU device per core). Each device still decomposes its own variants' matrices
    at the same time as the others.
    """
    return jnp.linalg.svd(a, compute_uv=False)


@singular_values.def_vmap
def _singular_values_one_by_one(axis_size: int, in_batched: list[bool], a: jax.Array):
    if not in_batched[0]:
        return singular_values(a), False
    return jax.lax.map(singular_values, a), True


def _log10_nonnegative(x: jax.Array) -> jax.Array:
    """``log10(max(x, 0))``: round-off below zero and exact zeros become ``-inf``, never NaN."""
    return jnp.log10(jnp.maximum(x, jnp.zeros_like(x)))


# ---------------------------------------------------------------------------------------------------------
# Exact route


def exact_log10_singular_values(
    hidden_w: jax.Array, hidden_b: jax.Array, h1: jax.Array, phi: Activation
) -> jax.Array:
    """``log10`` singular values of ``J = ∂x^L/∂x^1``, descending: ``[N]``.

    ``hidden_w [L-1, N, N]``, ``hidden_b [L-1, N]``, ``h1 [N]`` (one variant, one input). The product
    ``Jᵀ = W_2 D_2 ⋯ W_L D_L`` is accumulated in a ``lax.scan`` over layers, divided at every layer by the
    power of two nearest its Frobenius norm (exact; the exponents are summed as integers), then
    ``jnp.linalg.svd`` of the normalised product. Values more than ~6 decades (float32; ~14 in float64)
    below the largest are at round-off level; exact zeros give ``-inf`` (the SVD may instead return them at
    that floor). See the module docstring.
    """
    n = h1.shape[-1]
    dtype = jnp.result_type(hidden_w, hidden_b, h1)

    def layer(
        carry: tuple[jax.Array, jax.Array, jax.Array], wb: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], None]:
        h, product, exponent = carry
        w, b = wb
        h = jnp.matmul(phi(h), w, precision=_HIGHEST) + b
        product = jnp.matmul(product, w * _derivative(phi, h)[None, :], precision=_HIGHEST)
        e = _exponent(jnp.linalg.norm(product))
        return (h, jnp.ldexp(product, -e), exponent + e), None

    init = (h1.astype(dtype), jnp.eye(n, dtype=dtype), jnp.zeros((), jnp.int32))
    (_, product, exponent), _ = jax.lax.scan(layer, init, (hidden_w.astype(dtype), hidden_b.astype(dtype)))
    sv = singular_values(product)
    return _log10_nonnegative(sv) + exponent.astype(dtype) * jnp.asarray(_LOG10_2, dtype)


# ---------------------------------------------------------------------------------------------------------
# Matrix-free route


def _forward_pass(
    hidden_w: jax.Array, hidden_b: jax.Array, h1: jax.Array, phi: Activation, probes: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One forward scan: ``(φ'(h^l) [L-1, N], exponents e_l [L-1] int32, J̃ Z [p, N])``.

    Alongside the network's forward pass, the probe block ``Z`` (``[p, N]``, unit-norm rows) is pushed
    through the layer Jacobians, ``Z ← (Z W_l) ⊙ φ'(h^l)``, and divided at every layer by the power of two
    ``2^{e_l}`` that brings its Frobenius norm back into ``[0.5, 1) √p``: ``2^{e_l}`` tracks the growth of
    a typical vector at layer ``l`` and self-corrects (no drift over depth). The final block is exactly
    ``J̃ Z`` with ``J̃ = J / 2^{Σ e_l}``.
    """
    target = jnp.sqrt(jnp.asarray(probes.shape[0], probes.dtype))

    def layer(
        carry: tuple[jax.Array, jax.Array], wb: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
        h, z = carry
        w, b = wb
        h = jnp.matmul(phi(h), w, precision=_HIGHEST) + b
        dl = _derivative(phi, h)
        z = jnp.matmul(z, w, precision=_HIGHEST) * dl[None, :]
        e = _exponent(jnp.linalg.norm(z) / target)
        return (h, jnp.ldexp(z, -e)), (dl, e)

    (_, pushed), (d, exponents) = jax.lax.scan(layer, (h1, probes), (hidden_w, hidden_b))
    return d, exponents, pushed


def _forward(hidden_w: jax.Array, d: jax.Array, exponents: jax.Array, v: jax.Array) -> jax.Array:
    """``J̃ v`` with ``J̃ = J / 2^{Σ e_l}``: ``v ← (v W_l) ⊙ φ'(h^l) / 2^{e_l}`` for ``l = 2..L``."""

    def layer(v: jax.Array, wde: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        w, dl, e = wde
        return jnp.ldexp(jnp.matmul(v, w, precision=_HIGHEST) * dl, -e), None

    return jax.lax.scan(layer, v, (hidden_w, d, exponents))[0]


def _backward(hidden_w: jax.Array, d: jax.Array, exponents: jax.Array, u: jax.Array) -> jax.Array:
    """``J̃ᵀ u``: ``u ← ((u ⊙ φ'(h^l)) W_lᵀ) / 2^{e_l}`` for ``l = L..2``."""

    def layer(u: jax.Array, wde: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        w, dl, e = wde
        return jnp.ldexp(jnp.matmul(w, u * dl, precision=_HIGHEST), -e), None

    return jax.lax.scan(layer, u, (hidden_w, d, exponents), reverse=True)[0]


def _orthogonalise(basis: jax.Array, x: jax.Array) -> jax.Array:
    """``x`` minus its projection on the rows of ``basis`` (zero rows are unused slots), done twice."""
    for _ in range(2):  # "twice is enough" (Kahan–Parlett); a static unroll, not control flow on values
        x = x - jnp.matmul(jnp.matmul(basis, x, precision=_HIGHEST), basis, precision=_HIGHEST)
    return x


def _next_basis_vector(x: jax.Array, basis: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Orthogonalise ``x`` against ``basis`` and normalise it: ``(unit vector, its coefficient ‖x⊥‖)``.

    If ``x`` lies in the span to working precision (``‖x⊥‖ ≤ ε ‖x‖``, including ``x = 0``), its direction is
    round-off and is replaced by a new direction orthogonal to ``basis``: the coordinate vector ``e_i`` least
    covered by the basis (``Σ_i ‖P e_i‖² = rank < N``, so its orthogonal part has norm² ≥ 1 - rank/N). The
    coefficient is kept, so the bidiagonal relation holds to round-off and an exact zero stays an exact
    zero (an invariant subspace).
    """
    eps = jnp.finfo(x.dtype).eps
    before = jnp.linalg.norm(x)
    x = _orthogonalise(basis, x)
    norm = jnp.linalg.norm(x)
    ok = norm > eps * before
    coverage = jnp.sum(basis * basis, axis=0)
    fresh = _orthogonalise(basis, (jnp.arange(x.shape[-1]) == jnp.argmin(coverage)).astype(x.dtype))
    fresh_norm = jnp.linalg.norm(fresh)  # 0 only once the basis spans everything (then unused)
    fresh = fresh / jnp.where(fresh_norm > 0, fresh_norm, jnp.ones_like(fresh_norm))
    unit = jnp.where(ok, x / jnp.where(ok, norm, jnp.ones_like(norm)), fresh)
    return unit, norm


def matrix_free_log10_singular_values(
    hidden_w: jax.Array,
    hidden_b: jax.Array,
    h1: jax.Array,
    phi: Activation,
    k: int,
    n_iter: int,
    key: jax.Array,
    *,
    n_probes: int = N_PROBES,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Top and bottom ``log10`` singular values of ``J``, matrix-free: ``(top, bottom, log10_mean_sq)``.

    ``top`` (``[k]``) holds the ``k`` largest Ritz values, descending; ``bottom`` (``[k]``) the ``k``
    smallest, also descending (``bottom[-1]`` is the smallest), so ``concatenate([top, bottom])`` runs down
    the spectrum's two ends. By interlacing, ``top`` are lower bounds and ``bottom`` upper bounds of the
    corresponding singular values of ``J`` (up to round-off).
    ``log10_mean_sq`` estimates ``log10(tr(JᵀJ)/N)`` (see below). ``k ≤ n_iter ≤ N`` and ``n_probes`` are
    static Python ints; ``key`` draws the probes and the Lanczos start.

    1. Scales: ``n_probes`` random ±1/√N probes pushed through the layers with the forward pass; their
       growth at layer ``l``, rounded to a power of two ``2^{e_l}``, is divided out of that layer's factor.
    2. Golub–Kahan–Lanczos with full reorthogonalisation on ``J̃ = J / 2^{Σ e_l}`` for ``n_iter`` steps: the
       top Ritz values converge quickly; the bottom ones are less accurate (upper bounds until ``n_iter``
       nears ``N``) and not trustworthy below ~``ε σ_max``.
    3. Mean square: the Krylov subspace ``V`` is counted exactly (``‖J̃ V‖_F² = ‖B‖_F²``) and its complement
       by Hutchinson with the same probes projected off ``V`` (Hutch++-style deflation). Unbiased; relative
       standard error ``≤ sqrt(2 Σσ⁴/(Σσ²)² / n_probes)`` and far smaller when the top of the spectrum,
       caught by ``V``, dominates; exact when ``n_iter = N``.
    """
    n = h1.shape[-1]
    n_factors = hidden_w.shape[0]
    if not 1 <= k <= n_iter <= n:
        raise ValueError(f"need 1 <= k <= n_iter <= width, got k={k}, n_iter={n_iter}, width={n}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    dtype = jnp.result_type(hidden_w, hidden_b, h1)
    hidden_w, hidden_b, h1 = hidden_w.astype(dtype), hidden_b.astype(dtype), h1.astype(dtype)
    if n_factors == 0:  # depth 1: J = I (a static shape, not a traced value)
        zeros = jnp.zeros((k,), dtype)
        return zeros, zeros, jnp.zeros((), dtype)

    # One random-number call (each is a kernel to compile): probe signs and the Lanczos start.
    z = jax.random.normal(key, (n_probes + 1, n), dtype)
    probes = jnp.where(z[:n_probes] >= 0, 1.0, -1.0).astype(dtype) / jnp.sqrt(jnp.asarray(n, dtype))
    d, exponents, pushed = _forward_pass(hidden_w, hidden_b, h1, phi, probes)
    log10_c = jnp.sum(exponents).astype(dtype) * jnp.asarray(_LOG10_2, dtype)  # J = 10^log10_c J̃
    return lanczos_log10_singular_values(
        lambda v: _forward(hidden_w, d, exponents, v),
        lambda u: _backward(hidden_w, d, exponents, u),
        probes,
        pushed,
        log10_c,
        z[n_probes],
        k,
        n_iter,
    )


def lanczos_log10_singular_values(
    apply_j: Callable[[jax.Array], jax.Array],
    apply_jt: Callable[[jax.Array], jax.Array],
    probes: jax.Array,
    pushed: jax.Array,
    log10_c: jax.Array,
    start: jax.Array,
    k: int,
    n_iter: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Golub–Kahan–Lanczos on a rescaled operator ``J̃ = J / 10^log10_c`` given as ``apply_j(v) = J̃ v``
    and ``apply_jt(u) = J̃ᵀ u`` (vectors [n]): ``(top [k], bottom [k], log10 mean σ²)`` of ``J``.

    ``probes`` [p, n] are the Hutchinson probes and ``pushed = J̃ probes`` (rows) [p, n]; ``start`` [n]
    the (unnormalised) Lanczos start. See ``matrix_free_log10_singular_values``.
    """
    n_probes, n = probes.shape
    dtype = probes.dtype

    def step(
        j: jax.Array, state: tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
        u_basis, v_basis, v, alpha, beta = state
        beta_prev = jnp.where(j > 0, beta[j - 1], jnp.zeros((), dtype))
        u, a = _next_basis_vector(apply_j(v) - beta_prev * u_basis[j - 1], u_basis)
        u_basis, v_basis = u_basis.at[j].set(u), v_basis.at[j].set(v)
        v, b = _next_basis_vector(apply_jt(u) - a * v, v_basis)
        return u_basis, v_basis, v, alpha.at[j].set(a), beta.at[j].set(b)

    basis = jnp.zeros((n_iter, n), dtype)
    coef = jnp.zeros((n_iter,), dtype)
    init = (basis, basis, start / jnp.linalg.norm(start), coef, coef)
    u_basis, v_basis, _, alpha, beta = jax.lax.fori_loop(0, n_iter, step, init)
    # J̃ V = U B with B upper bidiagonal (the last β couples to v_{n_iter}, outside the subspace)
    bidiagonal = jnp.diag(alpha) + jnp.diag(beta[:-1], 1)
    log10_ritz = _log10_nonnegative(singular_values(bidiagonal)) + log10_c

    # Hutch++-style mean square: ‖J̃ V‖_F² = ‖B‖_F² exactly, plus Hutchinson on the complement of V, whose
    # probe images J̃ (Z - Z Vᵀ V) = J̃ Z - (Z Vᵀ) Bᵀ U need no further pass through the layers.
    in_krylov = jnp.matmul(
        jnp.matmul(probes, v_basis.T, precision=_HIGHEST), bidiagonal.T, precision=_HIGHEST
    )
    deflated = pushed - jnp.matmul(in_krylov, u_basis, precision=_HIGHEST)
    mean_sq_scaled = jnp.sum(bidiagonal**2) / n + jnp.sum(deflated**2) / n_probes
    log10_mean_sq = jnp.log10(mean_sq_scaled) + 2.0 * log10_c
    return log10_ritz[:k], log10_ritz[n_iter - k :], log10_mean_sq


# ---------------------------------------------------------------------------------------------------------
# Summaries


def spectrum_summary(log10_sv: jax.Array) -> dict[str, jax.Array]:
    """Per-variant summaries of ``log10`` singular values ``[..., N]`` (reduced over the last axis).

    - ``mean_sq_sv``: ``log10(mean σ²)`` by logsumexp (the free-probability ``m₁ = χ^{L-1}``).
    - ``max_sv``, ``min_sv``: ``log10`` of the largest and smallest singular value.
    - ``log10_condition``: ``max_sv - min_sv``; ``+inf`` when the smallest is exactly 0.
    - ``eig_variance_rel``: variance of the eigenvalues ``λ = σ²`` of ``J Jᵀ`` over their mean squared,
      ``mean((λ/m₁ - 1)²)`` (two-pass, after normalising by the mean: no overflow, no cancellation).
    - ``log10_eig_variance``: ``log10`` of the variance of ``λ`` (``-inf`` for an exact isometry).
    - ``eig_variance``: the variance of ``λ`` itself, linear (``inf`` only where it exceeds the dtype's
      range, e.g. beyond 1e38 in float32 deep in the chaotic phase: use the log form there).

    A zero spectrum (all ``-inf``) gives ``-inf`` logs, 0 variances and ``+inf`` condition, never NaN.
    """
    n = log10_sv.shape[-1]
    dtype = log10_sv.dtype
    ln_lam = 2.0 * _LN10 * log10_sv
    ln_mean = logsumexp(ln_lam, axis=-1) - jnp.log(jnp.asarray(n, dtype))
    finite_mean = jnp.isfinite(ln_mean)
    safe_ln_mean = jnp.where(finite_mean, ln_mean, jnp.zeros_like(ln_mean))
    ratio = jnp.exp(ln_lam - safe_ln_mean[..., None])  # λ/m₁ ∈ [0, N]
    rel_var = jnp.where(finite_mean, jnp.mean((ratio - 1.0) ** 2, axis=-1), jnp.zeros_like(ln_mean))
    log10_mean = ln_mean / _LN10
    log10_var = jnp.where(
        finite_mean, jnp.log10(rel_var) + 2.0 * log10_mean, jnp.full_like(ln_mean, -jnp.inf)
    )
    max_sv = jnp.max(log10_sv, axis=-1)
    min_sv = jnp.min(log10_sv, axis=-1)
    singular = jnp.isneginf(min_sv)
    return {
        "mean_sq_sv": log10_mean,
        "max_sv": max_sv,
        "min_sv": min_sv,
        "log10_condition": jnp.where(singular, jnp.full_like(max_sv, jnp.inf), max_sv - min_sv),
        "eig_variance_rel": rel_var,
        "log10_eig_variance": log10_var,
        "eig_variance": jnp.power(10.0, log10_var).astype(dtype),
    }


def use_matrix_free(width: int, threshold: int = 1024) -> bool:
    """True when ``width > threshold``: the exact route costs ``O(L N³)`` and ``N²`` memory per variant
    and input, the matrix-free one ``O(n_iter L N²)`` with ``O(n_iter N)`` memory."""
    return width > threshold
