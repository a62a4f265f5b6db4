"""The networks a task is built on, by short name (a task's ``network`` attribute): ``recurrent``
(:class:`SequenceModel`: encoder -> :class:`RecurrentBackbone` -> head) and ``transformer``
(:class:`TransformerLMNet`). Each entry builds the network from the data's sizes and the network
settings and says whether the network reports training penalties (AR/TAR) through
``run(inputs, lengths, state) -> (logits, final_state, penalties)``. The tasks stay free of any
network's assumptions; the encoder-decoder and one-to-many tasks build their own networks."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from torch import nn

from rnnexp.errors import ConfigError
from rnnexp.models.nets.sequence_model import SequenceModel
from rnnexp.models.nets.transformer import TransformerLMNet

PENALTY_KEYS = ("ar", "tar", "embedding_dropout")  # read by SequenceModel only
TRANSFORMER_KEYS = sorted(set(inspect.signature(TransformerLMNet).parameters) - {"vocab_size", "num_classes"})


def without_penalties(network: Dict[str, Any], model: str) -> Dict[str, Any]:
    """``network`` without the keys only :class:`SequenceModel` reads (AR, TAR, embedding row
    dropout), for the tasks built on other networks; a value set there is refused in one line."""
    for key in PENALTY_KEYS:
        if network.get(key):
            raise ConfigError(key, network[key], f"is not available for model={model}; set it to 0")
    return {k: v for k, v in network.items() if k not in PENALTY_KEYS}


def build_recurrent(input_size: int, num_classes: int, input_kind: Optional[str], network: Dict[str, Any],
                    many_to_one: bool, causal: bool) -> nn.Module:
    if causal and network.get("bidirectional"):
        raise ConfigError("model.bidirectional", True, "a language model reads left to right; set it to false")
    return SequenceModel(input_size, num_classes, many_to_one=many_to_one, input_kind=input_kind, **network)


def build_transformer(input_size: int, num_classes: int, input_kind: Optional[str], network: Dict[str, Any],
                      many_to_one: bool, causal: bool) -> nn.Module:
    if input_kind == "features":
        raise ConfigError("model", "transformer_lm", "reads token ids, and the data feeds float features")
    unknown = sorted(set(network) - set(TRANSFORMER_KEYS))
    if unknown:
        key = unknown[0]
        fix = "drop cell=... (the transformer has no recurrent cell)" if key == "cell" else "drop it"
        raise ConfigError(key, network[key], f"a recurrent-model setting that model=transformer_lm does not take; "
                          f"{fix} (its keys: {', '.join(TRANSFORMER_KEYS)})")
    return TransformerLMNet(input_size, num_classes, **network)


@dataclass(frozen=True)
class NetworkKind:
    build: Callable[..., nn.Module]  # (input_size, num_classes, input_kind, network, many_to_one, causal)
    penalties: bool  # the network's ``run`` returns the training penalties


NETWORKS: Dict[str, NetworkKind] = {
    "recurrent": NetworkKind(build_recurrent, penalties=True),
    "transformer": NetworkKind(build_transformer, penalties=False),
}
