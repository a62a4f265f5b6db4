"""Models: plain ``nn.Module``s in :mod:`rnnexp.models.nets`, LightningModules (one per task) in
:mod:`rnnexp.models.tasks`. The names most used are re-exported here."""

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
