"""Sample text from a trained character language model.

    python -m rnnexp.generate ckpt_path=outputs/cs20_tweets/runs/<run>/checkpoints/last.ckpt \\
        prime="I " temperature=0.8 length=200 num_samples=3 top_k=null seed=0

Arguments are ``key=value`` like the training app's overrides. Sample ``i`` is drawn with seed
``seed + i`` (its label says which), so any one of them can be drawn again alone. The vocabulary comes from the
checkpoint. Prime characters outside it map to the unknown symbol when the vocabulary has one
(``data=tweets`` vocabularies do, and a warning names them); otherwise they are an error.
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
from rnnexp.data.vocab import Vocab
from rnnexp.errors import ConfigError, UserError, check_positive_int
from rnnexp.models.tasks.language_model import CHECKPOINT_KIND, LanguageModel
from rnnexp.sampling import check_sampling, generate


@dataclass
class GenerateConfig:
    ckpt_path: Optional[str] = None
    prime: str = "I "
    temperature: float = 0.8
    length: int = 200
    num_samples: int = 3
    top_k: Optional[int] = None
    seed: int = 0


def parse(argv: Sequence[str]) -> GenerateConfig:
    # Prime is text: kept verbatim rather than parsed as YAML ("prime=1" stays the string "1").
    out, texts, _ = parse_arguments(argv, GenerateConfig, verbatim=("prime",))
    if texts["prime"]:
        out.prime = texts["prime"][-1]
    return out


def load_language_model(path: str) -> LanguageModel:
    if not path:
        raise ConfigError("ckpt_path", path, "give the .ckpt file of a run, e.g. ckpt_path=outputs/.../last.ckpt")
    file = Path(path)
    if not file.is_file():
        raise ConfigError("ckpt_path", path, "no such checkpoint file; look in the run's checkpoints/ folder")
    checkpoint = load_checkpoint(file)
    if checkpoint.get("rnnexp_kind") != CHECKPOINT_KIND or not (checkpoint.get("hyper_parameters") or {}).get("vocab"):
        raise UserError(f"{path} is not a language-model checkpoint; train one with model=lm (e.g. experiment=cs20_tweets)")
    # By the class that saved it (recurrent LM or transformer); checkpoints from before the name was saved are LMs.
    from rnnexp.models.tasks import TASKS

    name = checkpoint.get("rnnexp_task", "lm")
    cls = TASKS.get(name)
    if cls is None or not issubclass(cls, LanguageModel):
        raise UserError(f"{path} was saved by model={name}, which this version of rnnexp cannot generate from "
                        f"(language models: {', '.join(n for n, c in TASKS.items() if issubclass(c, LanguageModel))})")
    return cls.load_from_checkpoint(file, map_location="cpu")


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    cfg = parse(sys.argv[1:] if argv is None else argv)
    check_positive_int("length", cfg.length)
    check_positive_int("num_samples", cfg.num_samples)
    check_sampling(cfg.temperature, cfg.top_k)
    model = load_language_model(cfg.ckpt_path)
    vocab = Vocab(model.hparams.vocab)
    missing = vocab.missing(cfg.prime)
    if missing and vocab.unk_index is not None:
        print(f"warning: prime characters not in the vocabulary map to <unk>: {', '.join(map(repr, missing))}",
              file=sys.stderr)
    texts = []
    for i in range(cfg.num_samples):
        # Sample i draws from its own generator seeded seed + i: the label's seed=<n> with
        # num_samples=1 gives that sample again, whatever the other samples were.
        seed = cfg.seed + i
        generator = torch.Generator().manual_seed(seed)
        (text,) = generate(model.net, vocab, [cfg.prime], cfg.length, cfg.temperature, cfg.top_k, generator)
        print(f"--- sample {i} (temperature={cfg.temperature}, top_k={cfg.top_k}, seed={seed})")
        print(text)
        texts.append(text)
    return texts


if __name__ == "__main__":
    run_app(main)
