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

from rnnexp.models.tasks.language_model import LanguageModel


class TransformerLM(LanguageModel):
    """``model=transformer_lm``: network keys are :class:`~rnnexp.models.nets.transformer.TransformerLMNet`'s (``d_model``,
    ``num_heads``, ``num_layers``, ``ff_size``, ``dropout``, ``attention_dropout``, ``positions``, ``context``,
    ``tie_weights``, ``eval_stride``); a recurrent setting (``cell``, ``hidden_size``, ...) is refused in one line.
    AdamW's weight decay applies to the weight matrices only (not to norms, biases, embeddings
    or positions), as in GPT-2 and minGPT: :meth:`TransformerLMNet.no_weight_decay`."""

    network = "transformer"

    def _logits(self, batch, stage: str):
        if stage in ("val", "test"):  # the carried history: context across windows
            return super()._logits(batch, stage)
        logits, _ = self(batch["inputs"], batch.get("lengths"))  # training: the window is the context
        return logits
