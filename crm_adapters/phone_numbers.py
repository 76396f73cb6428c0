"""Caller IDs to E.164, with a default region for numbers dialled in national form.

`classify()` sorts a raw caller ID into a customer number (E.164), a colleague (an
internal extension), anonymous (withheld, empty, `<unknown>`), or invalid. Only
customer numbers are ever looked up, so anonymous callers can never match a contact.

A number must be *valid* for phonenumbers (a real range of its country), not merely
*possible*: for some countries "possible" admits any length up to 15 digits, which
would turn typos into numbers. Keep the `phonenumbers` package current for new ranges.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

CallerKind = Literal["customer", "colleague", "anonymous", "invalid"]

# What PBXes and carriers put in CallerID(num) when there is no number to show.
ANONYMOUS_IDS = frozenset({
    "", "anonymous", "withheld", "unknown", "<unknown>", "restricted", "private", "unavailable",
    "unavail", "blocked", "none", "null", "s", "asterisk", "anonymous@anonymous.invalid",
})
_URI_PREFIX = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)
_DIGITS = re.compile(r"\d")
_EXTENSION = re.compile(r"^\d+$")
# A raw number of all-equal zeros ("0", "000") is a PBX placeholder, not a caller.
_ZEROS = re.compile(r"^0+$")


@dataclass(frozen=True, slots=True)
class CallerId:
    raw: str | None
    kind: CallerKind
    e164: str | None = None  # customers only
    extension: str | None = None  # colleagues only

    @property
    def matchable(self) -> bool:
        """Only customers with a normalised number are looked up in a CRM."""
        return self.kind == "customer" and self.e164 is not None


def _clean(raw: str) -> str:
    text = raw.strip().strip('"').strip()
    text = _URI_PREFIX.sub("", text)
    if "@" in text:  # a SIP URI's user part: sip:+74951234567@trunk.example
        text = text.split("@", 1)[0]
    return text.strip()


def is_anonymous(raw: str | None) -> bool:
    if raw is None:
        return True
    text = _clean(raw)
    return text.casefold() in ANONYMOUS_IDS or not _DIGITS.search(text) or bool(_ZEROS.match(text))


@functools.lru_cache(maxsize=4096)  # a call's number is asked about again and again
def normalize(raw: str | None, default_region: str = "RU") -> str | None:
    """E.164 for a customer number (`+74951234567`), None for anything else."""
    if raw is None or is_anonymous(raw):
        return None
    try:
        parsed = phonenumbers.parse(_clean(raw), default_region.upper())
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def classify(raw: str | None, default_region: str = "RU", *, min_extension_digits: int = 3,
             max_extension_digits: int = 4) -> CallerId:
    """Sort a raw caller ID: customer (with E.164), colleague, anonymous or invalid."""
    if is_anonymous(raw):
        return CallerId(raw, "anonymous")
    assert raw is not None
    text = _clean(raw)
    if _EXTENSION.match(text) and min_extension_digits <= len(text) <= max_extension_digits:
        return CallerId(raw, "colleague", extension=text)
    e164 = normalize(text, default_region)
    if e164 is None:
        return CallerId(raw, "invalid")
    return CallerId(raw, "customer", e164=e164)


def national_variants(e164: str) -> list[str]:
    """The forms a stored or dialled number may take for this E.164 number.

    Used to find raw caller IDs in the call log through its index (the log keeps what
    the PBX sent): `+74951234567`, `74951234567`, `4951234567`, `84951234567`, `0074951234567`.
    An HTTP adapter can also use the national forms to query a CRM that stores them.
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except NumberParseException:
        return [e164]
    cc = str(parsed.country_code)
    nsn = phonenumbers.national_significant_number(parsed)
    national = re.sub(r"\D", "", phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL))
    forms = [e164, cc + nsn, nsn, national, "00" + cc + nsn]
    region = phonenumbers.region_code_for_number(parsed)
    prefix = phonenumbers.ndd_prefix_for_region(region, True) if region else None
    if prefix:
        forms.append(prefix + nsn)
    if cc == "7":
        forms.append("8" + nsn)  # Russia and Kazakhstan: trunk prefix 8
    return list(dict.fromkeys(f for f in forms if f))
