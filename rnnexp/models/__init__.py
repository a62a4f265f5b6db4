"""Models: plain ``nn.Module``s in :mod:`rnnexp.models.nets`, LightningModules (one per task) in
:mod:`rnnexp.models.tasks`, the learning-rate schedules the optimizer configs name
(:mod:`rnnexp.models.schedules`) and dynamic evaluation of a trained LM
(:mod:`rnnexp.models.dynamic_eval`). The names most used are re-exported here.

May import :mod:`rnnexp.batch` (the one contract with the data) and :mod:`rnnexp.errors`, never
:mod:`rnnexp.data`, the runtime or the entry points."""

from rnnexp.batch import IGNORE_INDEX
from rnnexp.models.nets import (
    CELLS,
    ManyToManyHead,
    ManyToOneHead,
    RecurrentBackbone,
    SequenceModel,
    detach_state,
    sequence_loss,
    sequence_loss_sum,
)
from rnnexp.models.tasks import DEFAULT_TASK, TASKS, LanguageModel, SequenceClassifier, SequenceTagger

__all__ = [
    "CELLS",
    "DEFAULT_TASK",
    "IGNORE_INDEX",
    "LanguageModel",
    "ManyToManyHead",
    "ManyToOneHead",
    "RecurrentBackbone",
    "SequenceClassifier",
    "SequenceModel",
    "SequenceTagger",
    "TASKS",
    "detach_state",
    "sequence_loss",
    "sequence_loss_sum",
]
