"""The simulator's in-memory CHT database: settings, users, contacts and documents.

Documents are stored as CouchDB would hold them (JSON values, `_id`, `_rev`). Data records and
outgoing-message docs live in `docs` (insertion order = oldest first); places and people in
`contacts`. Two indexes stand in for CouchDB views: `gateway_refs` (messages_by_gateway_ref) and
`message_index` (messages_by_uuid). `save`/`load` persist everything but sessions to a JSON file.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_LISTS = ("tasks", "scheduled_tasks")
CONTACT_TYPES = ("contact", "district_hospital", "health_center", "clinic", "person")

ENGLISH = {
    "sys.missing_fields": "Missing or invalid fields: {{fields}}.",
    "sys.incorrect_type": "Incorrect type of field {{key}}, expected {{expectedType}}.",
    "extra_fields": "Extra fields.",
    "sys.empty": "Message appears empty.",
    "sys.form_not_found": "Form '{{form}}' not found.",
    "sys.facility_not_found": "Facility not found.",
}


def default_settings() -> dict[str, Any]:
    """A bare CHT deployment: the default roles and permissions, no forms."""
    return {
        "locale": "en",
        "locale_outgoing": "en",
        "forms_only_mode": False,
        "phone_validation": "full",
        "sms": {"outgoing_service": "medic-gateway", "duplicate_limit": 5},
        "roles": {
            "gateway": {"name": "usertype.gateway"},
            "national_admin": {"name": "usertype.national-manager"},
            "chw": {"name": "usertype.chw", "offline": True},
        },
        "permissions": {
            "can_access_gateway_api": ["gateway"],
            "can_create_records": ["gateway", "national_admin"],
            "can_view_unallocated_data_records": ["gateway", "national_admin"],
        },
        "transitions": {},
        "forms": {},
    }


def new_id() -> str:
    return uuid.uuid4().hex


def new_rev(doc: dict[str, Any]) -> None:
    generation = int(str(doc.get("_rev", "0-")).split("-", 1)[0] or 0) + 1
    doc["_rev"] = f"{generation}-{uuid.uuid4().hex}"


@dataclass
class User:
    name: str
    password: str
    roles: list[str] = field(default_factory=list)


class SimState:
    """Everything CHT would hold in CouchDB, behind one re-entrant lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings: dict[str, Any] = default_settings()
        self.translations: dict[str, dict[str, str]] = {"en": dict(ENGLISH)}
        self.users: dict[str, User] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.xforms: dict[str, str] = {}
        self.auto_replies: dict[str, str] = {}
        self.credentials: dict[str, str] = {}
        self.sentinel_backlog = 0
        self.update_seq = 0
        self.gateway_refs: set[str] = set()
        self.task_refs: dict[str, str] = {}
        self.message_index: dict[str, tuple[str, str, int]] = {}
        self.active: dict[tuple[str, str, int], None] = {}

    # -- documents -----------------------------------------------------------------------------

    def put_doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a data record / message doc and index it."""
        with self.lock:
            doc.setdefault("_id", new_id())
            new_rev(doc)
            self.docs[doc["_id"]] = doc
            self.update_seq += 1
            self.index_doc(doc)
            return doc

    def index_doc(self, doc: dict[str, Any]) -> None:
        sms = doc.get("sms_message")
        if isinstance(sms, dict) and isinstance(sms.get("gateway_ref"), str):
            self.gateway_refs.add(sms["gateway_ref"])
        for list_name, index, task in iter_tasks(doc):
            self.index_task(doc["_id"], list_name, index, task)

    def index_task(self, doc_id: str, list_name: str, index: int, task: dict[str, Any]) -> None:
        key = (doc_id, list_name, index)
        for message in task.get("messages") or []:
            if isinstance(message, dict) and message.get("uuid"):
                self.message_index[str(message["uuid"])] = key
        if isinstance(task.get("gateway_ref"), str):
            self.task_refs[task["gateway_ref"]] = doc_id
        if task.get("state") in ("pending", "forwarded-to-gateway"):
            self.active[key] = None
        else:
            self.active.pop(key, None)

    def has_gateway_ref(self, ref: str) -> bool:
        return ref in self.gateway_refs or ref in self.task_refs

    def find_task(self, message_uuid: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(doc, task) holding the outgoing message `message_uuid` (messages_by_uuid)."""
        key = self.message_index.get(message_uuid)
        if key is None:
            return None
        doc = self.docs.get(key[0])
        if doc is None:
            return None
        tasks = doc.get(key[1]) or []
        if key[2] >= len(tasks):
            return None
        return doc, tasks[key[2]]

    # -- contacts ------------------------------------------------------------------------------

    def put_contact(self, doc: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            doc = copy.deepcopy(doc)
            doc.setdefault("_id", new_id())
            parent = doc.get("parent")
            if isinstance(parent, str):
                doc["parent"] = self.minify(parent)
            contact = doc.get("contact")
            if isinstance(contact, str):
                doc["contact"] = {"_id": contact}
            new_rev(doc)
            self.contacts[doc["_id"]] = doc
            self.update_seq += 1
            return doc

    def minify(self, contact_id: str) -> dict[str, Any]:
        """`{_id, parent: {_id, parent: ...}}` of a stored contact (its lineage, ids only)."""
        lineage: dict[str, Any] = {"_id": contact_id}
        current = lineage
        seen = {contact_id}
        parent = (self.contacts.get(contact_id) or {}).get("parent")
        while isinstance(parent, dict) and parent.get("_id") and parent["_id"] not in seen:
            seen.add(parent["_id"])
            current["parent"] = {"_id": parent["_id"]}
            current = current["parent"]
            parent = parent.get("parent")
        return lineage

    # -- persistence ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": 1,
                "settings": self.settings,
                "translations": self.translations,
                "users": {
                    u.name: {"password": u.password, "roles": u.roles} for u in self.users.values()
                },
                "contacts": list(self.contacts.values()),
                "docs": list(self.docs.values()),
                "xforms": self.xforms,
                "auto_replies": self.auto_replies,
                "credentials": self.credentials,
                "sentinel_backlog": self.sentinel_backlog,
            }

    def save(self, path: Path) -> None:
        data = json.dumps(self.to_json(), ensure_ascii=False)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        with self.lock:
            self.settings = data.get("settings") or default_settings()
            self.translations = data.get("translations") or {"en": dict(ENGLISH)}
            self.users = {
                name: User(name, u["password"], list(u.get("roles") or []))
                for name, u in (data.get("users") or {}).items()
            }
            self.contacts = {c["_id"]: c for c in data.get("contacts") or []}
            self.docs = {}
            self.gateway_refs.clear()
            self.task_refs.clear()
            self.message_index.clear()
            self.active.clear()
            for doc in data.get("docs") or []:
                self.docs[doc["_id"]] = doc
                self.index_doc(doc)
            self.xforms = data.get("xforms") or {}
            self.auto_replies = data.get("auto_replies") or {}
            self.credentials = data.get("credentials") or {}
            self.sentinel_backlog = int(data.get("sentinel_backlog") or 0)


def iter_tasks(doc: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(list name, index, task) for every task of a doc, tasks before scheduled_tasks."""
    for list_name in TASK_LISTS:
        tasks = doc.get(list_name)
        if isinstance(tasks, list):
            for index, task in enumerate(tasks):
                if isinstance(task, dict):
                    yield list_name, index, task
