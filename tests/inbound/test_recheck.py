"""A report whose first attempt may have reached CHT keeps both guarantees on its retry: it is
never stored twice, and its reported_date stays the time the SMS was received. The retry looks
the report up by its gateway_ref in CHT's messages_by_gateway_ref view (as an online user may)
and posts it again only when CHT does not have it; a CHT user who may not query the view falls
back to relaying the SMS through /api/sms (docs/cht-records.md)."""

from __future__ import annotations

import copy

from smsbridge.chtsim import ChtSim
from smsbridge.chtsim.medic_db import GATEWAY_REF_VIEW
from smsbridge.inbound.messages import get_message
from tests.inbound.test_submit import RECEIVED, Harness, Play, play  # noqa: F401 (a fixture)

RECEIVED_MS = int(RECEIVED.timestamp() * 1000)


def test_an_attempt_that_timed_out_before_cht_stored_it_is_posted_again_with_its_date(
    play: Play,  # noqa: F811
    demo_sim: ChtSim,
) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.timeout_next(1, path="/api/v2/records")  # no answer, nothing stored
        message_id = await h.receive("P 12 Jane")
        await h.run()
        assert h.state(message_id) == "received"
        assert h.records_from() == []
        h.now = h.due() or h.now
        await h.run()
        assert h.state(message_id) == "submitted"
        [record] = h.records_from()
        assert record["reported_date"] == RECEIVED_MS  # not when CHT got the retry
        assert record["fields"] == {"last_menstrual_period": 12, "patient_name": "Jane"}
        assert demo_sim.request_count(GATEWAY_REF_VIEW) == 1
        assert demo_sim.request_count("/api/sms") == 0

    play(scenario)


def test_an_attempt_cht_did_store_is_found_by_its_gateway_ref_with_its_date(
    play: Play,  # noqa: F811
    demo_sim: ChtSim,
) -> None:
    async def scenario(h: Harness) -> None:
        demo_sim.faults.drop_next(1, path="/api/v2/records")  # stored, then no answer
        message_id = await h.receive("P 12 Jane")
        await h.run()
        h.now = h.due() or h.now
        await h.run()
        [record] = h.records_from()
        message = get_message(h.store, message_id)
        assert message is not None
        assert (message.state, message.cht_doc_id) == ("submitted", record["_id"])
        assert record["reported_date"] == RECEIVED_MS
        assert demo_sim.request_count("/api/v2/records") == 1

    play(scenario)


def test_a_user_who_may_not_query_the_view_rechecks_through_api_sms(
    play: Play,  # noqa: F811
    demo_sim: ChtSim,
) -> None:
    roles = copy.deepcopy(demo_sim.state.settings["roles"])
    roles["gateway"]["offline"] = True  # CHT's firewall refuses views to offline users
    demo_sim.set_settings({"roles": roles}, merge=True)

    async def scenario(h: Harness) -> None:
        demo_sim.faults.drop_next(1, path="/api/v2/records")
        message_id = await h.receive("P 12 Jane")
        await h.run()
        h.now = h.due() or h.now
        await h.run()
        assert h.state(message_id) == "relayed"  # CHT dropped the SMS: it has the record
        assert len(h.records_from()) == 1
        assert demo_sim.request_count(GATEWAY_REF_VIEW) == 1
        assert demo_sim.request_count("/api/sms", "POST") == 1

    play(scenario)
