"""Carrier simulator: the send APIs of Africa's Talking, Twilio, Vonage and a generic HTTP
gateway, answering in their wire formats (apis.py), then calling the bridge's delivery-report
webhooks, with faults and behaviour switches for tests (sim.py).

    sim = CarrierSim()
    sim.set_callback("africastalking", bridge_url + "/carriers/africastalking/TOKEN/status")
    with serve_in_thread(sim.app) as url: ...   # the carriers' base URL for the bridge
    bridge_env(url)                             # SMSBRIDGE_* pointing the bridge at it

The fake cht-gateway phone is smsbridge/fakephone.py.
"""

from smsbridge.carriersim.apis import twilio_signature
from smsbridge.carriersim.sim import DEFAULT_CREDENTIALS, CarrierSim, SentSms, bridge_env

__all__ = ["DEFAULT_CREDENTIALS", "CarrierSim", "SentSms", "bridge_env", "twilio_signature"]
