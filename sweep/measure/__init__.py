"""Measurements of one variant: losses, accuracies, gradient norms and forward signal (``metrics``),
Jacobian singular values (``spectrum``), and the mean-field predictions set beside them in the results
(``predictions``).

Nothing is imported here, so each command loads only the modules it uses.
"""
