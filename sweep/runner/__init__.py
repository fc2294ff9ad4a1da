"""The run machinery: from an experiment to results (``engine``), one compiled program per group
(``train``), chunks of variants (``chunks``) sized to memory (``memory``) and trained in passes
(``passes``) on every local device (``devices``), across processes (``distributed``) or job arrays
(``submit``).

Nothing is imported here: ``sweep status`` and ``sweep theory`` must start without the training path.
"""
