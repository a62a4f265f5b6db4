"""Encoder-decoder (many-to-many, "read the whole input, then write the output") on two backbones.

The encoder is a :class:`RecurrentBackbone` of any depth and direction over the source; its
final states (each row's last valid step) initialise the decoder, another backbone
(unidirectional), through a :class:`Bridge`. The decoder reads ``BOS`` and the previous
output token; with ``attention`` its output ``h_t`` queries the encoder outputs and
``tanh(W_c [context; h_t])`` is read out (Luong's global attention; the ``additive`` score is
Bahdanau's). Under full teacher forcing the decoder runs in one fused call over the whole
target; otherwise one step at a time (scheduled sampling, greedy and beam search).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor, nn

from rnnexp.errors import ConfigError, check_choice
from rnnexp.models.nets.attention import ATTENTIONS, Attention, source_mask
from rnnexp.models.nets.backbone import RecurrentBackbone
from rnnexp.models.nets.layer_state import LayerState
from rnnexp.models.nets.beam import beam_search, greedy_search
from rnnexp.models.nets.encoders import InputEncoder

BRIDGES = ("auto", "copy", "linear", "zero")


class Bridge(nn.Module):
    """Encoder final states -> decoder initial states.

    ``copy`` passes them on (the encoder is unidirectional with the decoder's depth and widths);
    ``linear`` maps all of them (every layer and direction, concatenated) through one
    ``tanh(W s + b)`` per state part (h, and c for an LSTM) to every decoder layer; ``auto`` copies
    when it can and maps otherwise; ``zero`` starts the decoder from zeros (no bridge).
    """

    def __init__(self, kind: str, state_parts: int, encoder_sizes: List[int], directions: int,
                 decoder_size: int, decoder_layers: int) -> None:
        super().__init__()
        check_choice("bridge", kind, BRIDGES)
        can_copy = directions == 1 and encoder_sizes == [decoder_size] * decoder_layers
        if kind == "copy" and not can_copy:
            raise ConfigError("bridge", kind, f"the encoder ({len(encoder_sizes)} layers of {encoder_sizes}, "
                              f"{directions} directions) differs from the decoder ({decoder_layers} x {decoder_size}); "
                              "use bridge=linear or auto")
        self.kind = "copy" if kind == "auto" and can_copy else ("linear" if kind == "auto" else kind)
        self.parts, self.layers, self.size = state_parts, decoder_layers, decoder_size
        if self.kind == "linear":
            width = directions * sum(encoder_sizes)
            self.maps = nn.ModuleList(nn.Linear(width, decoder_layers * decoder_size) for _ in range(state_parts))

    def forward(self, final: List[LayerState]) -> Optional[List[LayerState]]:
        if self.kind == "zero":
            return None
        if self.kind == "copy":
            return list(final)
        outs = []
        for p, linear in enumerate(self.maps):
            tensors = [s[p] if isinstance(s, tuple) else s for s in final]  # [D, B, H] each
            flat = torch.cat([t.transpose(0, 1).reshape(t.shape[1], -1) for t in tensors], -1)
            outs.append(torch.tanh(linear(flat)).view(flat.shape[0], self.layers, self.size).transpose(0, 1))
        layers = [[o[i : i + 1].contiguous() for o in outs] for i in range(self.layers)]
        return [tuple(parts) if self.parts > 1 else parts[0] for parts in layers]


class Seq2SeqNet(nn.Module):
    """``forward(inputs, lengths, target_inputs, target_lengths, teacher_forcing) -> (logits [B, U, V], weights)``.

    ``weights`` [B, U, S] are the attention weights (None without attention). Source and target
    share one vocabulary of ``vocab_size`` tokens and one input encoder (``encoder``,
    ``embedding_dim``). ``decoder_hidden_size`` / ``decoder_layers`` default to the encoder's last
    width and depth. Every other keyword is the backbones' (:class:`RecurrentBackbone`).
    """

    def __init__(
        self,
        vocab_size: int,
        bos: int,
        eos: int,
        attention: str = "general",
        bridge: str = "auto",
        decoder_hidden_size: Optional[int] = None,
        decoder_layers: Optional[int] = None,
        encoder: str = "auto",
        embedding_dim: Optional[int] = None,
        head_dropout: float = 0.0,
        input_kind: Optional[str] = "tokens",
        **backbone: Any,
    ) -> None:
        super().__init__()
        check_choice("attention", attention, ATTENTIONS)
        self.bos, self.eos = bos, eos
        self.embed = InputEncoder(encoder, vocab_size, embedding_dim, input_kind)
        self.encoder = RecurrentBackbone(self.embed.output_size, **backbone)
        decoder_size = decoder_hidden_size or self.encoder.hidden_sizes[-1]
        layers = decoder_layers or self.encoder.num_layers
        decoder_kwargs = {k: v for k, v in backbone.items() if k not in ("hidden_sizes", "learn_initial_state")}
        decoder_kwargs.update(hidden_size=decoder_size, num_layers=layers, bidirectional=False)
        self.decoder = RecurrentBackbone(self.embed.output_size, **decoder_kwargs)
        # State widths, not output widths: the LRU carries 2 x state_size reals per layer.
        self.bridge = Bridge(bridge, self.encoder.kind.state_parts, self.encoder.state_sizes,
                             self.encoder.num_directions, self.decoder.state_sizes[0], layers)
        self.attention = None
        if attention != "none":
            self.attention = Attention(attention, decoder_size, self.encoder.output_size)
            self.combine = nn.Linear(self.encoder.output_size + decoder_size, decoder_size)
        self.dropout = nn.Dropout(head_dropout)
        self.proj = nn.Linear(decoder_size, vocab_size)

    # -- the parts ---------------------------------------------------------------------------
    def encode(self, inputs: Tensor, lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor, Optional[List[LayerState]]]:
        """``(memory [B, S, D*H], mask [B, S], decoder initial state)``."""
        if lengths is None:
            lengths = torch.full((inputs.shape[0],), inputs.shape[1], dtype=torch.long)
        memory, final = self.encoder(self.embed(inputs), lengths)
        return memory, source_mask(lengths, inputs.shape[1], memory.device), self.bridge(final)

    def readout(self, out: Tensor, memory: Tensor, mask: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        weights = None
        if self.attention is not None:
            context, weights = self.attention(out, memory, mask)
            out = torch.tanh(self.combine(torch.cat([context, out], -1)))
        return self.proj(self.dropout(out)), weights

    def step(self, tokens: Tensor, state: Any) -> Tuple[Tensor, Any, Optional[Tensor]]:
        """One decoder step for ``tokens`` [N]; ``state`` is ``(decoder state, memory, mask)``."""
        decoder_state, memory, mask = state
        out, decoder_state = self.decoder(self.embed(tokens[:, None]), None, decoder_state)
        logits, weights = self.readout(out, memory, mask)
        return logits[:, 0], (decoder_state, memory, mask), None if weights is None else weights[:, 0]

    @staticmethod
    def reorder(state: Any, index: Tensor) -> Any:
        """Rows ``index`` of a step state (beam search)."""
        decoder_state, memory, mask = state
        if decoder_state is not None:
            decoder_state = [tuple(t.index_select(1, index) for t in s) if isinstance(s, tuple)
                             else s.index_select(1, index) for s in decoder_state]
        return decoder_state, memory.index_select(0, index), mask.index_select(0, index)

    # -- training ----------------------------------------------------------------------------
    def forward(self, inputs: Tensor, lengths: Optional[Tensor], target_inputs: Tensor,
                target_lengths: Optional[Tensor] = None, teacher_forcing: float = 1.0) -> Tuple[Tensor, Optional[Tensor]]:
        memory, mask, state = self.encode(inputs, lengths)
        if teacher_forcing >= 1.0:
            out, _ = self.decoder(self.embed(target_inputs), target_lengths, state)
            return self.readout(out, memory, mask)
        # Scheduled sampling (Bengio et al. 2015): each row feeds the true previous token with
        # probability teacher_forcing, else its own prediction.
        step_state, tokens = (state, memory, mask), target_inputs[:, 0]
        logits, weights = [], []
        for t in range(target_inputs.shape[1]):
            if t > 0:
                own = logits[-1].argmax(-1)
                keep = torch.rand(own.shape, device=own.device) < teacher_forcing
                tokens = torch.where(keep, target_inputs[:, t], own)
            step_logits, step_state, w = self.step(tokens, step_state)
            logits.append(step_logits)
            weights.append(w)
        return torch.stack(logits, 1), None if self.attention is None else torch.stack(weights, 1)

    # -- decoding ----------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, inputs: Tensor, lengths: Optional[Tensor], max_length: int, beam_size: int = 1,
               length_penalty: float = 1.0) -> Tuple[Tensor, Tensor]:
        """``(tokens [B, L] ending in EOS unless cut at max_length, PAD_INDEX after; lengths [B])``."""
        memory, mask, state = self.encode(inputs, lengths)
        batch, device = inputs.shape[0], memory.device

        def step(tokens, s):
            logits, s, _ = self.step(tokens, s)
            return torch.log_softmax(logits.float(), -1), s

        if beam_size == 1:
            return greedy_search(step, (state, memory, mask), batch, self.bos, self.eos, max_length, device)
        tokens, out_lengths, _ = beam_search(step, self.reorder, (state, memory, mask), batch, self.bos, self.eos,
                                             beam_size, max_length, length_penalty, device)
        return tokens, out_lengths

    @torch.no_grad()
    def attention_weights(self, inputs: Tensor, lengths: Optional[Tensor], target_inputs: Tensor) -> Optional[Tensor]:
        """[B, U, S] attention over the source while reading ``target_inputs`` (for a plot)."""
        return self(inputs, lengths, target_inputs)[1]
