"""A small demo deployment for the simulator (`smsbridge chtsim`, `smsbridge serve` without a
CHT server, `smsbridge demo`): one district, two health centres, three community health workers
with phones, SMS forms (pregnancy registration `P`, ANC visit `V`, delivery `D`), a gateway user
for the bridge, and replies to good reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smsbridge.chtsim.state import default_settings

if TYPE_CHECKING:
    from smsbridge.chtsim.sim import ChtSim

GATEWAY_USER = ("gateway", "gateway-pass")
"""The user the bridge logs in as (online role `gateway`)."""

CHW_PHONES = {
    "chw-alice": "+254712345678",
    "chw-bob": "+254722345678",
    "chw-carol": "+254733345678",
}


def _patient_id() -> dict[str, Any]:
    """The first field of the follow-up forms (`V`, `D`): which registered patient."""
    return {
        "labels": {"tiny": {"en": "ID"}, "short": {"en": "Patient ID"}},
        "position": 0,
        "type": "string",
        "required": True,
    }


FORMS: dict[str, Any] = {
    "P": {
        "meta": {"code": "P", "label": {"en": "Pregnancy registration"}},
        "fields": {
            "last_menstrual_period": {
                "labels": {"tiny": {"en": "LMP"}, "short": {"en": "Weeks since LMP"}},
                "position": 0,
                "type": "integer",
                "required": True,
            },
            "patient_name": {
                "labels": {"tiny": {"en": "N"}, "short": {"en": "Name"}},
                "position": 1,
                "type": "string",
                "length": [1, 30],
                "required": True,
            },
        },
        "public_form": False,
    },
    "V": {
        "meta": {"code": "V", "label": {"en": "ANC visit"}},
        "fields": {
            "patient_id": _patient_id(),
            "visit_number": {
                "labels": {"tiny": {"en": "VN"}, "short": {"en": "Visit number"}},
                "position": 1,
                "type": "integer",
                "required": True,
            },
            "danger_signs": {
                "labels": {"tiny": {"en": "DS"}, "short": {"en": "Danger signs"}},
                "position": 2,
                "type": "boolean",
            },
        },
        "public_form": False,
    },
    "D": {
        "meta": {"code": "D", "label": {"en": "Delivery"}},
        "fields": {
            "patient_id": _patient_id(),
            "delivery_date": {
                "labels": {"tiny": {"en": "DD"}, "short": {"en": "Delivery date"}},
                "position": 1,
                "type": "date",
            },
        },
        "public_form": False,
    },
}

REPLIES = {
    "P": "Thank you {{contact.name}}, {{patient_name}} is registered as pregnant.",
    "V": "Thank you {{contact.name}}, ANC visit {{visit_number}} for {{patient_id}} recorded.",
    "D": "Thank you {{contact.name}}, the delivery for {{patient_id}} is recorded.",
}


def demo_settings() -> dict[str, Any]:
    """A bare deployment's settings (state.default_settings) with Kenya's country code, the
    gateway's number, the demo forms and the transitions that answer reports."""
    settings = default_settings()
    settings.update(
        default_country_code=254,
        gateway_number="+254700000000",
        outgoing_deny_list="",
        transitions={"update_clinics": True, "default_responses": True},
        forms=FORMS,
    )
    settings["sms"]["reply_to"] = "MEDIC"
    return settings


def demo_contacts() -> list[dict[str, Any]]:
    """Places and people, parents before children (ids are stable)."""
    return [
        {"_id": "district-1", "type": "district_hospital", "name": "Kisumu District"},
        {
            "_id": "hc-1",
            "type": "health_center",
            "name": "Kondele Health Centre",
            "parent": "district-1",
            "contact": "chw-alice",
        },
        {
            "_id": "hc-2",
            "type": "health_center",
            "name": "Nyalenda Health Centre",
            "parent": "district-1",
            "contact": "chw-carol",
        },
        {
            "_id": "chw-alice",
            "type": "person",
            "name": "Alice Achieng",
            "phone": CHW_PHONES["chw-alice"],
            "parent": "hc-1",
        },
        {
            "_id": "chw-bob",
            "type": "person",
            "name": "Bob Otieno",
            "phone": CHW_PHONES["chw-bob"],
            "parent": "hc-1",
        },
        {
            "_id": "chw-carol",
            "type": "person",
            "name": "Carol Wanjiru",
            "phone": CHW_PHONES["chw-carol"],
            "parent": "hc-2",
        },
    ]


def install_demo(sim: ChtSim) -> None:
    """Load the demo deployment into `sim` (settings, contacts, the gateway user, replies)."""
    sim.set_settings(demo_settings())
    for doc in demo_contacts():
        sim.add_contact(doc)
    sim.add_user(*GATEWAY_USER, roles=["gateway"])
    sim.add_user("chw-alice", "alice-pass", roles=["chw"])
    for form, template in REPLIES.items():
        sim.set_auto_reply(form, template)
