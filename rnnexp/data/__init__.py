from rnnexp.data.collate import collate_sequences
from rnnexp.data.toy_words import TASKS, ToyWordsDataModule
from rnnexp.data.vocab import Vocab

__all__ = ["TASKS", "ToyWordsDataModule", "Vocab", "collate_sequences"]
