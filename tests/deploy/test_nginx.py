"""deploy/nginx/smsbridge.conf with a real nginx (Debian's nginx-light) in front of a running
bridge: TLS with a self-signed certificate made here, a Twilio webhook through the proxy (its
signature computed over the proxy's https URL, SMSBRIDGE_PUBLIC_URL), /metrics and
/openapi.json refused on the public side, /healthz reachable, plain HTTP redirected."""

from __future__ import annotations

import contextlib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smsbridge.carriersim import twilio_signature
from smsbridge.loopback import free_port, wait_for
from tests.conftest import WEBHOOK_TOKENS, RunningBridge, running_bridge
from tests.debian import program

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "smsbridge.conf"
TWILIO_AUTH_TOKEN = "12345abcdef"  # tests/conftest.py's bridge_env


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl's command line)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            program("openssl", "openssl"),
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def site_config(bridge_port: int, tls_port: int, plain_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx/smsbridge.conf on loopback ports with the test's certificate: each line the
    test changes must be found in the shipped file, once."""
    text = CONF.read_text()
    changes = [
        ("    server 127.0.0.1:8080;", f"    server 127.0.0.1:{bridge_port};"),
        ("    listen 443 ssl;", f"    listen 127.0.0.1:{tls_port} ssl;"),
        ("    listen [::]:443 ssl;\n", ""),
        ("    listen 80;", f"    listen 127.0.0.1:{plain_port};"),
        ("    listen [::]:80;\n", ""),
        ("/etc/letsencrypt/live/sms.example.org/fullchain.pem;", f"{cert};"),
        ("/etc/letsencrypt/live/sms.example.org/privkey.pem;", f"{key};"),
    ]
    for old, new in changes:
        assert text.count(old) == 1, f"deploy/nginx/smsbridge.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def running_nginx(directory: Path, site: str, tls_port: int) -> Iterator[None]:
    """nginx in the foreground, everything of its own under `directory`."""
    nginx = program("nginx", "nginx-light")
    (directory / "site.conf").write_text(site)
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        "daemon off;\nuser root;\nworker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'} info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n{temp}    access_log off;\n    include {directory / 'site.conf'};\n}}\n"
    )
    args = [nginx, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", "stderr"]
    checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:

        def listening() -> bool:
            if process.poll() is not None:
                out = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"nginx exited: {out}")
            try:
                httpx.get(f"http://127.0.0.1:{tls_port}/", timeout=1)  # any answer will do
            except httpx.TransportError:
                return False
            return True

        wait_for(listening, "nginx listening", timeout=15)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[RunningBridge, str, str, Path]]:
    """(bridge, the proxy's https URL, its plain http URL, the certificate)."""
    tls_port, plain_port = free_port(), free_port()
    public = f"https://127.0.0.1:{tls_port}"
    cert, key = certificate(tmp_path)
    with running_bridge(tmp_path, SMSBRIDGE_PUBLIC_URL=public) as bridge:
        bridge_port = int(bridge.url.rsplit(":", 1)[1])
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        site = site_config(bridge_port, tls_port, plain_port, cert, key)
        with running_nginx(nginx_dir, site, tls_port):
            yield bridge, public, f"http://127.0.0.1:{plain_port}", cert


def twilio_form(sid: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+254712345678",
        "To": "+254700000000",
        "Body": "hello through the proxy",
        "NumMedia": "0",
    }


def test_a_signed_twilio_webhook_through_the_proxy_is_stored(
    proxied: tuple[RunningBridge, str, str, Path],
) -> None:
    bridge, public, _, cert = proxied
    path = f"/carriers/twilio/{WEBHOOK_TOKENS['twilio']}/inbound"
    form = twilio_form("SM" + "1" * 32)
    signature = twilio_signature(TWILIO_AUTH_TOKEN, public + path, form)
    with httpx.Client(
        base_url=public, verify=ssl.create_default_context(cafile=str(cert)), timeout=10
    ) as https:
        answered = https.post(path, data=form, headers={"X-Twilio-Signature": signature})
        assert answered.status_code == 200, answered.text
        assert [m["external_id"] for m in bridge.messages()] == [form["MessageSid"]]
        # the signature is really checked behind the proxy: a wrong one is refused
        other = twilio_form("SM" + "2" * 32)
        refused = https.post(path, data=other, headers={"X-Twilio-Signature": signature})
        assert refused.status_code == 403, refused.text
        assert len(bridge.messages()) == 1


def test_operator_endpoints_are_refused_through_the_proxy_and_healthz_is_not(
    proxied: tuple[RunningBridge, str, str, Path],
) -> None:
    bridge, public, _, cert = proxied
    with httpx.Client(
        base_url=public, verify=ssl.create_default_context(cafile=str(cert)), timeout=10
    ) as https:
        for path in ("/metrics", "/openapi.json", "/readyz", "/metrics/", "/%6Detrics"):
            assert https.get(path).status_code == 403, path
        assert https.get("/metrics?format=text").status_code == 403
        health = https.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
    # the bridge itself serves them on its own address: the refusal is the proxy's
    assert bridge.http.get("/metrics").status_code == 200
    assert bridge.http.get("/openapi.json").status_code == 200


def test_plain_http_is_redirected_to_https(
    proxied: tuple[RunningBridge, str, str, Path],
) -> None:
    _, _, plain, _ = proxied
    response = httpx.get(plain + "/healthz", follow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["location"].startswith("https://127.0.0.1")
