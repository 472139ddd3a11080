"""First run: `smsbridge serve` with nothing configured is a working sandbox. It starts the CHT
simulator and, with no carrier configured, the demo `generic` carrier on the carrier simulator,
and prints (stdout) a curl command that really posts an SMS in, and how to see the result.
Also: `serve` refuses bad settings listing every problem, and bad `--port` values."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsbridge.carriers import load_settings
from smsbridge.chtsim.demo_data import CHW_PHONES
from smsbridge.loopback import free_port, wait_for
from smsbridge.sandbox import DEMO_TOKEN, cht_or_simulator
from smsbridge.settings import Settings

ALICE = CHW_PHONES["chw-alice"]
PROXIES = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh machine: no SMSBRIDGE_* setting but those given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBRIDGE_")}
    env.update(extra)
    return env


class Served:
    """`smsbridge serve` as a subprocess; stdout collected line by line."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.stderr = (tmp_path / "serve.log").open("w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsbridge", "serve", "--port", str(self.port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    def log(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    # A short exchange interval so that CHT's reply goes out within the test; every other
    # setting is at its default, as on a fresh machine.
    # A proxy in the environment (usual on institutional networks) must not catch the calls
    # to the simulators on 127.0.0.1: port 9 (discard) on loopback is no proxy at all.
    env = clean_env(tmp_path, SMSBRIDGE_SYNC_INTERVAL="0.5", **PROXIES)
    server = Served(tmp_path, env)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_with_nothing_configured_prints_a_curl_that_works(
    served: Served, tmp_path: Path
) -> None:
    curl_line = wait_for(
        lambda: (
            next((line for line in served.lines if "curl -s " in line and "inbound" in line), None)
            or served.proc.poll() is not None
        ),
        "the first-run help on stdout",
    )
    assert served.proc.poll() is None, served.log()
    out = served.stdout
    assert f"running on http://127.0.0.1:{served.port} against the built-in CHT simulator" in out
    sim_url = re.search(r"curl -s (http://127\.0\.0\.1:\d+)/_sim/records", out)
    assert sim_url, out
    cht = sim_url.group(1)
    assert "smsbridge inbox ls" in out and "outbox ls --state delivered" in out
    # The log says so too, and the simulators' own uvicorn lines do not pose as the bridge's.
    log = served.log()
    assert "event=cht_simulator_started" in log and "event=carrier_simulator_started" in log
    assert re.findall(r"event=listening url=http://[\d.]+:(\d+)", log) == [str(served.port)]
    assert "Uvicorn running on" not in log, log  # the simulators' (the bridge logs `listening`)

    # The printed command, as a newcomer pastes it (curl's --data-urlencode, done by httpx).
    words = shlex.split(curl_line.strip())
    assert words[:2] == ["curl", "-s"]
    url = words[2]
    assert url == f"http://127.0.0.1:{served.port}/carriers/generic/{DEMO_TOKEN}/inbound"
    form = dict(w.split("=", 1) for w in words[4::2])
    assert words[3::2] == ["--data-urlencode", "--data-urlencode"]
    assert form == {"from": ALICE, "text": "P 12 Jane Atieno"}
    response = httpx.post(url, data=form, timeout=10)
    assert response.status_code == 200, response.text

    def report() -> dict[str, Any] | None:
        docs = httpx.get(f"{cht}/_sim/records", timeout=5).json()
        return next((d for d in docs if d.get("form") == "P" and d.get("from") == ALICE), None)

    doc = wait_for(report, "the report in the CHT simulator")
    assert doc["fields"] == {"last_menstrual_period": 12, "patient_name": "Jane Atieno"}

    def reply_delivered() -> bool:
        messages = httpx.get(f"{cht}/_sim/messages", timeout=5).json()
        return any(m["to"] == ALICE and m["state"] == "delivered" for m in messages)

    wait_for(reply_delivered, "CHT's reply delivered through the carrier simulator")

    env = clean_env(tmp_path, SMSBRIDGE_DATABASE=str(tmp_path / "smsbridge.db"))
    inbox = subprocess.run(
        [sys.executable, "-m", "smsbridge", "inbox", "ls", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"state": "submitted"' in inbox.stdout
    outbox = subprocess.run(
        [sys.executable, "-m", "smsbridge", "outbox", "ls", "--state", "delivered", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"generic"' in outbox.stdout
    # Nothing of the SMS in the log at INFO: neither its text nor the full number.
    log = served.log()
    assert "Jane" not in log and ALICE not in log


def _settings(**env: str) -> Settings:
    return load_settings(env)


def test_a_configured_carrier_turns_the_demo_carrier_off() -> None:
    settings = _settings(SMSBRIDGE_GENERIC_WEBHOOK_TOKEN="my-own-token-123")
    with cht_or_simulator(settings, bridge_url="http://127.0.0.1:1") as (effective, mode):
        assert mode is not None and mode.carrier_url is None
        assert effective.carrier_setting("generic", "webhook_token") == "my-own-token-123"
        assert effective.carrier_setting("generic", "send_url") == ""
        assert effective.cht_url.startswith("http://gateway:")


def test_no_carrier_and_no_cht_enables_the_demo_carrier() -> None:
    settings = _settings()
    with cht_or_simulator(settings, bridge_url="http://127.0.0.1:1") as (effective, mode):
        assert mode is not None and mode.carrier_url is not None
        assert effective.carriers == ("generic",)
        assert effective.carrier_setting("generic", "webhook_token") == DEMO_TOKEN
        assert effective.carrier_setting("generic", "send_url") == f"{mode.carrier_url}/send"
        assert effective.public_url == "http://127.0.0.1:1"


def test_a_cht_url_means_no_simulator_at_all() -> None:
    settings = _settings(SMSBRIDGE_CHT_URL="http://u:p@127.0.0.1:1")
    with cht_or_simulator(settings) as (effective, mode):
        assert mode is None and effective == settings


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsbridge", *args],
        cwd=tmp_path,
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_with_bad_settings_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path,
        "serve",
        SMSBRIDGE_PORT="x",
        SMSBRIDGE_CARRIERS="nosuch",
        SMSBRIDGE_TIMEZONE="Mars/Base",
        SMSBRIDGE_LOG_LEVEL="LOUD",
        SMSBRIDGE_DATABASE=str(tmp_path / "missing" / "x.db"),
    )
    assert done.returncode == 2, done.stderr
    for name in ("PORT", "CARRIERS", "TIMEZONE", "LOG_LEVEL", "DATABASE"):
        assert f"SMSBRIDGE_{name}:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_require_cht_without_a_cht_url_refuses_to_start(tmp_path: Path, command: str) -> None:
    done = run_cli(tmp_path, command, SMSBRIDGE_REQUIRE_CHT="true")
    assert done.returncode == 2, (done.stdout, done.stderr)
    said = done.stdout + done.stderr
    assert "SMSBRIDGE_CHT_URL: empty, and SMSBRIDGE_REQUIRE_CHT is set" in said
    assert "Traceback" not in said and "cht_simulator_started" not in said


def test_serve_on_a_port_in_use_says_so_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = run_cli(tmp_path, "serve", "--port", port)
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr and "cht_simulator_started" not in done.stderr


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_serve_refuses_a_bad_port(tmp_path: Path, port: str) -> None:
    done = run_cli(tmp_path, "serve", "--port", port)
    assert done.returncode == 2
    assert "--port" in done.stderr and "Traceback" not in done.stderr


def test_check_config_shows_values_as_written(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "check-config", "--json")
    assert done.returncode == 0, done.stdout
    values = {row["setting"]: row["value"] for row in json.loads(done.stdout)["settings"]}
    assert values["SMSBRIDGE_CHT_TIMEOUT"] == "30"
    assert values["SMSBRIDGE_REJECT_UNKNOWN_SENDERS"] == "false"
    assert values["SMSBRIDGE_LOG_LEVEL"] == "INFO"


def test_the_readme_parse_example_prints_what_it_says(tmp_path: Path) -> None:
    """README's `smsbridge parse` example, literally: the settings fetched from the simulator's
    demo deployment, then the parse command and the output the README shows."""
    from smsbridge.chtsim.standalone import build
    from smsbridge.loopback import serve_in_thread

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("curl -s -u admin:pass -H 'Accept: application/json' ", 1)[1]
    block = block.split("```", 1)[0]
    command = next(line for line in block.splitlines() if line.startswith("smsbridge parse"))
    expected = [line[2:] for line in block.splitlines() if line.startswith("# {")]
    assert expected
    with serve_in_thread(build().app) as url:
        response = httpx.get(
            f"{url}/api/v1/settings",
            auth=("admin", "pass"),
            headers={"Accept": "application/json"},
            timeout=10,
        )
    assert response.status_code == 200
    (tmp_path / "app_settings.json").write_text(response.text)
    done = run_cli(tmp_path, *shlex.split(command)[1:])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["chtsim", "--state", "missing-dir/state.json"], "does not exist"),
        (["chtsim", "--state", "garbage.json"], "cannot read"),
        (["chtsim", "--state", "list.json"], "is not a simulator state file"),
        (["chtsim", "--port", "70000"], "--port"),
        (["demo", "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, args: list[str], says: str) -> None:
    (tmp_path / "garbage.json").write_text("not json")
    (tmp_path / "list.json").write_text("[]")
    done = run_cli(tmp_path, *args)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    """`smsbridge check-config | head -1`: the CLI stops quietly when its stdout is closed (here
    before it writes anything: it takes longer than that to start)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "smsbridge", "check-config", "--json"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.wait(60)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


@pytest.mark.slow
def test_the_demo_works_with_a_proxy_in_the_environment(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "demo", "--timeout", "10", **PROXIES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all four steps worked" in done.stdout


def test_readme_set_up_shows_the_curl_that_serve_prints() -> None:
    from smsbridge.sandbox import DEMO_SMS, SimulatorMode, first_run_help

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    readme = re.sub(r"\\\n\s*", "", readme)  # join continued shell lines
    help_text = first_run_help(
        "http://127.0.0.1:8080",
        SimulatorMode("http://127.0.0.1:1", "http://127.0.0.1:2"),
        load_settings({}),
    )
    printed = next(line.strip() for line in help_text.splitlines() if "/inbound" in line)
    assert printed in readme
    assert DEMO_SMS in printed and f"/carriers/generic/{DEMO_TOKEN}/inbound" in printed
