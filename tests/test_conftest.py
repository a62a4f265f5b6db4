"""The test helpers' own behaviour where a mistake would hide failures."""

import pytest

from tests.helpers import REQUIRE_DATA_ENV, require_shared_data


def test_a_missing_data_set_skips_and_fails_when_the_data_is_required(tmp_path, monkeypatch):
    missing = tmp_path / "no_such_data"
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=REQUIRE_DATA_ENV):
        require_shared_data(missing)
    monkeypatch.setenv(REQUIRE_DATA_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no_such_data is missing"):
        require_shared_data(missing)
    require_shared_data(tmp_path)  # present: nothing happens

