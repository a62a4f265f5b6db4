"""Initialisations of the recurrent weights (``model.init``) and TF's ``forget_bias`` for the
classic cells (rnn, lstm, gru, jordan): torch's uniform default, orthogonal (Saxe, McClelland and
Ganguli 2014) or identity with zero biases (IRNN: Le, Jaitly and Hinton 2015), one [H, H] block
per gate for LSTM/GRU. The elementwise cells have no recurrent matrix and refuse these."""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

INITS = ("default", "orthogonal", "identity")


def initialise_recurrent_weights(blocks: Iterable[nn.Module], forget_gate: int, init: str,
                                 forget_bias: Optional[float]) -> None:
    """In place on every ``weight_hh*`` and ``bias*`` of torch-layout ``blocks``; ``forget_gate`` is
    the index of the forget gate's block in the gate order (LSTM: 1)."""
    for block in blocks:
        hidden = block.hidden_size
        for name, param in block.named_parameters():
            with torch.no_grad():
                if init != "default" and name.startswith("weight_hh"):
                    for gate in param.split(hidden):
                        if init == "orthogonal":
                            nn.init.orthogonal_(gate)
                        else:
                            gate.copy_(torch.eye(hidden))
                if name.startswith("bias"):
                    if init == "identity":
                        param.zero_()
                    if forget_bias is not None:
                        # torch adds bias_ih and bias_hh; TF's forget_bias is their sum.
                        block_of_forget = param[forget_gate * hidden : (forget_gate + 1) * hidden]
                        block_of_forget.fill_(forget_bias if name.startswith("bias_ih") else 0.0)
