"""`smsbridge demo` plays its four steps against the simulators and says what happened."""

from __future__ import annotations

import pytest

from smsbridge.cli.main import main


def test_the_demo_plays_every_step_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--timeout", "20"]) == 0, capsys.readouterr().out
    text = capsys.readouterr().out
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert step in text
    assert "form P, last_menstrual_period=12, patient_name=Jane Atieno" in text
    assert "registered as pregnant" in text
    assert text.count("-> sent -> delivered") == 2
    malformed = text.split("[4/4]")[1]
    assert 'sent to +254712345678: "' in malformed
    assert "all four steps worked" in text
