"""The offline phase: measure models, fit profiles, score accuracy, evaluate routing policies, replay traces.

Belongs here, one job a module: ``design`` (the experiment: a grid of lengths plus natural prompts), ``runner``
(the profiling loop), ``rawdata`` (raw measurement CSVs), ``fitting`` (statsmodels cost-model fits) with
``folds`` (held-out folds and bias), ``lengthfit`` (the censored output-length fit), ``loadfit`` (load models
from concurrent runs) and ``profilefit`` (a profile entry from them), ``accuracy`` (scoring answers on a
labelled suite), ``outcomes`` (outcome matrices: how well and at what cost each model answered each prompt),
``evaluate`` (routing policies replayed over an outcome matrix) with ``curves`` (cost-quality metrics),
``evaluate_output`` (its report) and ``synthetic`` (matrices of known structure), ``replay`` (raw traces
through the online learners), ``plots`` (PNG plots of a profile) and ``progress`` (progress bars).

Does not belong here: the command line (``cli/`` parses arguments and calls this package), and anything on a
request's path: nothing here imports ``router/``, ``server/`` or ``middleware``, and the hot path never
imports this package. ``python -m langchain_energyrouter.calibration`` runs the ``energyrouter`` command.
"""
