"""Every use of Optuna's private API in the sweeper, in one place.

Optuna's ask-and-tell interface leaves out what ``study.optimize`` does for itself: the
heartbeat thread around a running trial, a trial looked up by number in another process, a
trial of another (dead) worker set to FAIL. These few lines use Optuna's internals for that;
when Optuna changes them, this is the file to update (tests/test_sweeper_compat.py covers each).
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager


def heartbeat(trial: Any, storage: Any) -> ContextManager[Any]:
    """The "this trial is alive" thread ``study.optimize`` runs around each trial."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, storage)


def heartbeats(trials: Any, storage: Any) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for trial in trials:
        stack.enter_context(heartbeat(trial, storage))
    return stack


def state_of(study: Any, trial: Any) -> Any:
    """The stored state of a trial (another worker may have finished it meanwhile)."""
    return study._storage.get_trial(trial._trial_id).state


def fail_stored_trial(study: Any, frozen: Any, key: str, value: Any) -> None:
    """Set a trial of another worker to FAIL, with the user attribute ``key`` saying why.
    Raises ``optuna.exceptions.UpdateFinishedTrialError`` when it has finished meanwhile."""
    from optuna.trial import TrialState

    study._storage.set_trial_user_attr(frozen._trial_id, key, value)
    study._storage.set_trial_state_values(frozen._trial_id, state=TrialState.FAIL)


def trial_by_number(study: Any, number: int) -> Any:
    """The ``optuna.trial.Trial`` of the study's trial ``number``, to report intermediate values to."""
    import optuna

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
    return optuna.trial.Trial(study, trial_id)
