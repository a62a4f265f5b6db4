"""What a run does around the model: process setup, the run directory and talking to the user.

Threads, the CPU allocator and the precision a run uses (``threads``, ``allocator``,
``precision``); the config resolvers, the ``key=value`` command lines and the ``trainer.*`` number
checks (``resolvers``, ``cli``, ``trainer_checks``);
the run's files and loggers (``run_log``, ``loggers``, ``checkpoints``); what the terminal shows
(``terminal``) and the Hydra callback that ends a multirun with its table (``hydra_callbacks``).
Each module keeps one library's internals to itself where it needs them.

May import :mod:`rnnexp.errors` and :mod:`rnnexp.reporting`; never the models, the data or the
entry points (``rnnexp.train`` and its siblings import from here, not the other way).
"""
