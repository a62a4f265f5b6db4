"""What the sweep tests share: the overrides of a short trial, and the check of a study's trials."""

from __future__ import annotations

from optuna.trial import TrialState

FAST = ["debug=limit", "trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "callbacks=none", "test=false", "trainer.enable_progress_bar=false"]


def finished_trials_ok(trials, n_trials: int) -> list:
    """Exactly ``n_trials`` finished trials (complete or pruned), each number once; the others failed."""
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials, [(t.number, t.state.name) for t in trials]
    assert all(t.state == TrialState.FAIL for t in trials if t not in finished)
    return finished
