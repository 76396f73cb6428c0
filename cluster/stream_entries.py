"""What a PBX's event stream entries hold, and how they are written and read (cluster.stream).

An entry is `kind`, `epoch` (the owner's fencing epoch), `seq` (1, 2, 3, ... within one
epoch), `node` and the payload: an `AmiMessage` (pairs in order, `received_at` exactly), or
any JSON value in which AmiMessages may be nested (a resync's channel list). One Redis
entry holds either one entry (`entry_fields`) or a burst of consecutive ones
(`batch_fields`: their JSON texts spliced, not encoded again); `parse_entries` reads both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.ami.message import AmiMessage
from cluster.redis_link import text

_AMI_TAG = "$ami"  # {"$ami": [received_at, pairs]}: an AmiMessage inside a JSON payload
# orjson: an owner encodes every event it feeds (json.dumps took a tenth of its CPU per event).
_OPTIONS = orjson.OPT_NON_STR_KEYS


def _tag_ami(obj: Any) -> Any:
    if isinstance(obj, AmiMessage):
        return {_AMI_TAG: [float(obj.received_at), obj.pairs]}
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _ami(received_at: float, pairs: list[list[str]]) -> AmiMessage:
    return AmiMessage([(k, v) for k, v in pairs], received_at)


def _untag(obj: Any) -> Any:
    """A JSON payload with its AmiMessages restored, at any depth."""
    if isinstance(obj, dict):
        if len(obj) == 1 and _AMI_TAG in obj:
            return _ami(*obj[_AMI_TAG])
        return {key: _untag(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_untag(item) for item in obj]
    return obj


def pack_payload(payload: Any) -> tuple[str, str]:
    """(encoding, text). JSON keeps the pairs' order and repeats; a float is written in its
    shortest form that reads back to the same float."""
    if isinstance(payload, AmiMessage):
        return "ami", orjson.dumps([float(payload.received_at), payload.pairs]).decode()
    return "json", orjson.dumps(payload, default=_tag_ami, option=_OPTIONS).decode()


def unpack_payload(encoding: str, raw: bytes | str) -> Any:
    if encoding == "ami":
        return _ami(*orjson.loads(raw))
    if encoding == "json":
        return _untag(orjson.loads(raw))
    raise ValueError(f"unknown payload encoding {encoding!r}")


@dataclass(frozen=True, slots=True)
class StreamEntry:
    id: str  # the Redis stream id
    kind: str  # "event", "resync", "control", ...
    epoch: int
    seq: int
    node: str
    payload: Any  # an AmiMessage for enc "ami", else the JSON value (AmiMessages restored)


def entry_fields(kind: str, epoch: int, seq: int, node: str, payload: Any) -> dict[str, str]:
    encoding, body = pack_payload(payload)
    return {"kind": kind, "epoch": str(epoch), "seq": str(seq), "node": node,
            "enc": encoding, "payload": body}


def batch_fields(epoch: int, seq: int, node: str, items: list[tuple[str, str, str]]) -> dict[str, str]:
    """One Redis entry for consecutive entries (kind, encoding, encoded payload) from `seq` on.
    The payloads are JSON texts already: the batch is spliced, not encoded again."""
    body = ",".join(f'["{kind}","{encoding}",{payload}]' for kind, encoding, payload in items)
    return {"epoch": str(epoch), "seq": str(seq), "node": node, "items": f"[{body}]"}


def parse_entry(entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> StreamEntry:
    """A single entry. Raises KeyError / ValueError on an entry that is not ours or is damaged."""
    f = {text(k): v for k, v in fields.items()}
    return StreamEntry(text(entry_id), text(f["kind"]), int(f["epoch"]), int(f["seq"]), text(f["node"]),
                       unpack_payload(text(f["enc"]), f["payload"]))


def parse_entries(entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> list[StreamEntry]:
    """The entries of one Redis entry, batch or single, in seq order. Raises KeyError /
    ValueError / TypeError on one that is not ours or is damaged."""
    items = fields.get(b"items", fields.get("items"))  # type: ignore[call-overload]
    if items is None:
        return [parse_entry(entry_id, fields)]
    f = {text(k): v for k, v in fields.items()}
    rid, epoch, seq, node = text(entry_id), int(f["epoch"]), int(f["seq"]), text(f["node"])
    out = []
    for offset, (kind, encoding, payload) in enumerate(orjson.loads(items)):
        if encoding == "ami":
            payload = _ami(*payload)
        elif encoding == "json":
            payload = _untag(payload)
        else:
            raise ValueError(f"unknown payload encoding {encoding!r}")
        out.append(StreamEntry(rid, kind, epoch, seq + offset, node, payload))
    return out
