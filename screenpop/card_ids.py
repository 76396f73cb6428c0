"""A card's id: "<call_id>:<extension>", one operator's card of one call."""

from __future__ import annotations


def card_id(call_id: str, operator: str) -> str:
    return f"{call_id}:{operator}"


def operator_of(card_id_: str) -> str:
    return card_id_.rsplit(":", 1)[1]


def call_of(card_id_: str) -> str:
    return card_id_.rsplit(":", 1)[0]
