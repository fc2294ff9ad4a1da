"""What a run leaves on disk and how it is read back: the run directory's files (``store``), their
checksums (``integrity``), the results ``xarray.Dataset`` they assemble into (``results``), reading a
run directory back (``rundir``: load, merge, status) and JAX's compiled-program cache
(``compile_cache``).

Nothing is imported here, so each command loads only the modules it uses.
"""
