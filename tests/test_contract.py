"""The structure the code promises: the batch contract's layering, one place per network setting,
one table per cell kind, checkpoints of the earlier format, and the epoch sums."""

from __future__ import annotations

import ast
import importlib
import re
import inspect
import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from omegaconf import OmegaConf

from rnnexp.data import ToyWordsDataModule
from rnnexp.models import LanguageModel, RecurrentBackbone, SequenceClassifier, SequenceModel, SequenceTagger
from rnnexp.models.nets.cells import CELLS, CellKind
from tests.helpers import CONF, ROOT
from tests.helpers.compose import compose_config

FIXTURES = Path(__file__).parent / "fixtures"
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


def _imports(package: str):
    """(module file, imported module) for every ``rnnexp`` import under ``rnnexp/<package>``."""
    for path in (ROOT / "rnnexp" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnexp"):
                yield path, node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("rnnexp"):
                        yield path, alias.name


@pytest.mark.parametrize("package,forbidden", [("data", "rnnexp.models"), ("models", "rnnexp.data")])
def test_data_and_models_meet_only_in_the_batch_contract(package, forbidden):
    crossing = [(str(p.relative_to(ROOT)), m) for p, m in _imports(package) if m.startswith(forbidden)]
    assert not crossing
    assert any(m == "rnnexp.batch" for _, m in _imports(package))


def test_nets_never_import_the_lightning_modules():
    assert not [(p, m) for p, m in _imports("models/nets") if m.startswith("rnnexp.models.tasks")]
    for path in (ROOT / "rnnexp" / "models" / "nets").rglob("*.py"):
        assert "pytorch_lightning" not in path.read_text(), path


def test_network_settings_are_written_once():
    """The model YAMLs add their target, their own keys and other defaults to the shared base; the base's keys are exactly the
    arguments of SequenceModel and RecurrentBackbone (plus the optimizer specs)."""
    base = yaml.safe_load((CONF / "model" / "base" / "network.yaml").read_text())
    for path in (CONF / "model").glob("*.yaml"):
        own = yaml.safe_load(path.read_text())
        repeated = {key for key in set(own) & set(base) if own[key] == base[key]}
        assert not repeated, f"{path.name} repeats {repeated}"  # a different default is an override
        assert "cell" not in own
    arguments = set(inspect.signature(SequenceModel).parameters) | set(inspect.signature(RecurrentBackbone).parameters)
    arguments -= {"self", "backbone", "input_size", "num_classes", "many_to_one", "input_kind"}
    assert set(base) - {"_recursive_", "optimizer", "scheduler"} == arguments - {"cell"}


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def _preset_repeats(path: Path) -> list:
    """Keys under ``data``, ``trainer`` and the top level that a preset sets to the value its own
    defaults (the groups it picks, the preset it extends) already give."""
    own = yaml.safe_load(path.read_text())
    overrides, parent = [], None
    for entry in own.pop("defaults", []):
        if isinstance(entry, str):
            parent = parent if entry == "_self_" else entry
        else:
            ((key, value),) = entry.items()
            overrides.append(f"{key.removeprefix('override ').lstrip('/')}={value}")
    base = OmegaConf.to_container(compose_config(([f"experiment={parent}"] if parent else []) + overrides), resolve=False)
    found = []
    for group in ("data", "trainer", None):
        node = own.get(group, {}) if group else {k: v for k, v in own.items() if not isinstance(v, dict)}
        for key, value in _leaves(node):
            where = f"{group}.{key}" if group else key
            here = base
            for part in where.split("."):
                here = here.get(part, KeyError) if isinstance(here, dict) else KeyError
            if here == value:
                found.append(where)
    return found


@pytest.mark.parametrize("path", sorted((CONF / "experiment").glob("*.yaml")), ids=lambda p: p.stem)
def test_presets_write_only_what_differs_from_their_defaults(path):
    """A preset's data, trainer and top-level keys are overrides: a value equal to its groups' (or
    its parent preset's) is a second copy that would silently keep an old value when the group changes."""
    assert not _preset_repeats(path), f"{path.name} repeats its defaults' values"


def _code_defaults(target: str) -> dict:
    """The defaults of the callable a ``_target_`` names (a class's ``__init__``)."""
    module, name = target.rsplit(".", 1)
    thing = getattr(importlib.import_module(module), name)
    params = inspect.signature(thing).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _same(yaml_value, code_value) -> bool:
    return yaml_value == (list(code_value) if isinstance(code_value, tuple) else code_value)


def _rnnexp_targets(node, where=""):
    """(where, node) for every mapping under ``node`` whose ``_target_`` is rnnexp's."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str) and target.startswith("rnnexp."):
            yield where, node
        for key, value in node.items():
            yield from _rnnexp_targets(value, f"{where}{key}.")


def test_code_defaults_equal_the_yaml_that_sets_them():
    """One rule: a key the YAML sets has, in the code it is passed to, no default or the same one
    (hand-built objects behave as composed ones); the tools' process settings are train.yaml's."""
    differ = []
    for path in sorted(CONF.rglob("*.yaml")):
        for where, node in _rnnexp_targets(yaml.safe_load(path.read_text()) or {}):
            defaults = _code_defaults(node["_target_"])
            for key, value in node.items():
                if key in defaults and not (isinstance(value, str) and "${" in value) and not _same(value, defaults[key]):
                    differ.append(f"{path.relative_to(CONF)}: {where}{key} = {value!r}, code {defaults[key]!r}")
    base = yaml.safe_load((CONF / "model" / "base" / "network.yaml").read_text())
    for cls in (SequenceModel, RecurrentBackbone):
        for key, param in inspect.signature(cls).parameters.items():
            if key in base and param.default is not inspect.Parameter.empty and not _same(base[key], param.default):
                differ.append(f"model/base/network.yaml: {key} = {base[key]!r}, {cls.__name__} {param.default!r}")
    train = yaml.safe_load((CONF / "train.yaml").read_text())
    for tool in ("rnnexp.evaluate.EvaluateConfig", "rnnexp.generate.GenerateConfig", "rnnexp.translate.TranslateConfig"):
        for key, default in _code_defaults(tool).items():
            if key in ("threads", "allocator") and default != train[key]:
                differ.append(f"{tool}.{key} = {default!r}, train.yaml {train[key]!r}")
    assert not differ, differ


def test_the_cell_table_drives_the_backbone():
    """Every cell of the table has a YAML in conf/cell; a new entry is picked up with no other change."""
    assert {p.stem for p in (CONF / "cell").glob("*.yaml")} >= set(CELLS)
    source = inspect.getsource(RecurrentBackbone)
    for name in CELLS:  # no branch on a cell's name
        assert not re.search(rf'(==|!=|in)\s*\(?"{name}"', source), name
    CELLS["twin_lstm"] = CellKind(torch.nn.LSTM, state_parts=2, gates=4, forget_gate=1)
    try:
        net = RecurrentBackbone(3, cell="twin_lstm", hidden_size=4, learn_initial_state=True, forget_bias=1.0)
        out, state = net(torch.randn(2, 5, 3), torch.tensor([5, 2]))
        assert out.shape == (2, 5, 4) and isinstance(state[0], tuple)
        assert torch.equal(net.blocks[0].bias_ih_l0[4:8], torch.ones(4))
    finally:
        del CELLS["twin_lstm"]


@pytest.mark.parametrize("cls,name,rows", [(SequenceClassifier, "classifier", 2), (LanguageModel, "lm", 4)])
def test_checkpoints_of_the_earlier_format_still_load(cls, name, rows):
    """Fixtures written by the code before the network settings became one group (weights_only path)."""
    model = cls.load_from_checkpoint(FIXTURES / f"{name}_v1.ckpt").eval()
    expected = torch.tensor(json.loads((FIXTURES / "v1_outputs.json").read_text())[name])
    with torch.no_grad():
        if name == "classifier":
            got = model(torch.tensor([[1, 2, 3], [2, 3, 1]]), torch.tensor([3, 2]))[0]
        else:
            got = model(torch.tensor([[1, 2, 3, 4]]))[0][0, :, :5]
    assert got.shape[0] == rows and torch.allclose(got, expected, atol=1e-6)


def test_accuracy_counts_tokens_with_their_weights(tmp_path):
    """A step of weight 0 counts in neither the loss nor the accuracy (it used to give acc = 3.0)."""
    model = SequenceTagger(input_size=4, num_classes=4, hidden_size=4, optimizer=ADAM)
    batch = {"inputs": torch.tensor([[1, 2, 3]]), "lengths": torch.tensor([3]),
             "weights": torch.tensor([[1.0, 0.0, 0.0]])}
    with torch.no_grad():
        logits, _ = model(batch["inputs"], batch["lengths"])
    batch["targets"] = logits.argmax(-1)  # three correct tokens
    model._step(batch, "val")
    loss_sum, weight, correct = model.sums.pop("val").tolist()
    assert weight == 1.0 and correct == 1.0
    batch["targets"] = batch["targets"].clone()
    batch["targets"][0, 0] = (batch["targets"][0, 0] + 1) % 4  # the weighted token wrong, the others right
    model._step(batch, "val")
    assert model.sums.pop("val").tolist()[2] == 0.0


class _CrashAt(pl.Callback):
    """Writes a checkpoint after training step ``step`` and stops there, as a crash would."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def _fit(tmp_path, ckpt_path=None, callbacks=()):
    dm = ToyWordsDataModule("i_like_dog", batch_size=1, repeat=4, seed=3)
    model = SequenceClassifier(**dm.spec().model_kwargs(), cell="gru", hidden_size=8, optimizer=ADAM)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, callbacks=list(callbacks),
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         limit_val_batches=0)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return trainer.callback_metrics


def test_training_sums_survive_a_mid_epoch_resume(tmp_path):
    """train/loss and train/acc of an epoch resumed in its middle equal an uninterrupted epoch's."""
    pl.seed_everything(0)
    whole = _fit(tmp_path / "a")
    pl.seed_everything(0)
    _fit(tmp_path / "b", callbacks=[_CrashAt(17, tmp_path / "mid.ckpt")])  # 12 steps per epoch: 5 into epoch 1
    assert torch.load(tmp_path / "mid.ckpt", weights_only=True)["rnnexp_epoch_sums"]["epoch"] == 1
    resumed = _fit(tmp_path / "c", ckpt_path=tmp_path / "mid.ckpt")
    for key in ("train/loss", "train/acc"):
        assert math.isclose(float(resumed[key]), float(whole[key]), rel_tol=1e-6), key


def test_samples_are_drawn_on_the_generator_device():
    from rnnexp.sampling import draw

    probs = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    generator = torch.Generator(device="cpu").manual_seed(0)
    chosen = draw(probs, generator)
    assert chosen.tolist() == [[1], [2]] and chosen.device == probs.device
    # The same seed gives the same draws (what makes samples independent of the model's device).
    soft = torch.full((4, 5), 0.2)
    assert torch.equal(draw(soft, torch.Generator().manual_seed(1)), draw(soft, torch.Generator().manual_seed(1)))


# Sub-package -> the rnnexp packages and top-level modules it may import (besides itself); each
# sub-package's docstring says the same in words.
ALLOWED_IMPORTS = {
    "data": {"batch", "errors"},
    "models": {"batch", "errors", "sampling", "compat"},
    "reporting": {"errors"},
    "runtime": {"errors", "reporting", "compat"},
    "callbacks": {"data", "models", "errors", "runtime", "sampling", "compat"},
    "compat": set(),
}
ENTRY_POINTS = {"train", "evaluate", "generate", "translate", "report"}


@pytest.mark.parametrize("package", sorted(ALLOWED_IMPORTS))
def test_the_import_graph_flows_one_way(package):
    """No sub-package imports an entry point or a package above it; sub-packages say so in their docstring."""
    crossing = []
    for path, module in _imports(package):
        head = module.split(".")[1] if "." in module else ""
        if head and head != package and head not in ALLOWED_IMPORTS[package]:
            crossing.append((str(path.relative_to(ROOT)), module))
    assert not crossing
    assert len((ROOT / "rnnexp" / package / "__init__.py").read_text().split('"""')[1]) > 100


def test_the_top_level_holds_the_entry_points_and_the_contracts():
    """Beside its sub-packages, rnnexp/ holds the commands, the batch contract, the errors and sampling."""
    top = {p.stem for p in (ROOT / "rnnexp").glob("*.py")} - {"__init__"}
    assert top == ENTRY_POINTS | {"batch", "errors", "sampling"}


def test_the_product_reaches_the_sweeper_through_one_function():
    """Only the pruning callback imports the sweeper plugin, and only its job contract."""
    found = sorted({(str(p.relative_to(ROOT)), m) for p, m in _plugin_imports()})
    assert found == [("rnnexp/callbacks/optuna_pruning.py", "hydra_plugins.rnnexp_optuna_sweeper.job")]


def _plugin_imports():
    for path in (ROOT / "rnnexp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hydra_plugins"):
                yield path, node.module


def test_every_network_module_has_one_entry_point():
    """One ``forward`` per module (s4's ``forward(x, state) -> (x, state)``): no ``run`` beside it."""
    second = []
    for path in (ROOT / "rnnexp" / "models").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
                if "forward" in names and "run" in names:
                    second.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not second
