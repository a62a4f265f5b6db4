"""Many-to-many (1), the encoder-decoder: read the whole source, then write the target.

Trained on the tagger's masked sequence loss over the target tokens (teacher forcing, or
scheduled sampling with ``teacher_forcing < 1``), so ``{stage}/loss``, ``{stage}/acc``
(teacher-forced next-token accuracy), ``{stage}/ppl`` and ``{stage}/bpt`` come from the
epoch sums of :class:`SequenceTagger`. Validation and test also decode every source (greedy,
or beam search with ``beam_size > 1``) and score what comes out: ``{stage}/exact``
(whole output equal to the target), ``{stage}/token_acc`` (target positions, EOS included,
decoded right) and ``{stage}/bleu`` (torchmetrics' BLEU-4 over characters). A few decoded
examples per validation go to the console and to loggers that show text.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.text import BLEUScore

from rnnexp.compat.lightning import attached_trainer
from rnnexp.batch import BOS, EOS, IGNORE_INDEX, PAD_INDEX
from rnnexp.errors import ConfigError, check_number, check_positive_int
from rnnexp.models.nets.seq2seq import Seq2SeqNet
from rnnexp.models.tasks.networks import without_penalties
from rnnexp.models.tasks.tagger import SequenceTagger

log = logging.getLogger(__name__)
EVAL_STAGES = ("val", "test")


def decoded_scores(tokens: Tensor, targets: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(exact [B] bool, right [B], valid [B])`` of decoded ``tokens`` [B, L] (EOS included,
    ``PAD_INDEX`` after it) against ``targets`` [B, U] (EOS included, ``IGNORE_INDEX`` after it).

    A row is exact when every target position, EOS included, is decoded right and nothing but
    padding follows; ``right`` counts the target positions decoded right (a token after the
    target's EOS is no target position: it only spoils ``exact``), ``valid`` the target positions.
    """
    width = max(tokens.shape[1], targets.shape[1])
    pad = lambda t, v: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=v)  # noqa: E731
    decoded, wanted = pad(tokens, PAD_INDEX), pad(targets, IGNORE_INDEX)
    valid = wanted != IGNORE_INDEX
    right = (decoded == wanted) & valid
    exact = (right | ~valid).all(1) & (decoded.masked_fill(valid, PAD_INDEX) == PAD_INDEX).all(1)
    return exact, right.sum(1), valid.sum(1)


class Seq2Seq(SequenceTagger):
    """``attention``: none | dot | general | additive; ``bridge``: auto | copy | linear | zero;
    ``teacher_forcing``: the probability of feeding the true previous token in training (1.0:
    always; below it, scheduled sampling), moving linearly to ``teacher_forcing_end`` over
    ``trainer.max_epochs`` when that is set; ``beam_size`` (1: greedy), ``length_penalty`` and
    ``max_length`` (output tokens, EOS included) for decoding; ``num_examples`` decoded examples
    logged per validation. The network keys are :class:`Seq2SeqNet`'s and the backbones'."""

    accepts = ("sequence",)

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        attention: str = "general",
        bridge: str = "auto",
        decoder_hidden_size: Optional[int] = None,
        decoder_layers: Optional[int] = None,
        teacher_forcing: float = 1.0,
        teacher_forcing_end: Optional[float] = None,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        max_length: int = 40,
        num_examples: int = 3,
        **kwargs: Any,
    ) -> None:
        for key, value in (("teacher_forcing", teacher_forcing), ("teacher_forcing_end", teacher_forcing_end)):
            if value is not None:
                check_number(key, value, 0, 1, high_open=False, hint=" (1: always feed the true token)")
        check_positive_int("beam_size", beam_size)
        check_positive_int("max_length", max_length)
        check_number("length_penalty", length_penalty, 0, hint=" (0: raw log-probability)")
        self._check_targets(kwargs.get("target_kind"))  # the wrong data is named before its vocabulary
        vocab = kwargs.get("vocab")
        if vocab is None or BOS not in vocab or EOS not in vocab:
            raise ConfigError("vocab", None if vocab is None else len(vocab),
                              f"model=seq2seq needs a vocabulary with {BOS} and {EOS} (data=seq2seq_toy)")
        # kwargs: SequenceTask's own arguments (optimizer, vocab, ...) and the backbones' settings.
        super().__init__(input_size, num_classes, attention=attention, bridge=bridge,
                         decoder_hidden_size=decoder_hidden_size, decoder_layers=decoder_layers, **kwargs)
        self.decoded = nn.ModuleDict({
            stage: nn.ModuleDict({"exact": MeanMetric(), "token_acc": MeanMetric(), "bleu": BLEUScore(smooth=True)})
            for stage in EVAL_STAGES
        })
        self._examples: List[List[str]] = []

    def build_net(self, input_size, num_classes, input_kind, network) -> nn.Module:
        if num_classes != input_size:
            raise ConfigError("num_classes", num_classes, f"source and target share one vocabulary of {input_size}")
        vocab = self.hparams.vocab
        network = {k: v for k, v in without_penalties(network, "seq2seq").items() if k not in ("pooling", "tie_weights")}
        if self.hparams.get("tie_weights"):
            raise ConfigError("tie_weights", True, "is not available for model=seq2seq; set it to false")
        return Seq2SeqNet(input_size, vocab.index(BOS), vocab.index(EOS), input_kind=input_kind, **network)

    # -- training ----------------------------------------------------------------------------
    def teacher_forcing_ratio(self) -> float:
        start, end = self.hparams.teacher_forcing, self.hparams.teacher_forcing_end
        if end is None or attached_trainer(self) is None or not self.trainer.max_epochs or self.trainer.max_epochs < 2:
            return start
        return start + (end - start) * min(1.0, self.current_epoch / (self.trainer.max_epochs - 1))

    def _logits(self, batch: Dict[str, Any], stage: str) -> Tensor:
        ratio = self.teacher_forcing_ratio() if stage == "train" else 1.0
        logits, _ = self.net(batch["inputs"], batch.get("lengths"), batch["target_inputs"],
                             batch.get("target_lengths"), ratio)
        return logits

    def forward(self, inputs: Tensor, lengths: Optional[Tensor] = None, target_inputs: Optional[Tensor] = None,
                target_lengths: Optional[Tensor] = None):
        return self.net(inputs, lengths, target_inputs, target_lengths)

    def diagnostic_loss(self, batch: Dict[str, Any]) -> Tensor:
        total, weight, _ = self._sums_of(self._logits(batch, "diagnostic"), batch)
        return total / weight.clamp_min(1e-12)

    # -- decoding and its metrics ------------------------------------------------------------
    def translate(self, inputs: Tensor, lengths: Optional[Tensor] = None, beam_size: Optional[int] = None) -> List[str]:
        """Decoded text of each source row (EOS and padding dropped)."""
        beam = beam_size or self.hparams.beam_size
        tokens, out_lengths = self.net.decode(inputs, lengths, self.hparams.max_length, beam, self.hparams.length_penalty)
        return [self._text(row[:n]) for row, n in zip(tokens.tolist(), out_lengths.tolist())]

    def _text(self, ids: List[int]) -> str:
        vocab = self.hparams.vocab
        return "".join(vocab[i] for i in ids if i not in (PAD_INDEX, IGNORE_INDEX) and vocab[i] not in (BOS, EOS))

    def _score_decoded(self, batch: Dict[str, Any], stage: str, batch_idx: int) -> None:
        tokens, _ = self.net.decode(batch["inputs"], batch.get("lengths"), self.hparams.max_length,
                                    self.hparams.beam_size, self.hparams.length_penalty)
        targets = batch["targets"]
        exact, right, valid = decoded_scores(tokens, targets)
        metrics = self.decoded[stage]
        metrics["exact"].update(exact.float())
        metrics["token_acc"].update(right / valid, valid)
        outputs = [self._text(row) for row in tokens.tolist()]
        references = [self._text(row) for row in targets.tolist()]
        metrics["bleu"].update([" ".join(o) for o in outputs], [[" ".join(r)] for r in references])
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "exact",
                     batch_size=len(outputs))
        if stage == "val" and batch_idx == 0:
            sources = [self._text(row) for row in batch["inputs"].tolist()]
            self._examples = [list(x) for x in zip(sources, references, outputs)][: self.hparams.num_examples]

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self._score_decoded(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        self._score_decoded(batch, "test", batch_idx)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking or not self._examples or not self.trainer.is_global_zero:
            return
        rows = [[self.current_epoch, *example] for example in self._examples]
        log.info("Decoded after epoch %d:\n%s", self.current_epoch,
                 "\n".join(f"\t{s!r} -> {o!r} (target {r!r})" for _, s, r, o in rows))
        for logger in self.trainer.loggers:
            if hasattr(logger, "log_text"):  # wandb: a table
                logger.log_text(key="decoded", columns=["epoch", "source", "target", "output"], data=rows,
                                step=self.global_step)
            elif hasattr(getattr(logger, "experiment", None), "add_text"):  # TensorBoard
                text = "\n\n".join(f"    {s} -> {o} (target {r})" for _, s, r, o in rows)
                logger.experiment.add_text("decoded", text, self.global_step)
