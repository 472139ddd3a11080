import ast
import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import smsbridge.settings
from smsbridge.carriers import CARRIERS, load_settings
from smsbridge.errors import ConfigError
from smsbridge.settings import (
    SETTINGS,
    Problem,
    Secret,
    Setting,
    Settings,
    SettingsError,
    field_mismatches,
)


def test_defaults_build_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database == Path("smsbridge.db")
    assert settings.port == 8080
    assert settings.cht_url == ""
    assert settings.carriers == ()


def test_credentials_ride_in_the_cht_url_and_are_masked() -> None:
    settings = Settings.from_env({"SMSBRIDGE_CHT_URL": "http://gw:s%40cret@cht.local:5988/"})
    assert settings.cht_base_url == "http://cht.local:5988"
    assert settings.cht_credentials is not None
    user, password = settings.cht_credentials
    assert (user, password.reveal()) == ("gw", "s@cret")
    shown = dict(settings.described())
    assert "s%40cret" not in shown["SMSBRIDGE_CHT_URL"]
    assert "****" in shown["SMSBRIDGE_CHT_URL"]


def test_secret_does_not_show_in_repr() -> None:
    assert "hunter2" not in repr(Secret("hunter2"))
    assert Secret("hunter2").reveal() == "hunter2"


def test_a_secret_does_not_leak_through_str_formatting_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = load_settings({"SMSBRIDGE_CHT_PASSWORD": "hunter2"}).cht_password
    assert not isinstance(secret, str)  # so nothing can treat it as its text
    shown = [
        str(secret),
        repr(secret),
        f"{secret}",
        f"{secret!s:>20}",
        str([secret]),
        str({"password": secret}),
    ]
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("password=%s", secret)
    shown.append(caplog.text)
    assert all("hunter2" not in text for text in shown), shown
    assert all("****" in text for text in shown), shown
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other")
    assert not Secret("") and str(Secret("")) == ""


def test_settings_imports_no_carrier_and_nothing_above_it() -> None:
    tree = ast.parse(Path(smsbridge.settings.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    ours = sorted(name for name in imported if name and name.startswith("smsbridge"))
    assert ours == [
        "smsbridge.errors",
        "smsbridge.postgres.url",
    ]  # leaves: they import none of ours
    assert "importlib" not in imported
    # and importing it alone loads no carrier (a fresh interpreter: nothing imported before)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, smsbridge.settings; "
            "print(sorted(m for m in sys.modules if m.startswith('smsbridge.')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "carriers" not in done.stdout and "outbound" not in done.stdout, done.stdout


def test_the_settings_fields_are_the_declared_settings() -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    assert names == [s.name for s in SETTINGS] + ["carrier", "carrier_settings"]
    assert field_mismatches(Settings, SETTINGS) == []
    # the check that runs at import time finds a setting declared but not a field
    extra = Setting("made_up", "", "Nothing.")
    found = field_mismatches(Settings, (*SETTINGS, extra))
    first = len(SETTINGS)  # the first field after the declared settings
    assert found[0] == f"field {first}: 'carrier', SETTINGS: 'made_up'"
    assert found[-1] == f"field {first + 2}: '(nothing)', SETTINGS: 'carrier_settings'"


def test_every_declared_default_converts_with_its_cast() -> None:
    settings = Settings.from_env({})
    for setting in SETTINGS:
        assert getattr(settings, setting.name) == setting.cast(setting.default), setting.name


def test_the_problems_are_data_naming_their_setting() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"SMSBRIDGE_PORT": "x", "SMSBRIDGE_ROUTES": "twilio"})
    assert caught.value.problems == (
        Problem("SMSBRIDGE_PORT", "expected a whole number, got 'x'"),
        Problem("SMSBRIDGE_ROUTES", "expected prefix=channel[|failover], got 'twilio'"),
    )
    with pytest.raises(SettingsError) as caught:
        load_settings({"SMSBRIDGE_CARRIERS": "pigeon", "SMSBRIDGE_TIMEZONE": "Mars/Olympus"})
    assert [p.env for p in caught.value.problems] == ["SMSBRIDGE_CARRIERS", "SMSBRIDGE_TIMEZONE"]
    assert isinstance(caught.value, ConfigError)


def test_carrier_settings_come_from_the_carriers_given() -> None:
    env = {"SMSBRIDGE_TWILIO_WEBHOOK_TOKEN": "tw-token", "SMSBRIDGE_GENERIC_WEBHOOK_TOKEN": "g"}
    settings = Settings.from_env(env, carriers=CARRIERS)
    assert settings.carrier_setting("twilio", "webhook_token") == "tw-token"
    assert settings.carrier_setting("vonage", "api_url") == "https://rest.nexmo.com"
    # no carrier list: enabled in the order the carriers were given
    assert settings.enabled_carriers == ("twilio", "generic")
    backwards = dict(reversed(CARRIERS.items()))
    assert Settings.from_env(env, carriers=backwards).enabled_carriers == ("generic", "twilio")
    shown = dict(settings.described())
    assert shown["SMSBRIDGE_TWILIO_WEBHOOK_TOKEN"] == "****"
    assert shown["SMSBRIDGE_VONAGE_API_URL"] == "https://rest.nexmo.com"
    # without carriers: no carrier setting is read and carrier names are not checked
    bare = Settings.from_env({**env, "SMSBRIDGE_CARRIERS": "twilio"})
    assert bare.carrier == {} and bare.enabled_carriers == ("twilio",)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SMSBRIDGE_PORT": "x", "SMSBRIDGE_RETRY_BASE": "-1"})
    lines = caught.value.detail.splitlines()
    assert any("SMSBRIDGE_PORT" in line for line in lines)
    assert any("SMSBRIDGE_RETRY_BASE" in line for line in lines)


def test_unknown_carrier_is_a_problem() -> None:
    with pytest.raises(ConfigError, match="unknown carrier 'pigeon'"):
        load_settings({"SMSBRIDGE_CARRIERS": "pigeon"})


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


def test_the_commit_wait_is_a_short_non_negative_number_of_seconds() -> None:
    assert Settings.from_env({}).commit_wait == 0.01
    assert Settings.from_env({"SMSBRIDGE_COMMIT_WAIT": "0"}).commit_wait == 0.0
    for bad in ("-0.01", "0.5", "soon"):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"SMSBRIDGE_COMMIT_WAIT": bad})
        assert caught.value.detail.startswith("SMSBRIDGE_COMMIT_WAIT: ")
