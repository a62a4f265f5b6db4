"""Lightning callbacks, one concept per module: checkpoint and resume state, progress lines,
samples, gradient diagnostics, NT-ASGD, the NaN guard, Optuna pruning.

May import the models, the data, :mod:`rnnexp.sampling`, :mod:`rnnexp.runtime` and
:mod:`rnnexp.errors`; the entry points import callbacks, never the other way."""
