"""Mean-field signal propagation in wide random networks (Poole et al. 2016; Schoenholz et al. 2017).

Standard parameterization ``W_ij ~ N(0, σ_w²/N)``, ``b_i ~ N(0, σ_b²)``, ``h^l = W^l φ(h^{l-1}) + b^l``;
``z, z₁, z₂ ~ N(0, 1)`` independent, ``u = √q z``, ``u₁ = √q z₁``, ``u₂ = √q (c z₁ + √(1-c²) z₂)``::

    length map        q^l = σ_w² V(q^{l-1}) + σ_b²,   V(q) = E[φ(u)²]              fixed point q*
    correlation map   c^l = (σ_w² C(q*, c^{l-1}) + σ_b²) / q*,   C = E[φ(u₁)φ(u₂)]  fixed point c*
    χ₁  = σ_w² E[φ'(u)²] at q*,   χ_c = σ_w² E[φ'(u₁)φ'(u₂)] at (q*, c*),   ξ_q, ξ_c = -1/log(multiplier)

This module is the public face of the fully connected mean field: it re-exports, under one name, what
the modules below implement (one concept each; the equations are written out in docs/theory.md):

- ``sweep.theory.quadrature``: Gaussian quadrature rules (``gaussian_expectation``, Gauss–Hermite).
- ``sweep.theory.kernels``: Gaussian kernels of activations (``gaussian_kernel``, ``Moments``).
- ``sweep.theory.fixed_points``: q*, c*, χ₁, χ_c, ξ_q, ξ_c (``mean_field`` and one function each).
- ``sweep.theory.maps``: one layer of the length and correlation maps, their iterates, V, V', D.
- ``sweep.theory.critical_line``: the order-to-chaos line χ₁ = 1.

Every function takes an activation as a registry name (``sweep.nets.activations``) or an elementwise callable
of ``jax.numpy`` and broadcasts over array arguments; results have the broadcast shape and follow the input
dtype (float64 when ``jax_enable_x64`` is on and the inputs are 64-bit, else float32).
"""

from __future__ import annotations

from sweep.theory.critical_line import (
    Boundary,
    critical_line,
    critical_sigma_w2,
    order_chaos_boundary,
)
from sweep.theory.fixed_points import (
    MeanField,
    c_star,
    chi_1,
    chi_c,
    depth_scale,
    mean_field,
    q_star,
    xi_c,
    xi_q,
)
from sweep.theory.kernels import (
    ActivationLike,
    CorrelationFn,
    GaussianKernel,
    Moments,
    gaussian_kernel,
)
from sweep.theory.maps import (
    correlation_map,
    correlation_map_iterates,
    gaussian_moments,
    length_map,
    length_map_iterates,
)
from sweep.theory.quadrature import (
    _FINE,  # the fine sinh–Legendre rule, for modules that evaluate kernel moments themselves
    Array,
    Rule,
    gauss_hermite_1d,
    gauss_hermite_2d,
    gaussian_expectation,
    hermite_rule,
)

__all__ = [
    "_FINE",
    "ActivationLike",
    "Array",
    "Boundary",
    "CorrelationFn",
    "GaussianKernel",
    "MeanField",
    "Moments",
    "Rule",
    "c_star",
    "chi_1",
    "chi_c",
    "correlation_map",
    "correlation_map_iterates",
    "critical_line",
    "critical_sigma_w2",
    "depth_scale",
    "gauss_hermite_1d",
    "gauss_hermite_2d",
    "gaussian_expectation",
    "gaussian_kernel",
    "gaussian_moments",
    "hermite_rule",
    "length_map",
    "length_map_iterates",
    "mean_field",
    "order_chaos_boundary",
    "q_star",
    "xi_c",
    "xi_q",
]
