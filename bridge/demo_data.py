"""Demo users and CRM contacts, so `callbridge demo` shows live pops out of the box."""

from __future__ import annotations

import logging

from crm_adapters.contract import NewContact
from crm_adapters.lookup import LookupService

log = logging.getLogger("callbridge.demo")

DEMO_PASSWORD = "callbridge-demo"
# (username, role, display name, extensions): the extensions the recorded calls ring.
DEMO_USERS = [
    ("anna", "operator", "Anna Operator", ["101"]),
    ("boris", "operator", "Boris Operator", ["102"]),
    ("clara", "operator", "Clara Operator", ["103"]),
    ("denis", "operator", "Denis Operator", ["104"]),
    ("vera", "supervisor", "Vera Supervisor", ["201"]),
    ("tom", "trainer", "Tom Trainer", []),
    ("admin", "admin", "Admin", []),
]
# Some callers of the recorded calls are known to the built-in CRM, others are not
# (their cards show the number and offer "create contact").
DEMO_CONTACTS = [
    NewContact(display_name="Иван Петров", phones=["+74951234567"], company="ООО Вектор", tags=["VIP"],
               note="Asked for a callback about the March invoice."),
    NewContact(display_name="Олена Коваль", phones=["+380441234567"], company="Kovalenko & Co"),
    NewContact(display_name="Пётр Сидоров", phones=["+74951112233"], company="Сидоров и партнёры"),
    NewContact(display_name="Мария Иванова", phones=["+74951114455"], tags=["VIP"]),
]


async def seed_demo(users, lookup: LookupService) -> None:
    for username, role, name, extensions in DEMO_USERS:
        if await users.get(username) is None:
            await users.add(username, DEMO_PASSWORD, role=role, display_name=name, extensions=extensions)
    for contact in DEMO_CONTACTS:
        card = await lookup.lookup(contact.phones[0])
        if card.status == "not_found":
            await lookup.create_contact(contact)


def login_help(base_url: str) -> str:
    lines = [f"open {base_url}/login — demo users (password {DEMO_PASSWORD!r}):"]
    for username, role, name, extensions in DEMO_USERS:
        phone = f", phone {', '.join(extensions)}" if extensions else ""
        lines.append(f"  {username:<6} {role:<10} {name}{phone}")
    return "\n".join(lines)
