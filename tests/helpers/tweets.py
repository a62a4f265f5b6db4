"""A small corpus in CS20's ``trump_tweets.txt`` format, written by the tests themselves.

One tweet per line ending in `` _E_``, URLs as ``__HTTP__``, with ``!`` and ``&`` (which
CS20's fixed vocabulary dropped) and one character (``é``) that occurs once.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import List

WORDS = ("great", "America", "jobs", "@nbc", "the", "people", "will", "win", "#MAGA", "Thank you", "fake",
         "news", "&", "big", "win!", "Congress", "tax", "cuts", "today", "2016", "__HTTP__", "USA!", "very")


def make_tweets(count: int = 300, seed: int = 0) -> List[str]:
    rng = random.Random(seed)
    tweets = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 22))]
        tweets.append(" ".join(words) + " _E_")
    tweets[7] = "Caf\u00e9 opening! " + tweets[7]
    return tweets


def write_tweets(data_dir: Path, count: int = 300) -> Path:
    """``data_dir/tweets/trump_tweets.txt``, where ``data=tweets`` looks under ``paths.data_dir``."""
    path = Path(data_dir) / "tweets" / "trump_tweets.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(make_tweets(count)) + "\n", encoding="utf-8")
    return path
