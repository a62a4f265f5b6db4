from rnnexp.models.backbone import CELLS, RecurrentBackbone, detach_state
from rnnexp.models.classifier import SequenceClassifier
from rnnexp.models.heads import ManyToManyHead, ManyToOneHead
from rnnexp.models.losses import IGNORE_INDEX, sequence_loss, sequence_loss_sum
from rnnexp.models.sequence_model import SequenceModel
from rnnexp.models.tagger import SequenceTagger

__all__ = [
    "CELLS",
    "IGNORE_INDEX",
    "ManyToManyHead",
    "ManyToOneHead",
    "RecurrentBackbone",
    "SequenceClassifier",
    "SequenceModel",
    "SequenceTagger",
    "detach_state",
    "sequence_loss",
    "sequence_loss_sum",
]
