"""The console in a real browser: Debian's chromium driven through its chromedriver (Selenium,
pointed at both explicitly: nothing is downloaded), against a live bridge with workers, chtsim
and carriersim. Each page is photographed at phone (390x844) and desktop (1280x900) width into
$SMSBRIDGE_TEST_ARTIFACTS/console (else the test's temporary directory): artifacts, never
committed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsbridge.carriers import load_settings
from smsbridge.carriersim import CarrierSim, bridge_env
from smsbridge.chtsim import ChtSim
from smsbridge.inbound import messages as inbound
from smsbridge.loopback import free_port, serve_in_thread, wait_for
from smsbridge.outbound import messages as outgoing
from smsbridge.sms import DeliveryState
from smsbridge.store import Store
from smsbridge.web.app import create_app
from tests.debian import program
from tests.fakeclock import FakeClock
from tests.web.console.helpers import ADMIN, CHW, add_accounts

pytestmark = pytest.mark.slow

SIZES = {"phone": (390, 844), "desktop": (1280, 900)}
AT_TOKEN = "at-tok-console"
PATIENT, CHW_NUMBER = "+254711000222", "+254722000333"
INBOUND_TEXT, OUTGOING_TEXT = "Hello clinic, console test", "Reminder from the console test"


@contextmanager
def chromium_browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless chromium, quit before the bridge stops (its kept-alive connections closed)."""
    driver_path = program("/usr/bin/chromedriver", "chromium-driver")
    chromium = program("/usr/bin/chromium", "chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must fetch nothing
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("SMSBRIDGE_TEST_ARTIFACTS") or tmp_path) / "console"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@contextmanager
def live_bridge(
    tmp_path: Path, chtsim: tuple[ChtSim, str]
) -> Iterator[tuple[str, Any, CarrierSim]]:
    """A bridge with workers sending through carriersim's Twilio (giving up after one try, so
    an outage makes a dead letter at once); (its URL, its app, carriersim)."""
    cht, cht_url = chtsim
    add_accounts(cht)
    carriers, clock = CarrierSim(), FakeClock(1_800_000_000.0)
    with ExitStack() as stack:
        sim_url = stack.enter_context(serve_in_thread(carriers.app))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = load_settings(
            {
                "SMSBRIDGE_DATABASE": str(tmp_path / "bridge.db"),
                "SMSBRIDGE_CHT_URL": cht_url.replace("http://", "http://admin:pass@"),
                "SMSBRIDGE_CARRIERS": "africastalking,twilio",
                "SMSBRIDGE_PUBLIC_URL": url,
                "SMSBRIDGE_SYNC_INTERVAL": "0.05",
                "SMSBRIDGE_ROUTES": "*=twilio",
                "SMSBRIDGE_MAX_ATTEMPTS": "1",
                **bridge_env(sim_url),
                "SMSBRIDGE_AFRICASTALKING_WEBHOOK_TOKEN": AT_TOKEN,
                "SMSBRIDGE_TWILIO_WEBHOOK_TOKEN": "tw-tok-console",
            }
        )
        store = Store(settings.database)
        stack.callback(store.close)
        app = create_app(settings, clock=clock, store=store, idle=0.02)
        stack.enter_context(serve_in_thread(app, port=port))
        yield url, app, carriers


def shoot(driver: Any, directory: Path, name: str) -> None:
    for size, (width, height) in SIZES.items():
        driver.set_window_size(width, height)
        path = directory / f"{name}-{size}.png"
        assert driver.save_screenshot(str(path)), path
        assert path.stat().st_size > 1000
    driver.set_window_size(*SIZES["desktop"])


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def sign_in(driver: Any, url: str | None, name: str, password: str) -> None:
    """Fill in the sign-in form: at `url`'s, or (None) the one on the page now."""
    from selenium.webdriver.common.by import By

    if url is not None:
        driver.get(f"{url}/console/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()


def test_an_operator_follows_an_sms_and_retries_a_dead_letter(
    tmp_path: Path, chtsim: tuple[ChtSim, str], monkeypatch: pytest.MonkeyPatch, artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By

    cht = chtsim[0]
    with (
        live_bridge(tmp_path, chtsim) as (url, app, carriers),
        chromium_browser(monkeypatch) as browser,
    ):
        service = app.state.service
        # without a session: the sign-in form, nothing else
        browser.get(f"{url}/console/queue")
        assert "/console/login" in browser.current_url
        shoot(browser, artifacts, "login")
        sign_in(browser, None, *ADMIN)
        wait_for(lambda: "/console/login" not in browser.current_url, "signed in")
        assert browser.current_url.endswith("/console/queue")  # where the operator was going
        browser.get(f"{url}/console/")
        assert "Overview" in browser.title
        shoot(browser, artifacts, "overview")

        # an inbound SMS appears in the list, and its page tells its life
        httpx.post(
            f"{url}/carriers/africastalking/{AT_TOKEN}/inbound",
            data={"from": PATIENT, "to": "28901", "text": INBOUND_TEXT, "id": "AT-console-1",
                  "date": "2027-01-15T08:00:00Z", "linkId": ""},
        ).raise_for_status()  # fmt: skip
        browser.get(f"{url}/console/messages")

        def listed() -> bool:
            browser.refresh()
            return PATIENT[:5] in text_of(browser, "#messages")

        wait_for(listed, "the inbound SMS listed")
        assert PATIENT not in browser.page_source and INBOUND_TEXT not in browser.page_source
        shoot(browser, artifacts, "messages")
        browser.find_element(By.CSS_SELECTOR, "#messages a").click()

        def settled() -> bool:
            browser.refresh()
            return text_of(browser, "#state") in ("submitted", "relayed")

        wait_for(settled, "the SMS handed to CHT")
        assert text_of(browser, "#text") == INBOUND_TEXT
        assert "accepted the message" in text_of(browser, "#cht-answer")
        assert "viewed" in text_of(browser, "#audit")
        shoot(browser, artifacts, "inbound-sms")

        # CHT's SMS fails during a carrier outage: a dead letter
        carriers.outage("twilio", "5xx")
        ref = cht.add_outgoing(CHW_NUMBER, OUTGOING_TEXT)
        wait_for(lambda: service.tasks.dead_letters(), "the send given up")
        (task,) = service.tasks.dead_letters()
        assert task.ref == ref
        browser.get(f"{url}/console/queue")
        shoot(browser, artifacts, "queue")
        browser.find_element(By.ID, f"retry-{task.id}").click()
        shoot(browser, artifacts, "confirm")
        stale = browser.find_element(By.NAME, "csrf").get_attribute("value")

        # a token from an earlier session is refused
        browser.find_element(By.ID, "sign-out").click()
        wait_for(lambda: "/console/login" in browser.current_url, "signed out")
        sign_in(browser, url, *ADMIN)
        wait_for(lambda: "/console/login" not in browser.current_url, "signed in again")
        browser.get(f"{url}/console/confirm?action=retry&task={task.id}")
        browser.execute_script(
            "document.querySelector('#confirm [name=csrf]').value = arguments[0]", stale
        )
        browser.find_element(By.CSS_SELECTOR, "#confirm button").click()
        wait_for(lambda: "/console/act" in browser.current_url, "the form sent")
        assert "out of date" in text_of(browser, "#refused")
        assert service.tasks.get(task.id).state == "dead"

        # retried with the session's own token once the carrier is back: delivered
        carriers.outage("twilio", None)
        browser.get(f"{url}/console/confirm?action=retry&task={task.id}")
        browser.find_element(By.CSS_SELECTOR, "#confirm button").click()
        wait_for(lambda: "done=" in browser.current_url, "the retry done")
        assert "queued again" in text_of(browser, "#done")

        def delivered() -> bool:
            browser.refresh()
            return text_of(browser, "#state").startswith("delivered")

        wait_for(delivered, "the retried SMS delivered")
        assert text_of(browser, "#text") == OUTGOING_TEXT
        assert text_of(browser, "#carrier-id")
        assert f"retry #{task.id}" in text_of(browser, "#audit")
        assert ADMIN[0] in text_of(browser, "#audit")
        assert "DELIVERED" in text_of(browser, "#reported")
        shoot(browser, artifacts, "outgoing-sms")
        assert outgoing.get(service.store, ref).state is DeliveryState.DELIVERED
        assert inbound.listing(service.store, sender=PATIENT)
        browser.get(f"{url}/console/settings")
        assert "SMSBRIDGE_TWILIO_AUTH_TOKEN" in text_of(browser, "#settings")
        shoot(browser, artifacts, "settings")


def test_a_cht_user_without_an_admin_role_is_refused(
    tmp_path: Path, chtsim: tuple[ChtSim, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.by import By

    with (
        live_bridge(tmp_path, chtsim) as (url, _app, _carriers),
        chromium_browser(monkeypatch) as browser,
    ):
        sign_in(browser, url, *CHW)
        wait_for(lambda: browser.find_elements(By.ID, "error"), "the answer")
        assert "may not use the console" in text_of(browser, "#error")
        browser.get(f"{url}/console/")
        assert "/console/login" in browser.current_url
