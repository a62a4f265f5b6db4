"""Translate sources with a trained encoder-decoder (``model=seq2seq``).

    python -m rnnexp.translate ckpt_path=outputs/seq2seq_dates/runs/<run>/checkpoints/last.ckpt \\
        text="3 march 2019" text="Mar 3, 2019" beam_size=5 plot=attention.png

Each ``text=`` is one source (kept verbatim, not parsed as YAML); without any, sources are
read from stdin, one per line. ``beam_size`` (1: greedy; default: the checkpoint's),
``length_penalty`` and ``max_length`` override the checkpoint's decoding settings.
``plot=<file.png>`` draws the attention weights of every source, one panel each, into that file
(models with attention), and says where on stderr (stdout keeps one translation per line).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from rnnexp.runtime.checkpoints import load_checkpoint
from rnnexp.runtime.arguments import parse_arguments
from rnnexp.runtime.cli import run_app
from rnnexp.data.collate import collate_sequences
from rnnexp.data.vocab import Vocab
from rnnexp.errors import ConfigError, UserError, check_positive_int
from rnnexp.models.tasks.seq2seq import Seq2Seq


@dataclass
class TranslateConfig:
    ckpt_path: Optional[str] = None
    beam_size: Optional[int] = None
    length_penalty: Optional[float] = None
    max_length: Optional[int] = None
    plot: Optional[str] = None


def parse(argv: Sequence[str]):
    cfg, texts, _ = parse_arguments(argv, TranslateConfig, verbatim=("text",))
    return cfg, texts["text"]


def load_seq2seq(path: Optional[str]) -> Seq2Seq:
    if not path or not Path(path).is_file():
        raise ConfigError("ckpt_path", path, "give the .ckpt file of a model=seq2seq run (its checkpoints/ folder)")
    hparams = load_checkpoint(Path(path)).get("hyper_parameters") or {}
    if hparams.get("target_kind") != "sequence":
        raise UserError(f"{path} is not an encoder-decoder checkpoint; train one with model=seq2seq "
                        "(e.g. experiment=seq2seq_dates)")
    return Seq2Seq.load_from_checkpoint(path, map_location="cpu").eval()


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    cfg, texts = parse(sys.argv[1:] if argv is None else argv)
    model = load_seq2seq(cfg.ckpt_path)
    for key in ("beam_size", "length_penalty", "max_length"):
        if getattr(cfg, key) is not None:
            model.hparams[key] = getattr(cfg, key)
    check_positive_int("beam_size", model.hparams.beam_size)
    check_positive_int("max_length", model.hparams.max_length)
    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    vocab = Vocab(model.hparams.vocab)
    for text in texts:
        if not text or vocab.missing(text):
            raise ConfigError("text", text, f"every source needs characters of the vocabulary; not in it: "
                              f"{''.join(vocab.missing(text)) or '(empty source)'}")
    batch = collate_sequences([{"inputs": vocab.encode(list(t)), "targets": torch.tensor(0)} for t in texts])
    outputs = model.translate(batch["inputs"], batch["lengths"])
    for source, output in zip(texts, outputs):
        print(f"{source}\t{output}")
    if cfg.plot:
        path = plot_attention(model, texts, outputs, cfg.plot)
        print(f"attention of {len(texts)} source{'s' * (len(texts) > 1)} plotted in {path}", file=sys.stderr)
    return outputs


def attention_of(model: Seq2Seq, source: str, output: str) -> torch.Tensor:
    """The attention of each output token and the end token (rows) over the source characters (columns)."""
    vocab = Vocab(model.hparams.vocab)
    inputs = vocab.encode(list(source))[None]
    target_inputs = torch.tensor([[model.net.bos, *vocab.ids(list(output))]])
    return model.net.attention_weights(inputs, None, target_inputs)[0]  # [U, S]


def plot_attention(model: Seq2Seq, sources: Sequence[str], outputs: Sequence[str], path: str) -> Path:
    """Heatmaps of the attention of each output token (rows) over the source characters (columns),
    one panel per source, stacked in one PNG; returns the file's absolute path."""
    if model.net.attention is None:
        raise ConfigError("plot", path, "this model has no attention (attention=none); drop plot=")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vocab = Vocab(model.hparams.vocab)
    weights = [attention_of(model, s, o) for s, o in zip(sources, outputs)]
    width = 0.35 * max(len(s) for s in sources) + 2
    heights = [0.35 * w.shape[0] + 1.5 for w in weights]
    fig, axes = plt.subplots(len(sources), 1, figsize=(width, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, source, output, w in zip(axes[:, 0], sources, outputs, weights):
        ax.imshow(w.numpy(), cmap="Greys", vmin=0, vmax=1)
        ax.set_xticks(range(len(source)), list(source))
        ax.set_yticks(range(w.shape[0]), [*output, vocab.tokens[model.net.eos]])
        ax.set_xlabel("source")
        ax.set_ylabel("output")
    fig.tight_layout()
    target = Path(path).resolve()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


if __name__ == "__main__":
    run_app(main)
