"""DataModules and what they share: toy words, tweets, MNIST, generated seq2seq tasks; the
vocabulary, samplers (buckets, streams), resumable loaders and the collate function that builds
the batch contract of :mod:`rnnexp.batch`.

May import :mod:`rnnexp.batch` and :mod:`rnnexp.errors` only: data never knows the models."""

from rnnexp.data.collate import collate_sequences
from rnnexp.data.toy_words import TASKS, ToyWordsDataModule
from rnnexp.data.vocab import Vocab

__all__ = ["TASKS", "ToyWordsDataModule", "Vocab", "collate_sequences"]
