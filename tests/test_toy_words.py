import pytest
import torch

from rnnexp.data import TASKS, ToyWordsDataModule
from rnnexp.errors import ConfigError
from rnnexp.models import IGNORE_INDEX


def test_hello_is_next_character_at_every_step():
    dm = ToyWordsDataModule("hello")
    batch = next(iter(dm.val_dataloader()))
    decode = lambda ids: dm.vocab.decode(i for i in ids if i != IGNORE_INDEX)  # noqa: E731
    assert decode(batch["inputs"][0].tolist()) == "hell"
    assert decode(batch["targets"][0].tolist()) == "ello"
    assert dm.spec().model_kwargs()["input_size"] == 5  # <pad>, e, h, l, o


def test_hello_batch_has_the_three_sequences():
    dm = ToyWordsDataModule("hello_batch", batch_size=3)
    batch = next(iter(dm.val_dataloader()))
    assert [dm.vocab.decode(row) for row in batch["inputs"].tolist()] == ["hell", "eoll", "llee"]


def test_i_like_dog_predicts_the_last_word():
    dm = ToyWordsDataModule("i_like_dog")
    batch = next(iter(dm.val_dataloader()))
    assert [dm.vocab.decode(r, " ") for r in batch["inputs"].tolist()] == ["i like", "i love", "i hate"]
    assert [dm.vocab.tokens[t] for t in batch["targets"].tolist()] == ["dog", "coffee", "milk"]
    assert dm.target_kind == "label"


def test_variable_lengths_are_padded_with_true_lengths():
    dm = ToyWordsDataModule("i_like_dog", sequences=["i like dog", "i really really love coffee"])
    batch = next(iter(dm.val_dataloader()))
    assert batch["lengths"].tolist() == [2, 4]
    assert batch["lengths"].dtype == torch.int64
    assert batch["inputs"][0, 2:].tolist() == [0, 0]


def test_repeat_multiplies_the_training_epoch():
    dm = ToyWordsDataModule("i_like_dog", batch_size=3, repeat=5)
    assert len(dm.train_dataloader()) == 5


@pytest.mark.parametrize(
    "kwargs,key",
    [({"task": "nope"}, "task"), ({"batch_size": 0}, "batch_size"), ({"sequences": ["dog"]}, "sequences")],
)
def test_bad_values(kwargs, key):
    with pytest.raises(ConfigError) as info:
        ToyWordsDataModule(**kwargs)
    assert info.value.key == key


def test_every_task_builds():
    for task in TASKS:
        assert len(ToyWordsDataModule(task).samples) >= 1
