"""DropConnect on the recurrent weights (Merity et al. 2017's ``WeightDrop``), kept on the fused kernels.

AWD-LSTM regularises the hidden-to-hidden matrices ``U`` instead of the activations: one
Bernoulli mask per weight and per forward pass, ``U * m / (1 - p)``, so every step of every
sequence in the batch sees the same dropped matrix. Dropping on the weights (not on ``h_t``)
is what lets the recurrence stay one fused ``nn.LSTM``/``nn.GRU``/``nn.RNN`` call: the block
runs with the masked copies in place of its own ``weight_hh_l*`` (``torch.func.functional_call``,
through :func:`rnnexp.models.nets.autocast_rnn.call_block`), so the masks' gradients reach the
raw parameters and the module itself is never modified (no ``_flat_weights`` surgery, safe for
checkpoints and DDP). The TorchScript cells name their recurrent weights the same way and take
the same path.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.errors import ConfigError

RECURRENT = "weight_hh"  # torch's prefix for U of every layer and direction (weight_hh_l1_reverse ...)


def is_recurrent_weight(name: str) -> bool:
    return name.startswith(RECURRENT)


def check_applies(blocks: Iterable[nn.Module], p: float, cell: str) -> None:
    """``weight_drop > 0`` on a cell without ``weight_hh_*`` parameters would silently do nothing."""
    if p and not any(is_recurrent_weight(name) for block in blocks for name, _ in block.named_parameters()):
        raise ConfigError("weight_drop", p, f"cell={cell} has no recurrent weights named {RECURRENT}_l*; set it to 0")


def dropped_weights(block: nn.Module, p: float, training: bool) -> Optional[Dict[str, Tensor]]:
    """``block``'s parameters with a fresh DropConnect mask on each recurrent weight, or None
    (the block's own parameters) in eval or at ``p == 0``. ``F.dropout`` draws the mask and
    scales the kept weights by ``1 / (1 - p)``, on the weight's device and dtype."""
    if not training or p == 0:
        return None
    return {
        name: F.dropout(param, p, True) if is_recurrent_weight(name) else param
        for name, param in block.named_parameters()
    }
