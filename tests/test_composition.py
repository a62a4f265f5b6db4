"""Every composition a user would type trains one batch or refuses in one line.

The full matrix (data x model x cell) and a seeded sample crossing it with the network,
logger, schedule and optimizer keys run in-process (compose, build, fit and test one batch
with ``debug=fdr``); a few run through the CLI to check the exit code and the single
``error:`` line there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import List

import pytest
import yaml

from rnnexp.runtime.cli import describe
from rnnexp.train import run
from tests.helpers import CONF, compose_config, run_cli
from tests.helpers.data import write_all

DATA = {
    "toy_words/i_like_dog": ["data=toy_words", "data.task=i_like_dog"],
    "toy_words/hello": ["data=toy_words", "data.task=hello"],
    "toy_words/hello_batch": ["data=toy_words", "data.task=hello_batch"],
    "toy_words/hihello": ["data=toy_words", "data.task=hihello"],
    "tweets/stream": ["data=tweets", "data.batching=stream"],
    "tweets/tweets": ["data=tweets", "data.batching=tweets"],
    "mnist/row": ["data=mnist", "data.mode=row"],
    "mnist/pixel": ["data=mnist", "data.mode=pixel", "data.batch_size=16"],
    "mnist/permuted": ["data=mnist", "data.mode=pixel", "data.permute=true", "data.batch_size=16"],
    "seq2seq_toy/reverse": ["data=seq2seq_toy", "data.task=reverse", "data.num_train=200", "data.num_val=20", "data.num_test=20"],
}
MODELS = ["classifier", "tagger", "lm", "seq2seq", "one_to_many", "auto"]
CELLS = sorted(p.stem for p in (CONF / "cell").glob("*.yaml"))
# The elementwise cells (docs/cells.md) cross every model once, on data it learns, in both block
# kinds (test_new_cells_and_blocks_train_in_every_model); the full matrix keeps the classic cells.
ELEMENTWISE = ["lru", "mingru", "minlstm"]
MATRIX_CELLS = [c for c in CELLS if c not in ELEMENTWISE]
LEARNED_BY = {"classifier": "mnist/row", "tagger": "toy_words/hello", "lm": "tweets/stream",
              "seq2seq": "seq2seq_toy/reverse", "one_to_many": "mnist/row", "auto": "toy_words/i_like_dog"}
# Which models can learn from which data: label data -> classifier; next-token data -> tagger or lm.
LEARNS = {"classifier": {"i_like_dog", "row", "pixel", "permuted"}}
LEARNS["tagger"] = LEARNS["lm"] = {"hello", "hello_batch", "hihello", "stream", "tweets"}
LEARNS["seq2seq"] = {"reverse"}
LEARNS["one_to_many"] = {"row"}  # writes the 28 rows of an image from its label
LEARNS["auto"] = LEARNS["classifier"] | LEARNS["tagger"] | LEARNS["seq2seq"]
# Models without a recurrent cell: the cell group is dropped, and cell=... is refused.
NOT_RECURRENT = {"transformer_lm"}
LEARNS["transformer_lm"] = LEARNS["lm"]

# Keys crossed in the random sample; some values are refused with some cells or data on purpose.
CROSSED = {
    "model.bidirectional": ["true", "false", "false"],
    "model.encoder": ["auto", "onehot", "embedding", "features"],
    "model.embedding_dim": ["null", "6"],
    "model.hidden_sizes": ["null", "[6,10]"],
    "model.num_layers": ["1", "2"],
    "model.dropout": ["0.0", "0.3"],
    "model.input_dropout": ["0.0", "0.2"],
    "model.variational_dropout": ["true", "false"],
    "model.nonlinearity": ["tanh", "relu", "softsign"],
    "model.learn_initial_state": ["true", "false"],
    "model.pooling": ["last", "mean", "max"],
    "model.weight_drop": ["0.0", "0.4"],
    "model.embedding_dropout": ["0.0", "0.1"],
    "model.ar": ["0.0", "2.0"],
    "model.tar": ["0.0", "1.0"],
    "model.block": ["plain", "plain", "residual"],
    "model.scan": ["auto", "auto", "chunked"],
    "logger": ["csv", "tensorboard", "none", "wandb", "many"],
    "schedule": [p.stem for p in sorted((CONF / "schedule").glob("*.yaml"))],
    "optimizer": [p.stem for p in sorted((CONF / "optimizer").glob("*.yaml"))],
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_all(tmp_path_factory.mktemp("data"))


def _train_or_refuse(overrides: List[str], out: Path, data_dir: Path) -> str:
    """'trained' after checking the run's files, or the one-line error of a refusal."""
    cfg = compose_config([*overrides, "debug=fdr"], out)
    cfg.paths.data_dir = str(data_dir)
    try:
        run(cfg)
    except Exception as exc:  # noqa: BLE001 - a refusal must be a user error, described in one line
        message = describe(exc)
        assert message is not None, f"{overrides}: a bug, not a refusal"
        assert "\n" not in message and message.strip(), message
        assert not (out / "metrics.json").exists()
        return message
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and all(isinstance(v, float) for k, v in metrics.items() if k != "optimized_metric_from")
    ran = yaml.safe_load((out / "config.yaml").read_text())
    requested = dict(o.split("=", 1) for o in overrides if "=" in o)
    recurrent = requested.get("model") not in NOT_RECURRENT
    assert ran["model"].get("cell") == (requested.get("cell", "lstm") if recurrent else None)
    assert ran["model"]["_target_"].startswith("rnnexp.models.tasks.")
    return "trained"


@pytest.mark.parametrize("cell", MATRIX_CELLS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("data", DATA)
def test_every_data_model_cell_trains_or_refuses_in_one_line(tmp_path, data_dir, data, model, cell):
    outcome = _train_or_refuse([*DATA[data], f"model={model}", f"cell={cell}"], tmp_path, data_dir)
    if data.split("/")[1] in LEARNS[model]:
        assert outcome == "trained", outcome
    else:
        assert outcome != "trained" and "is invalid" in outcome, outcome


@pytest.mark.parametrize("cell,block", [(c, b) for c in ELEMENTWISE for b in ("plain", "residual")] + [("lstm", "residual")])
@pytest.mark.parametrize("model", MODELS)
def test_new_cells_and_blocks_train_in_every_model(tmp_path, data_dir, model, cell, block):
    outcome = _train_or_refuse([*DATA[LEARNED_BY[model]], f"model={model}", f"cell={cell}", f"model.block={block}"],
                               tmp_path, data_dir)
    assert outcome == "trained", outcome


@pytest.mark.parametrize("model", sorted(NOT_RECURRENT))
@pytest.mark.parametrize("data", DATA)
def test_models_without_a_cell_train_or_refuse_in_one_line(tmp_path, data_dir, data, model):
    outcome = _train_or_refuse([*DATA[data], f"model={model}"], tmp_path, data_dir)
    if data.split("/")[1] in LEARNS[model]:
        assert outcome == "trained", outcome
    else:
        assert outcome != "trained" and "is invalid" in outcome, outcome
    if outcome == "trained":
        refused = _train_or_refuse([*DATA[data], f"model={model}", "cell=gru"], tmp_path / "gru", data_dir)
        assert refused.startswith("model.cell='gru' is invalid"), refused


SAMPLE = 20


def crossing(index: int) -> List[str]:
    """Sample ``index``: a data set and cell, and about a third of the crossed keys at random values."""
    rng = random.Random(index)
    overrides = [*DATA[rng.choice(sorted(DATA))], f"cell={rng.choice(CELLS)}"]
    return overrides + [f"{key}={rng.choice(values)}" for key, values in sorted(CROSSED.items()) if rng.random() < 0.35]


# What each sample does: trains, or is refused naming this key (the first check it fails). A
# change to the crossed keys or the refusals changes these, deliberately: look at each new outcome.
EXPECTED = {
    0: "trained", 1: "model.embedding_dropout", 2: "model.embedding_dropout", 3: "trained", 4: "model.tar",
    5: "model.weight_drop", 6: "trained", 7: "trained", 8: "model.embedding_dropout", 9: "model.embedding_dropout",
    10: "model.nonlinearity", 11: "trained", 12: "trained", 13: "trained", 14: "model.embedding_dropout",
    15: "trained", 16: "model.embedding_dropout", 17: "model.embedding_dim", 18: "model.embedding_dropout",
    19: "model.encoder",
}


@pytest.mark.parametrize("index", range(SAMPLE))
def test_a_random_crossing_trains_or_refuses_in_one_line(tmp_path, data_dir, index):
    outcome = _train_or_refuse(crossing(index), tmp_path, data_dir)
    assert (outcome if outcome == "trained" else outcome.split("=", 1)[0]) == EXPECTED[index], (crossing(index), outcome)


def test_the_random_crossing_checks_both_outcomes(tmp_path_factory, data_dir):
    """The sample holds compositions that build and compositions that are refused."""
    from rnnexp.train import build

    built = []
    for index in range(SAMPLE):
        cfg = compose_config([*crossing(index), "debug=fdr"], tmp_path_factory.mktemp("c"))
        cfg.paths.data_dir = str(data_dir)
        try:
            build(cfg)
            built.append(True)
        except Exception:  # noqa: BLE001 - refusals; their one-line form is checked above
            built.append(False)
    assert any(built) and not all(built), built


@pytest.mark.parametrize(
    "args,expected",
    [
        (["data=mnist"], 0),
        (["data=tweets", "cell=gru"], 0),
        (["data=toy_words", "data.task=hihello"], 0),
        (["data=mnist", "model.encoder=onehot"], 2),
        (["data=tweets", "model=classifier"], 2),
        (["data=tweets", "model.bidirectional=true"], 2),
        (["data=tweets", "model=transformer_lm"], 0),
        (["data=tweets", "model=transformer_lm", "cell=gru"], 2),
    ],
)
def test_each_data_group_trains_alone_from_the_cli(tmp_path, data_dir, args, expected):
    result = run_cli(*args, "debug=fdr", f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == expected, result.stderr[-2000:]
    if expected == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    else:
        assert (tmp_path / "run" / "metrics.json").exists()


def test_data_groups_bring_their_own_model(tmp_path):
    """model=auto (the default) builds the task the data calls for; config.yaml names the class."""
    from rnnexp.train import build

    data_dir = write_all(tmp_path / "data")
    expected = {"toy_words": "SequenceClassifier", "mnist": "SequenceClassifier", "tweets": "LanguageModel"}
    for data, cls in expected.items():
        cfg = compose_config([f"data={data}"], tmp_path / data)
        cfg.paths.data_dir = str(data_dir)
        _, model, _ = build(cfg)
        assert type(model).__name__ == cls
        assert cfg.model._target_.endswith(cls)
    cfg = compose_config(["data.task=hihello"], tmp_path / "hihello")
    assert type(build(cfg)[1]).__name__ == "LanguageModel"
    mnist = compose_config(["data=mnist"], tmp_path / "m")
    mnist.paths.data_dir = str(data_dir)
    assert build(mnist)[1].net.encoder.kind == "features"
