"""The transformer baseline as a language-model task: the recurrent LM's data, loss and metrics.

A :class:`LanguageModel` whose network is :class:`TransformerLMNet`, so ``{stage}/loss``,
``/ppl``, ``/bpt``, ``/bpc`` and ``/acc`` are computed exactly as for the recurrent models and
one report compares both. Training reads each window of ``data.num_steps`` characters on its
own (the usual causal-LM objective; the context is the window). Validation and test carry the
last ``context - 1`` characters from window to window, as the recurrent LM carries its state,
and score each new window after them (a sliding window, ``eval_stride`` new characters per
pass; :class:`TransformerLMNet`), so both kinds of model are scored with context across
windows; so is dynamic evaluation, which carries the same state.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Optional

from torch import nn

from rnnexp.errors import ConfigError
from rnnexp.models.nets.transformer import TransformerLMNet
from rnnexp.models.tasks.language_model import LanguageModel

NETWORK_KEYS = sorted(set(inspect.signature(TransformerLMNet).parameters) - {"vocab_size", "num_classes"})


class TransformerLM(LanguageModel):
    """``model=transformer_lm``: network keys are :class:`TransformerLMNet`'s (``d_model``,
    ``num_heads``, ``num_layers``, ``ff_size``, ``dropout``, ``attention_dropout``, ``positions``, ``context``,
    ``tie_weights``, ``eval_stride``); a recurrent setting (``cell``, ``hidden_size``, ...) is refused in one line.
    AdamW's weight decay applies to the weight matrices only (not to norms, biases, embeddings
    or positions), as in GPT-2 and minGPT: :meth:`TransformerLMNet.no_weight_decay`."""

    def build_net(self, input_size: int, num_classes: int, input_kind: Optional[str], network: Dict[str, Any]) -> nn.Module:
        if input_kind == "features":
            raise ConfigError("model", "transformer_lm", "reads token ids, and the data feeds float features")
        unknown = sorted(set(network) - set(NETWORK_KEYS))
        if unknown:
            key = unknown[0]
            fix = "drop cell=... (the transformer has no recurrent cell)" if key == "cell" else "drop it"
            raise ConfigError(key, network[key], f"a recurrent-model setting that model=transformer_lm does not take; "
                              f"{fix} (its keys: {', '.join(NETWORK_KEYS)})")
        return TransformerLMNet(input_size, num_classes, **network)

    def _logits(self, batch, stage: str):
        if stage in ("val", "test"):  # the carried history: context across windows
            return super()._logits(batch, stage)
        logits, _ = self(batch["inputs"], batch.get("lengths"))  # training: the window is the context
        return logits
