"""Plain ``nn.Module``s: cells, the recurrent backbone, input encoders, heads and losses."""

from rnnexp.models.nets.backbone import RecurrentBackbone
from rnnexp.models.nets.layer_state import LayerState, detach_state
from rnnexp.models.nets.cells import CELLS, CellKind
from rnnexp.models.nets.heads import ManyToManyHead, ManyToOneHead
from rnnexp.models.nets.losses import sequence_loss, sequence_loss_sum
from rnnexp.models.nets.sequence_model import SequenceModel

__all__ = [
    "CELLS", "CellKind", "LayerState", "ManyToManyHead", "ManyToOneHead", "RecurrentBackbone", "SequenceModel",
    "detach_state", "sequence_loss", "sequence_loss_sum",
]
