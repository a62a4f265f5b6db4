"""The LightningModules, one per task, and the registry that maps ``model=<name>`` to them."""

from typing import Any, Dict, Type

from rnnexp.errors import ConfigError
from rnnexp.models.tasks.base import SequenceTask
from rnnexp.models.tasks.classifier import SequenceClassifier
from rnnexp.models.tasks.language_model import LanguageModel
from rnnexp.models.tasks.one_to_many import OneToMany
from rnnexp.models.tasks.seq2seq import Seq2Seq
from rnnexp.models.tasks.tagger import SequenceTagger
from rnnexp.models.tasks.transformer_lm import TransformerLM

# The short names of conf/model/*.yaml.
TASKS: Dict[str, Type[SequenceTask]] = {
    "classifier": SequenceClassifier,
    "tagger": SequenceTagger,
    "lm": LanguageModel,
    "seq2seq": Seq2Seq,
    "one_to_many": OneToMany,  # learns from labels too, but is never the default: model=one_to_many
    "transformer_lm": TransformerLM,  # the non-recurrent baseline for next-token data: model=transformer_lm
}
# model=auto: the task each kind of target calls for (rnnexp.batch.TARGET_KINDS).
DEFAULT_TASK = {"label": "classifier", "step": "tagger", "next_token": "lm", "sequence": "seq2seq"}


def auto(target_kind: Any = None, **kwargs: Any) -> SequenceTask:
    """``model=auto``: the data's own task (:data:`DEFAULT_TASK`), built from the same settings."""
    if target_kind not in DEFAULT_TASK:
        raise ConfigError("target_kind", target_kind, f"model=auto needs the data's target kind, one of {', '.join(DEFAULT_TASK)}")
    return TASKS[DEFAULT_TASK[target_kind]](target_kind=target_kind, **kwargs)


__all__ = [
    "DEFAULT_TASK", "TASKS", "LanguageModel", "OneToMany", "SequenceTask", "Seq2Seq", "SequenceClassifier", "SequenceTagger", "TransformerLM", "auto",
]
