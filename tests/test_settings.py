from pathlib import Path

import pytest

from smsbridge.errors import ConfigError
from smsbridge.settings import Secret, Settings


def test_defaults_build_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database == Path("smsbridge.db")
    assert settings.port == 8080
    assert settings.cht_url == ""
    assert settings.carriers == ()


def test_credentials_ride_in_the_cht_url_and_are_masked() -> None:
    settings = Settings.from_env({"SMSBRIDGE_CHT_URL": "http://gw:s%40cret@cht.local:5988/"})
    assert settings.cht_base_url == "http://cht.local:5988"
    assert settings.cht_credentials == ("gw", "s@cret")
    shown = dict(settings.described())
    assert "s%40cret" not in shown["SMSBRIDGE_CHT_URL"]
    assert "****" in shown["SMSBRIDGE_CHT_URL"]


def test_secret_does_not_show_in_repr() -> None:
    assert "hunter2" not in repr(Secret("hunter2"))
    assert Secret("hunter2").reveal() == "hunter2"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SMSBRIDGE_PORT": "x", "SMSBRIDGE_RETRY_BASE": "-1"})
    lines = caught.value.detail.splitlines()
    assert any("SMSBRIDGE_PORT" in line for line in lines)
    assert any("SMSBRIDGE_RETRY_BASE" in line for line in lines)


def test_unknown_carrier_is_a_problem() -> None:
    with pytest.raises(ConfigError, match="unknown carrier 'pigeon'"):
        Settings.from_env({"SMSBRIDGE_CARRIERS": "pigeon"})


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SMSBRIDGE_PORT": "x"}, "SMSBRIDGE_PORT: expected a whole number, got 'x'"),
        ({"SMSBRIDGE_MAX_ATTEMPTS": "2.5"}, "SMSBRIDGE_MAX_ATTEMPTS: expected a whole number"),
        ({"SMSBRIDGE_RETRY_BASE": "soon"}, "expected a number (seconds), got 'soon'"),
        ({"SMSBRIDGE_CHT_TIMEOUT": "nan"}, "SMSBRIDGE_CHT_TIMEOUT: expected a number (seconds)"),
        ({"SMSBRIDGE_LEASE_SECONDS": "inf"}, "expected a number (seconds), got 'inf'"),
    ],
)
def test_numbers_that_do_not_read_are_explained_in_plain_words(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert says in caught.value.detail
    assert "invalid literal" not in caught.value.detail
    assert "could not convert" not in caught.value.detail


def test_require_cht_refuses_an_empty_cht_url() -> None:
    assert Settings.from_env({}).require_cht is False  # the sandbox stays the default
    with pytest.raises(ConfigError, match="SMSBRIDGE_REQUIRE_CHT"):
        Settings.from_env({"SMSBRIDGE_REQUIRE_CHT": "true"})
    settings = Settings.from_env(
        {"SMSBRIDGE_REQUIRE_CHT": "true", "SMSBRIDGE_CHT_URL": "https://u:p@cht.example.org"}
    )
    assert settings.require_cht is True


def test_an_unknown_log_level_is_a_problem_of_the_settings() -> None:
    # logging would raise on it later, at start-up, with a traceback instead of a problem line
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SMSBRIDGE_LOG_LEVEL": "loud"})
    assert caught.value.detail == (
        "SMSBRIDGE_LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, got 'loud'"
    )
    assert Settings.from_env({"SMSBRIDGE_LOG_LEVEL": " warning "}).log_level == "WARNING"
