"""Theory beside the measurements: pure functions of ``jax.numpy``, never importing the training path.

- ``sweep.theory.mean_field``: q*, c*, chi_1, chi_c, depth scales, critical lines (Poole et al. 2016,
  Schoenholz et al. 2017).
- ``sweep.theory.free_probability``: limiting spectral density and moments of J J^T (Pennington et al.
  2017, 2018).
- ``sweep.theory.mixed_scales``: mean field of weights at mixed scales within and across layers.
- ``sweep.theory.residual``: mean field of residual networks (Yang & Schoenholz 2017).
"""
