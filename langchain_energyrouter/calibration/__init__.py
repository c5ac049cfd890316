"""The offline phase: profiling runs, fits, accuracy scoring, explanations and plots.

Modules, one job each: ``design`` (the experiment), ``runner`` (the profiling
loop), ``rawdata`` (raw CSVs), ``fitting`` (statsmodels fits), ``accuracy``,
``explain``, ``plots`` and ``cli`` (the ``energyrouter`` command). Nothing here
is imported by the hot path.
"""
