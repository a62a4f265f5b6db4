"""The tools' key=value arguments, parsed one way (rnnexp.runtime.arguments)."""

from dataclasses import dataclass
from typing import Optional

import pytest

from rnnexp.errors import UserError
from rnnexp.runtime.arguments import parse_arguments


@dataclass
class Settings:
    ckpt_path: Optional[str] = None
    length: int = 200
    temperature: float = 0.8


def test_values_are_typed_and_defaults_kept():
    settings, texts, passed = parse_arguments(["length=5", "temperature=1"], Settings)
    assert settings == Settings(length=5, temperature=1.0) and texts == {} and passed == []


def test_verbatim_keys_stay_text_and_keep_their_order():
    settings, texts, _ = parse_arguments(["prime=1", "length=3", "prime=a=b"], Settings, verbatim=("prime",))
    assert texts == {"prime": ["1", "a=b"]} and settings.length == 3


def test_passthrough_prefixes_come_back_untouched():
    _, _, passed = parse_arguments(["data.path=x.txt", "paths.data_dir=/d"], Settings, passthrough=("data", "paths"))
    assert passed == ["data.path=x.txt", "paths.data_dir=/d"]


@pytest.mark.parametrize("argv, message", [
    (["checkpoint=x"], "unknown argument 'checkpoint=x'; use key=value with keys ckpt_path, length, temperature"),
    (["length"], "unknown argument 'length'"),
    (["data=x"], "unknown argument 'data=x'"),  # a prefix alone is no passthrough key
    (["length=abc"], "check length=abc"),
])
def test_bad_arguments_are_one_user_error(argv, message):
    with pytest.raises(UserError) as info:
        parse_arguments(argv, Settings, passthrough=("data",))
    assert message in str(info.value) and "\n" not in str(info.value)
