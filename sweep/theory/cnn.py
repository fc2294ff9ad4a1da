"""Mean field of convolutional networks at initialisation (Xiao, Bahri, Sohl-Dickstein, Schoenholz,
Pennington 2018, arXiv:1806.05393).

Network. One input; pre-activations ``h^l [*positions, c]`` (1-D: ``[n, c]``, 2-D: ``[n, n, c]``), c
channels, c -> inf. Stride-1 convolutions of odd width k with circular padding (positions are taken
mod n), kernels ``W^l [*taps, c, c]`` with tap offsets ``t`` in ``{-(k-1)/2, ..., (k-1)/2}^ndim``::

    h^{l+1}_j(x) = sum_{t, i} W^{l+1}_{t, i, j} phi(h^l_i(x + t)) + b^{l+1}_j

Write ``Sigma^l(x, y) = E[h^l_j(x) h^l_j(y)]`` for the covariance across positions (the same for every
channel j), ``V, C, D`` for the fully connected Gaussian averages (``sweep.theory.kernels``) and ``q*,
c*, chi_1, chi_c, xi_c`` for the fully connected mean field (``sweep.theory.mean_field``).

Gaussian kernels, ``W ~ N(0, sigma_w2 / (k^ndim c))``. Averaging over layer l+1's weights::

    Sigma^{l+1}(x, y) = sigma_w2 (A C[Sigma^l])(x, y) + sigma_b2,
    (A S)(x, y) = k^-ndim sum_t S(x + t, y + t),
    C[S](x, y) = E[phi(u_x) phi(u_y)],  (u_x, u_y) Gaussian with covariance S restricted to {x, y}.

A averages along the diagonals of the covariance over the kernel's footprint. The translation-invariant
covariance ``Sigma*(x, x) = q*``, ``Sigma*(x, y) = q* c*`` (x != y) is a fixed point (A leaves it as it
is): the fully connected one. Linearised around it, ``Sigma = Sigma* + eps``, an off-diagonal entry
changes as ``eps^{l+1}(x, y) = chi_c (A eps^l)(x, y)`` (``dC/dSigma(x, y) = E[phi'(u_x) phi'(u_y)] =
chi_c / sigma_w2`` at the fixed point), and a diagonal one with the length map's slope
``sigma_w2 V'(q*)`` in place of chi_c; diagonal perturbations feed the off-diagonal ones but not the
converse, so these two blocks carry the eigenvalues. Along each diagonal, ``e_d(x) = eps(x, x + d)``, A
is a circular convolution with the footprint's averaging weights ``w(t) = k^-ndim``, whose eigenvectors
are the spatial Fourier modes ``exp(2 pi i f.x / n)``, ``f`` in ``{0, ..., n-1}^ndim``, with eigenvalue
the weights' DFT (real: the footprint is symmetric)::

    lambda(f) = (1/k) sum_{t=-(k-1)/2}^{(k-1)/2} cos(2 pi f t / n)       (1-D; width 3:
                                                                          (1 + 2 cos(2 pi f / n)) / 3)
    lambda(f1, f2) = lambda(f1) lambda(f2)                               (2-D)

So mode f of the correlations decays by ``chi_c lambda(f)`` per layer, with depth scale
``xi_f = -1 / log|chi_c lambda(f)|``. ``lambda(0) = 1``: the uniform mode is the fully connected
correlation map (``xi_0 = xi_c``); for ``k >= 3`` every other mode has ``|lambda(f)| < 1`` and decays
faster. Where ``lambda(f) < 0`` (width 3: ``cos(2 pi f / n) < -1/2``) the mode changes sign every layer
while its magnitude decays by ``|chi_c lambda(f)|``: ``eps^l(f) = sign^l exp(-l / xi_f) eps^0(f)``; the
depth scale describes the magnitude. A kernel wider than n wraps around (several taps read one
position); the formula holds as written.

Delta-orthogonal kernels (``sweep.nets.conv_init.delta_orthogonal``: only the centre tap is non-zero,
``sigma_w M^l`` with ``M^l M^l^T = I``). Then ``h^{l+1}(x) = sigma_w phi(h^l(x)) M^{l+1} + b^{l+1}``:
every position is the same orthogonal fully connected network, and A is the identity (``lambda == 1``).
Its q*, chi_1, chi_c and xi_c are therefore exactly the fully connected ones, whatever the padding; the
functions ``delta_orthogonal_*`` below say so by returning ``sweep.theory.mean_field``'s. (This holds for
square layers, ``c_in = c_out``. A widening layer's orthonormal rows give its output ``c_in / c_out``
times its input's mean square; ``sqrt(c_out / c_in)`` times its centre restores the fan-in convention.)

Delta-orthogonal linear CNN (phi = identity, any biases): the body's Jacobian ``J = dh^L / dh^1`` (the
``L - 1`` layers after the first, as in docs/theory.md) maps ``h^1(x) -> sigma_w^(L-1) h^1(x) M^2 ...
M^L`` at every position x separately (block diagonal over positions, biases drop out). Each ``M^l`` has
orthonormal rows, so ``|v M^l| = |v|`` for every row vector v: J is ``sigma_w^(L-1)`` times an isometry,
and every one of its singular values equals ``sigma_w^(L-1)`` exactly (at any width, for any draw).
Gaussian kernels mix positions and channels at random: their singular values spread.

Shapes: functions of ``(sigma_w2, sigma_b2)`` broadcast them to one shape S like ``mean_field``; the
per-mode ones return ``S + (n,) * ndim`` with the modes in ``numpy.fft`` order (f = 0 first), as NumPy
arrays.
"""

from __future__ import annotations

import numpy as np

from sweep.theory import mean_field as _mf
from sweep.theory.kernels import ActivationLike
from sweep.theory.quadrature import Array


def delta_orthogonal_mean_field(
    activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0
) -> _mf.MeanField:
    """q*, c*, chi_1, chi_c, xi_q, xi_c of a delta-orthogonal CNN: the fully connected ones exactly."""
    return _mf.mean_field(activation, sigma_w2, sigma_b2, q0)


def delta_orthogonal_q_star(
    activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0
) -> Array:
    """q* of a delta-orthogonal CNN (every position): ``mean_field.q_star``."""
    return _mf.q_star(activation, sigma_w2, sigma_b2, q0)


def delta_orthogonal_chi_1(
    activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0
) -> Array:
    """chi_1 of a delta-orthogonal CNN: ``mean_field.chi_1``."""
    return _mf.chi_1(activation, sigma_w2, sigma_b2, q0)


def delta_orthogonal_xi_c(
    activation: ActivationLike, sigma_w2: Array, sigma_b2: Array, q0: Array = 1.0
) -> Array:
    """xi_c of a delta-orthogonal CNN (every Fourier mode alike, lambda == 1): ``mean_field.xi_c``."""
    return _mf.xi_c(activation, sigma_w2, sigma_b2, q0)


def delta_orthogonal_linear_singular_value(sigma_w2: Array, depth: int) -> np.ndarray:
    """``sigma_w^(depth-1)``: every singular value of a depth-L delta-orthogonal linear CNN's body
    Jacobian ``dh^L / dh^1``. Shape of ``sigma_w2``."""
    return np.asarray(sigma_w2, dtype=float) ** ((depth - 1) / 2)


def footprint_eigenvalues(kernel_size: int, n_positions: int, ndim: int = 1) -> np.ndarray:
    """``lambda(f)``, the DFT of a width-k kernel footprint's averaging weights on n circular positions:
    the eigenvalues of the footprint average A. Shape ``(n,) * ndim``, f in ``numpy.fft`` order;
    ``lambda(0) = 1``, real, in [-1, 1]; values below 1e-12 in magnitude are set to exactly 0."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive; got {kernel_size}")
    if n_positions < 1 or ndim < 1:
        raise ValueError(f"need n_positions >= 1 and ndim >= 1; got {n_positions}, {ndim}")
    half = (kernel_size - 1) // 2
    t = np.arange(-half, half + 1)
    f = np.arange(n_positions)
    lam = np.cos(2 * np.pi * np.outer(f, t) / n_positions).mean(axis=1)
    lam[np.abs(lam) < 1e-12] = 0.0  # exact zeros (e.g. k = n) come out as round-off otherwise
    out = lam
    for _ in range(ndim - 1):
        out = np.multiply.outer(out, lam)
    return out


def _modes(
    activation: ActivationLike,
    sigma_w2: Array,
    sigma_b2: Array,
    kernel_size: int,
    n_positions: int,
    ndim: int,
    q0: Array,
) -> tuple[np.ndarray, np.ndarray]:
    mf = _mf.mean_field(activation, sigma_w2, sigma_b2, q0)
    lam = footprint_eigenvalues(kernel_size, n_positions, ndim)
    expand = (Ellipsis, *(None,) * ndim)
    factor = np.asarray(mf.chi_c, dtype=float)[expand] * lam
    finite = np.isfinite(np.asarray(mf.q_star))[expand]
    return factor, np.broadcast_to(finite, factor.shape)


def mode_factors(
    activation: ActivationLike,
    sigma_w2: Array,
    sigma_b2: Array,
    kernel_size: int,
    n_positions: int,
    ndim: int = 1,
    q0: Array = 1.0,
) -> np.ndarray:
    """``chi_c lambda(f)``, signed: the factor per layer of correlation mode f in a Gaussian-kernel CNN
    with circular padding (where q* = inf, chi_c is chi_1's large-q limit, as in ``mean_field``).
    Shape ``S + (n,) * ndim``."""
    return _modes(activation, sigma_w2, sigma_b2, kernel_size, n_positions, ndim, q0)[0]


def mode_depth_scales(
    activation: ActivationLike,
    sigma_w2: Array,
    sigma_b2: Array,
    kernel_size: int,
    n_positions: int,
    ndim: int = 1,
    q0: Array = 1.0,
) -> np.ndarray:
    """``xi_f = -1 / log|chi_c lambda(f)|`` per Fourier mode (the magnitude's depth scale; a mode with
    ``lambda(f) < 0`` also flips sign every layer). inf where ``|chi_c lambda(f)| >= 1`` (the uniform mode
    at criticality) and where q* = inf, as for ``xi_c``; 0 where the factor is 0. ``xi_0 = xi_c``.
    Shape ``S + (n,) * ndim``."""
    factor, finite = _modes(activation, sigma_w2, sigma_b2, kernel_size, n_positions, ndim, q0)
    mag = np.abs(factor)
    below = finite & (mag < 1)
    with np.errstate(divide="ignore"):
        xi = -1.0 / np.log(np.where(below, mag, 0.5))
    return np.where(below, xi, np.inf)
