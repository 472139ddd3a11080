"""CHT's translations reach the parser: fetched from the medic database as an online CHT user
can (the `messages-<code>` documents), turned into tables as CHT's API does, cached with the form
definitions in SQLite, refreshed with them, and passed to the parser, so that a form whose
labels are translation keys parses in the bridge as it does in CHT."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsbridge.carriers import load_settings
from smsbridge.cht.appsettings import ChtSettingsCache
from smsbridge.cht.client import ChtClient
from smsbridge.chtsim import ChtSim
from smsbridge.chtsim.demo_data import CHW_PHONES
from smsbridge.chtsim.medic_db import GATEWAY_REF_VIEW
from smsbridge.errors import PermanentError
from smsbridge.loopback import wait_for
from smsbridge.smsparser.fields import ParseOptions
from smsbridge.smsparser.forms import forms_from_settings
from smsbridge.smsparser.parser import Report, parse_sms
from smsbridge.smsparser.translate import load_translations
from smsbridge.store import Store

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "smsparser.json"
VECTOR = next(
    v
    for v in json.loads(VECTORS.read_text(encoding="utf-8"))
    if v["id"] == "tiny-translation-key-match"
)  # CHT's own test: a tiny label that is a translation key, message "R j jane" in locale sw


def _doc(code: str, **fields: Any) -> dict[str, Any]:
    return {"_id": f"messages-{code}", "type": "translations", "code": code, **fields}


# -- the tables, as CHT's API builds them from its documents -------------------------------------

LOAD_CASES = [
    pytest.param(
        [_doc("en", generic={"a": "A", "b": "B"}, custom={"b": "custom B"})],
        {"en": {"a": "A", "b": "custom B"}},
        id="custom-overrides-generic",
    ),
    pytest.param(
        [_doc("fr", values={"a": "old style"})],
        {"fr": {"a": "old style"}},
        id="older-docs-keep-values",
    ),
    pytest.param(
        [_doc("en", generic={"one": "first", "three": "${one} third ${two}"})],
        {"en": {"one": "first", "three": "first third ${two}"}},
        id="key-references-resolved-missing-ones-kept",
    ),
    pytest.param(
        [_doc("en", generic={"one": 1, "t": True, "z": 0, "x": "${one} ${t} ${z}"})],
        {"en": {"one": 1, "t": True, "z": 0, "x": "1 ${t} ${z}"}},
        id="numbers-resolve-booleans-and-zero-do-not",
    ),
    pytest.param(
        [
            {"_id": "messages-xx", "type": "other", "code": "xx", "generic": {"a": "1"}},
            _doc("", generic={"a": "1"}),
            _doc("yy", generic="not an object"),
            _doc("sw", generic={"a": "moja"}),
        ],
        {"sw": {"a": "moja"}},
        id="malformed-docs-skipped",
    ),
]


@pytest.mark.parametrize(("docs", "tables"), LOAD_CASES)
def test_translation_tables_as_cht_loads_them(docs: list[Any], tables: dict[str, Any]) -> None:
    assert load_translations(docs) == tables


# -- what the simulator serves, and what the client reads ----------------------------------------


def test_the_translations_are_documents_per_locale(demo_sim: ChtSim, demo_cht_url: str) -> None:
    demo_sim.set_translations({"sw": {"form.r.name.tiny": "J"}})
    with httpx.Client(base_url=demo_cht_url, headers={"Accept": "application/json"}) as http:
        doc = http.get("/medic/messages-sw").json()
        assert (doc["type"], doc["code"], doc["generic"]) == (
            "translations",
            "sw",
            {"form.r.name.tiny": "J"},
        )
        assert http.get("/medic/messages-zz").status_code == 404

    async def fetch() -> list[dict[str, Any]]:
        async with ChtClient(demo_cht_url, None) as cht:
            return await cht.translation_docs()

    docs = asyncio.run(fetch())
    assert sorted(d["_id"] for d in docs) == ["messages-en", "messages-sw"]
    assert load_translations(docs)["sw"] == {"form.r.name.tiny": "J"}


def test_an_offline_user_reads_translations_but_may_not_query_views(
    demo_sim: ChtSim, demo_cht_url: str
) -> None:
    demo_sim.add_user("chw-user", "chw-pass", roles=["chw"])  # an offline role
    base = demo_cht_url.split("@", 1)[1]

    async def as_offline() -> tuple[list[dict[str, Any]], Exception | None]:
        async with ChtClient(f"http://{base}", ("chw-user", "chw-pass")) as cht:
            docs = await cht.translation_docs()
            try:
                await cht.records_by_gateway_ref("x")
            except PermanentError as exc:
                return docs, exc
            return docs, None

    docs, refused = asyncio.run(as_offline())
    assert [d["_id"] for d in docs] == ["messages-en"]
    assert isinstance(refused, PermanentError) and refused.status == 403
    assert demo_sim.request_count(GATEWAY_REF_VIEW) == 1


# -- cached with the forms, refreshed with them --------------------------------------------------


def _settings(tmp_path: Path, url: str) -> Any:
    return load_settings({"SMSBRIDGE_DATABASE": str(tmp_path / "b.db"), "SMSBRIDGE_CHT_URL": url})


def test_translations_are_cached_with_the_forms_and_survive_a_restart_during_an_outage(
    tmp_path: Path, demo_sim: ChtSim, demo_cht_url: str
) -> None:
    demo_sim.set_translations({"sw": {"form.r.name.tiny": "J"}})
    settings = _settings(tmp_path, demo_cht_url)

    async def refresh(now: float) -> dict[str, Any]:
        with Store(settings.database) as store:
            async with ChtClient.from_settings(settings) as cht:
                cache = ChtSettingsCache(store, settings)
                await cache.refresh(cht, now)
                return cache.translations

    assert asyncio.run(refresh(0.0))["sw"] == {"form.r.name.tiny": "J"}
    demo_sim.set_translations({"sw": {"form.r.name.tiny": "K"}})
    assert asyncio.run(refresh(1.0))["sw"] == {"form.r.name.tiny": "K"}  # refreshed
    demo_sim.faults.fail_next(10, 503)  # CHT down: settings and translations alike
    assert asyncio.run(refresh(2.0))["sw"] == {"form.r.name.tiny": "K"}  # the cached copy


def test_a_translations_failure_keeps_the_cached_tables_and_the_new_settings(
    tmp_path: Path, demo_sim: ChtSim, demo_cht_url: str
) -> None:
    demo_sim.set_translations({"sw": {"form.r.name.tiny": "J"}})
    settings = _settings(tmp_path, demo_cht_url)

    async def scenario() -> None:
        with Store(settings.database) as store:
            async with ChtClient.from_settings(settings) as cht:
                cache = ChtSettingsCache(store, settings)
                assert await cache.refresh(cht, 0.0)
                demo_sim.set_forms({"NEW": {"meta": {"code": "NEW"}, "fields": {}}})
                demo_sim.faults.fail_next(1, 503, path="/medic/_all_docs")
                assert await cache.refresh(cht, 1.0)
                assert "NEW" in cache.forms
                assert cache.translations["sw"] == {"form.r.name.tiny": "J"}
                assert cache.next_refresh <= 31.0  # tries again soon
            restarted = ChtSettingsCache(store, settings)
            assert restarted.translations["sw"] == {"form.r.name.tiny": "J"}

    asyncio.run(scenario())


# -- through the bridge: the same report as CHT's parser -----------------------------------------


def test_a_form_with_translation_key_labels_gives_chts_report_through_the_bridge(
    bridge_factory: Any, demo_sim: ChtSim, demo_cht_url: str
) -> None:
    demo_sim.set_settings({"locale": VECTOR["locale"]}, merge=True)
    demo_sim.set_forms({"R": VECTOR["form_def"]})
    demo_sim.set_translations(VECTOR["translations"])
    bridge = bridge_factory(cht_url=demo_cht_url, start_workers=True)
    answer = bridge.http.post(
        bridge.inbound_path("africastalking"),
        data={
            "from": CHW_PHONES["chw-alice"],
            "to": "28901",
            "text": VECTOR["message"],
            "id": "AT-tr-1",
            "date": "2023-11-14T20:00:00Z",
        },
    )
    assert answer.status_code == 200
    [record] = wait_for(lambda: [r for r in demo_sim.records() if r.get("form") == "R"])
    assert record["fields"] == VECTOR["expected"]  # CHT's own expectation
    wait_for(lambda: bridge.messages()[0]["state"] == "submitted")
    # and the simulator's CHT parser, given the raw text, agrees
    with httpx.Client(base_url=demo_cht_url, headers={"Accept": "application/json"}) as http:
        raw = http.post(
            "/api/v2/records", data={"from": CHW_PHONES["chw-alice"], "message": VECTOR["message"]}
        )
    assert demo_sim.record(raw.json()["id"])["fields"] == record["fields"]


# -- the bridge's own error texts render as CHT's --------------------------------------------------

FORMS = forms_from_settings({"forms": {"R": VECTOR["form_def"]}})
ERROR_TEXT_CASES = [
    pytest.param("XX 1", None, "Form 'XX' not found.", id="english-default-filled"),
    pytest.param(
        "XX 1",
        {"fr": {"sys.form_not_found": "Formulaire {{form}} inconnu"}},
        "Formulaire XX inconnu",
        id="the-deployment-translation-filled",
    ),
    pytest.param(
        "XX 1",
        {"fr": {"sys.form_not_found": "Formulaire {{form}} de {{who}}"}},
        "Formulaire {{form}} de {{who}}",
        id="a-template-naming-what-the-context-lacks-kept",
    ),
    pytest.param(
        "   ", {"en": {"sys.empty": "Vide {{form}}"}}, "Vide {{form}}", id="empty-has-no-context"
    ),
]


@pytest.mark.parametrize(("text", "tables", "expected"), ERROR_TEXT_CASES)
def test_the_bridges_error_texts_are_chts_rendered_the_same_way(
    text: str, tables: dict[str, Any] | None, expected: str
) -> None:
    result = parse_sms(text, FORMS, ParseOptions(locale="fr", translations=tables))
    assert not isinstance(result, Report)
    assert result.detail == expected
