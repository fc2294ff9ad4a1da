"""Theory beside the measurements: pure functions of ``jax.numpy`` / NumPy, never importing the training path.

One concept per module (the equations: docs/theory.md):

- ``quadrature``: Gaussian quadrature rules; ``kernels``: Gaussian averages of each activation;
  ``programs``: how a theory function is compiled and called on a grid.
- ``fixed_points``: q*, c*, chi_1, chi_c, depth scales; ``maps``: one layer of the length and
  correlation maps and their iterates; ``critical_line``: the order-to-chaos line (Poole et al. 2016,
  Schoenholz et al. 2017). ``mean_field`` re-exports all of these under one name.
- ``spectral_moments``: the law of phi'(h)^2 and the moments of J J^T; ``free_probability``: its
  limiting spectral density, with ``continuation`` following the roots (Pennington et al. 2017, 2018).
- ``mixed_scales``: mean field of weights at mixed scales within and across layers.
- ``residual``: mean field of residual networks (Yang & Schoenholz 2017).
- ``normalisation``: mean field with normalisation layers.
"""
