"""The offline phase: profiling runs, fits, accuracy scoring, explanations and plots.

Modules, one job each: ``design`` (the experiment), ``runner`` (the profiling
loop), ``rawdata`` (raw CSVs), ``fitting`` (statsmodels cost-model fits) with
``folds`` (held-out folds and bias), ``lengthfit`` (the censored output-length
fit) and ``profilefit`` (a profile entry from both), ``load`` (load models),
``accuracy``, ``explain``, ``plots``, ``replay`` (traces through the online
learners), ``evaluate`` (routing policies replayed over an outcome matrix) with
``curves`` (its cost-quality metrics), ``evaluate_output`` and ``synthetic``;
and the ``energyrouter`` command: ``cli`` (the parser) with one module per
command (``calibratecmd``, ``fitcmd``, ``accuracycmd``, ``explaincmd``,
``plotcmd``, ``replaycmd``, ``traincmd``, ``evaluatecmd``, ``statecmd``,
``servecmd``, ``democmd``) and ``cliutil`` (what they share).
Nothing here is imported by the hot path.
"""
