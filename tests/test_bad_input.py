"""Bad input, as a user meets it: ``python train.py`` / ``python -m rnnexp.generate`` (``.evaluate``).

The cases marked ``subprocess`` (a few of each kind: composing, a value, a checkpoint, a data
file, each tool) run as a real subprocess; the others run the same entry point in this process
(``tests.helpers.run_in_process``: the same code path and output without ~6 s of imports each).

Every case must end with exit code 2 and one ``error:`` line naming the problem (and the fix),
print no traceback, leave an earlier run's outputs exactly as they were and leave no run
directory of its own (Hydra's is removed when the run is refused). None of them trains: they fail while composing, validating, reading data or checking a checkpoint.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from tests.helpers import compose_config, run_cli, run_in_process
from tests.helpers.mnist import write_mnist
from tests.helpers.tweets import write_tweets

ENV = {"WANDB_MODE": "disabled"}


@dataclass
class Case:
    id: str
    args: Callable[[Path], List[str]]  # given the test's folder, the command-line arguments
    message: str                        # a part of the error line
    module: Optional[str] = None        # python -m <module> instead of train.py
    subprocess: bool = False            # a real ``python ...`` process instead of in-process


def _fake_checkpoint(path: Path, overrides: List[str], global_step: int = 40) -> Path:
    """A checkpoint with the model of ``python train.py <overrides>`` (weights as initialised)."""
    cfg = compose_config(overrides, path.parent)
    model = instantiate(cfg.model, **instantiate(cfg.data).spec().model_kwargs())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "epoch": 1,
                "global_step": global_step, "pytorch-lightning_version": pl.__version__}, path)
    return path


def _run_dir(tmp: Path, name: str = "crashed", finished: bool = False) -> Path:
    """A run directory as a default-config run leaves it when killed (or, ``finished``, when done)."""
    run = tmp / "outputs" / "train" / "runs" / name
    _fake_checkpoint(run / "checkpoints" / "resume.ckpt", [])
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- cell=lstm\n")
    (run / "config.yaml").write_text("model:\n  cell: lstm\n")
    (run / "train.log").write_text("epoch 0\n")
    if finished:
        (run / "metrics.json").write_text('{"val/loss": 0.5}')
    return run


def _mnist(tmp: Path, corrupt: Callable[[Path], None] = lambda folder: None) -> List[str]:
    folder = write_mnist(tmp / "data", train_size=200, test_size=20)
    corrupt(folder)
    return ["data=mnist", f"paths.data_dir={tmp / 'data'}", "data.download=false", "data.val_size=50"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def _wrong_magic(path: Path) -> None:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2:4] = b"\x08\x01"  # a 1-d IDX file where the images (3-d) should be
    path.write_bytes(gzip.compress(bytes(raw)))


def _tweets(tmp: Path, content: Optional[bytes] = None) -> List[str]:
    path = write_tweets(tmp / "data")
    if content is not None:
        path.write_bytes(content)
    return ["data=tweets", "model=lm", "callbacks=lm", f"paths.data_dir={tmp / 'data'}", "data.download=false"]


def _language_model(tmp: Path) -> Path:
    from rnnexp.data.vocab import Vocab
    from rnnexp.models.tasks.language_model import CHECKPOINT_KIND, LanguageModel

    vocab = Vocab.build(["hello"])  # no unknown symbol: unseen prime characters are an error
    model = LanguageModel(input_size=len(vocab), num_classes=len(vocab), vocab=list(vocab.tokens), hidden_size=4)
    path = tmp / "lm.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "rnnexp_kind": CHECKPOINT_KIND,
                "pytorch-lightning_version": pl.__version__, "global_step": 0, "epoch": 0}, path)
    return path


def _file(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


CASES = [
    # -- composing the config (no model is built) ----------------------------------------------
    Case("unknown cell", lambda t: ["cell=nope"], "cell=nope is not a known choice; valid choices for 'cell': gru, jordan, lru, lstm, mingru, minlstm, rnn", subprocess=True),
    Case("unknown trainer", lambda t: ["trainer=tpu"], "trainer=tpu is not a known choice; valid choices for 'trainer': cpu,"),
    Case("misspelt key", lambda t: ["model.hidden_sizz=3"], "model.hidden_sizz is not a config key; check the spelling"),
    Case("+ on an existing key", lambda t: ["+seed=3"], "seed already exists; override it without the leading +"),
    Case("unparsable override", lambda t: ["model.hidden_size=[1,"], "cannot parse override 'model.hidden_size=[1,'"),
    # -- values out of range -------------------------------------------------------------------
    Case("dropout above 1", lambda t: ["model.dropout=1.5"], "model.dropout=1.5 is invalid: must be a number in [0, 1)"),
    Case("batch size 0", lambda t: ["data.batch_size=0"], "data.batch_size=0 is invalid: must be an integer >= 1"),
    Case("negative learning rate", lambda t: ["optimizer.lr=-1"], "optimizer: Invalid learning rate: -1"),
    # trainer.* numbers, checked before Lightning sees them (max_epochs=abc was a 61-line traceback)
    Case("epochs not a number", lambda t: ["trainer.max_epochs=abc"],
         "trainer.max_epochs='abc' is invalid: must be an integer >= -1 (-1: no limit) or null", subprocess=True),
    Case("negative epochs", lambda t: ["trainer.max_epochs=-5"], "trainer.max_epochs=-5 is invalid: must be an integer >= -1"),
    Case("steps not a number", lambda t: ["trainer.max_steps=ten"], "trainer.max_steps='ten' is invalid: must be an integer >= -1"),
    Case("limit above the whole split", lambda t: ["+trainer.limit_val_batches=1.5"],
         "trainer.limit_val_batches=1.5 is invalid: must be an integer >= 0 (batches) or a fraction in [0, 1]"),
    Case("zero devices", lambda t: ["trainer.devices=0"], "trainer.devices=0 is invalid: must be auto, an integer >= 1"),
    # (every trainer.* rule, in-process: tests/test_short_runs.py)
    Case("next-token data, classifier model", lambda t: ["data.task=hello", "model=classifier"],
         "model='classifier' is invalid: the data gives the next token at every step: use model=lm"),
    Case("float features, one-hot encoder", lambda t: _mnist(t) + ["model.encoder=onehot"],
         "model.encoder='onehot' is invalid: the data feeds float features (28 per step), which onehot cannot read"),
    Case("zero threads", lambda t: ["threads=0"], "threads=0 is invalid: must be auto or an integer >= 1"),
    Case("unknown allocator", lambda t: ["allocator=jemalloc"], "allocator='jemalloc' is invalid: choose one of cached, system"),
    Case("unwritable output directory", lambda t: [f"paths.log_dir={_file(t, 'a_file', b'x')}/outputs"],
         "Not a directory; choose a writable folder with paths.log_dir="),
    Case("run directory under a file", lambda t: [f"hydra.run.dir={_file(t, 'a_file', b'x')}/run"],
         "a_file/run: Not a directory; choose a writable folder with paths.log_dir=<dir> (or hydra.run.dir=<dir>)", subprocess=True),
    Case("run directory that cannot exist", lambda t: ["hydra.run.dir=/proc/rnnexp/run"],
         "cannot write /proc/rnnexp: No such file or directory; choose a writable folder"),
    Case("list without brackets", lambda t: ["model.hidden_sizes=128,256"],
         "model.hidden_sizes=128,256 is ambiguous: for a list write model.hidden_sizes=[128,256]"),
    # -- checkpoints and resume ----------------------------------------------------------------
    Case("ckpt_path to nowhere", lambda t: [f"ckpt_path={t}/no/such.ckpt"], "is invalid: no such checkpoint file"),
    Case("truncated checkpoint", lambda t: [f"ckpt_path={_file(t, 'bad.ckpt', b'PK' + bytes(300))}"],
         "cannot read checkpoint"),
    Case("checkpoint of another cell", lambda t: ["cell=gru", f"ckpt_path={_fake_checkpoint(t / 'lstm.ckpt', [])}"],
         "does not fit this config: model.cell is 'lstm' there, 'gru' here"),
    Case("checkpoint of another vocabulary",
         lambda t: ["data.sequences=[i like tea,i love coffee,i hate milk]", f"ckpt_path={_fake_checkpoint(t / 'v.ckpt', [])}"],
         "the vocabulary differs"),
    Case("resume to nowhere", lambda t: [f"resume={t}/outputs/train/runs/nope"], "no such run directory"),
    Case("resume without checkpoints", lambda t: [f"resume={t}/outputs/train/runs/earlier"], "no checkpoint in"),
    Case("resume of a finished run", lambda t: [f"resume={_run_dir(t, finished=True)}"], "that run already finished"),
    Case("resume of the checkpoints folder", lambda t: [f"resume={_run_dir(t)}/checkpoints"],
         "is the run's checkpoints folder; give the run directory itself: resume="),
    Case("resume of a checkpoint file", lambda t: [f"resume={_run_dir(t)}/checkpoints/resume.ckpt"],
         "is a checkpoint file; resume= takes its run directory"),
    Case("resume with another cell", lambda t: ["cell=gru", f"resume={_run_dir(t)}"],
         "does not fit this config: model.cell is 'lstm' there, 'gru' here", subprocess=True),
    Case("multirun with ddp", lambda t: ["-m", "trainer=ddp"], "a multirun cannot re-launch DDP ranks; use trainer.strategy=ddp_spawn"),
    # -- data files ----------------------------------------------------------------------------
    Case("mnist truncated gzip", lambda t: _mnist(t, lambda f: _truncate(f / "train-images-idx3-ubyte.gz")),
         "is not a complete gzip file", subprocess=True),
    Case("mnist wrong IDX magic", lambda t: _mnist(t, lambda f: _wrong_magic(f / "train-images-idx3-ubyte.gz")),
         "has IDX magic number 2049, expected 2051"),
    Case("tweets missing offline", lambda t: ["data=tweets", "model=lm", f"paths.data_dir={t}/empty", "data.download=false"],
         "not found and data.download=false; put trump_tweets.txt in"),
    Case("tweets empty file", lambda t: _tweets(t, b"\n \n"), "is empty; expected UTF-8 text"),
    Case("tweets binary file", lambda t: _tweets(t, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "is a binary file (NUL byte"),
    Case("tweets not UTF-8", lambda t: _tweets(t, "great jobs\nCaf\u00e9 opening\n".encode("latin-1")),
         "is not UTF-8: line 2, byte 3", subprocess=True),
    Case("batch larger than the data set", lambda t: _tweets(t) + ["data.batch_size=100000"],
         "cannot fill 100000 streams; lower data.batch_size"),
    # -- python -m rnnexp.generate ---------------------------------------------------------------
    Case("generate: prime outside the vocabulary",
         lambda t: [f"ckpt_path={_language_model(t)}", "prime=hex"], "characters the model's vocabulary lacks: 'x'",
         module="rnnexp.generate", subprocess=True),
    # -- python -m rnnexp.evaluate ---------------------------------------------------------------
    Case("evaluate: a checkpoint outside its run directory",
         lambda t: [f"ckpt_path={_language_model(t)}", "dynamic=true"], "config.yaml not found: the data settings come "
         "from the run's saved config", module="rnnexp.evaluate"),
    Case("evaluate: unknown method", lambda t: [f"ckpt_path={_language_model(t)}", "dynamic=true", "method=adam"],
         "method='adam' is invalid: choose one of sgd, rms", module="rnnexp.evaluate", subprocess=True),
]


def _snapshot(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).digest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id + (" (subprocess)" if c.subprocess else "") for c in CASES])
def test_bad_input_ends_in_one_line_exit_2_and_touches_no_earlier_run(tmp_path, case):
    runs = tmp_path / "outputs" / "train" / "runs"
    earlier = runs / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text('{"test/acc": 1.0}')
    args = case.args(tmp_path)
    before = {p: _snapshot(p) for p in runs.iterdir()}
    if case.module is None:
        args.append("trainer.enable_progress_bar=false")
        if not any(a.startswith("paths.log_dir=") for a in args):
            args.append(f"paths.log_dir={tmp_path / 'outputs'}")
    result = (run_cli if case.subprocess else run_in_process)(*args, cwd=tmp_path, env=ENV, module=case.module)

    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]], result.stderr[-3000:]  # exactly one, and it is the last word
    if "-m" not in args:  # Hydra's "Error executing job with overrides" only names a multirun's job
        assert not [line for line in lines if line.startswith("Error executing job")], result.stderr[-3000:]
    assert case.message in errors[0], errors[0]
    for run, files in before.items():
        # Not a byte changed or added, also by a refused resume: no .hydra/resumed_*/, no train.log lines.
        assert _snapshot(run) == files, f"{run.name} changed"
    # Nothing ran, so no run directory is left: Hydra's is removed when the run is refused.
    assert sorted(runs.iterdir()) == sorted(before), sorted(p.name for p in runs.iterdir())
    assert not (runs / "nope").exists()  # a resume to nowhere creates nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_gpu_trainer_without_a_gpu_says_use_the_cpu_trainer(tmp_path):
    result = run_in_process("trainer=gpu", "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path}/outputs",
                            cwd=tmp_path, env=ENV)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: trainer: this machine has no usable GPU; use trainer=cpu (or trainer.accelerator=cpu)")


# Nothing listens on port 9 (discard) of this machine: the connection is refused at once, as offline.
UNREACHABLE = "http://127.0.0.1:9"


@pytest.mark.parametrize("data", [
    ["data=mnist", f"data.mirrors=[{UNREACHABLE}/]"],
    ["data=tweets", "model=lm", f"data.url={UNREACHABLE}/trump_tweets.txt"],
], ids=["mnist", "tweets"])
def test_a_failed_download_names_paths_data_dir_and_leaves_no_folder(tmp_path, data):
    result = run_in_process(*data, f"paths.data_dir={tmp_path}/data", f"paths.log_dir={tmp_path}/outputs", cwd=tmp_path, env=ENV)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "could not be downloaded" in error or "download from" in error, error
    assert "or set paths.data_dir=<dir> (or the environment variable RNNEXP_DATA_DIR) to a folder whose " in error
    assert not (tmp_path / "data").exists()  # no empty data/mnist/ left behind
