"""A next-token language model: a :class:`SequenceTagger` that can carry its state across batches.

Lightning 2.x has no ``truncated_bptt_steps``; as in Lightning's ``demos/lstm.py`` the
data keep streams contiguous (batch k+1's row i continues batch k's row i, marked by
``carry_state`` in the batch) and the module keeps the final state of each batch, detached,
as the next batch's initial state. Optimization stays automatic, so
``trainer.gradient_clip_val`` and LR schedules work as for any model. The state is reset
at the start of every train, validation and test epoch: validation never starts from the
training state, and its streams carry their own state from one validation window to the
next, so the whole validation text is read as one continuous text per stream.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch

from rnnexp.models.nets.layer_state import detach_state
from rnnexp.models.tasks.tagger import SequenceTagger

# Written into every checkpoint so rnnexp.generate can tell a language model from other models.
CHECKPOINT_KIND = "rnnexp.language_model"


class LanguageModel(SequenceTagger):
    """Logs ``{stage}/loss`` (nats per character), ``/ppl``, ``/bpt`` and its alias ``/bpc``.

    ``tie_weights`` (a network setting) shares the embedding with the output projection.
    """

    accepts = ("next_token",)

    causal = True  # reads left to right: no bidirectional network

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._states: Dict[str, Optional[List[Any]]] = {}

    def _logits(self, batch, stage: str):
        inputs = batch["inputs"]
        carry = bool(batch.get("carry_state", False))
        state = self._states.get(stage) if carry else None
        if state is not None and _batch_size(state) != inputs.shape[0]:
            state = None
        logits, final = self._run(inputs, batch.get("lengths"), state, stage)
        if carry:
            self._states[stage] = detach_state(final)
        return logits

    def _log_extra(self, stage: str, mean: torch.Tensor) -> None:
        super()._log_extra(stage, mean)
        # Characters are the tokens here: bits per character is bits per token under its usual name.
        self.log(f"{stage}/bpc", mean / math.log(2), prog_bar=stage == "val")

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._states["train"] = None

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._states["val"] = None

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._states["test"] = None

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rnnexp_kind"] = CHECKPOINT_KIND
        # Which class to load it with (rnnexp.generate): the short name of TASKS.
        from rnnexp.models.tasks import TASKS  # the registry imports this module

        checkpoint["rnnexp_task"] = next((name for name, cls in TASKS.items() if cls is type(self)), "lm")


def _batch_size(state: List[Any]) -> int:
    first = state[0][0] if isinstance(state[0], tuple) else state[0]
    return int(first.shape[1])
