"""Caller ID normalisation: E.164 per region, anonymous callers, internal extensions."""

from __future__ import annotations

import pytest

from crm_adapters.phone_numbers import classify, is_anonymous, national_variants, normalize

SAME_PERSON = [
    # region, the forms callers dial in, the E.164 they all are
    ("RU", ["84951234567", "8 (495) 123-45-67", "+7 495 123-45-67", "74951234567", "+7(495)1234567",
            "8-495-123-45-67", "sip:+74951234567@trunk.example", "81074951234567"], "+74951234567"),
    ("RU", ["89161234567", "+7 916 123 45 67", "8 916 123-45-67"], "+79161234567"),
    ("UA", ["0441234567", "+380441234567", "044 123 4567", "380441234567", "+38 (044) 123-45-67"],
     "+380441234567"),
    ("DE", ["030 12345678", "+49 30 12345678", "03012345678", "0049 30 12345678"], "+493012345678"),
    ("US", ["(212) 555-0123", "212-555-0123", "+1 212 555 0123", "1 212 555 0123", "2125550123"],
     "+12125550123"),
]


@pytest.mark.parametrize(("region", "forms", "e164"), SAME_PERSON,
                         ids=[f"{r}-{e}" for r, _, e in SAME_PERSON])
def test_every_form_is_the_same_person(region: str, forms: list[str], e164: str) -> None:
    assert {form: normalize(form, region) for form in forms} == dict.fromkeys(forms, e164)
    assert all(classify(form, region).e164 == e164 for form in forms)


@pytest.mark.parametrize(("raw", "region", "e164"), [
    ("+380441234567", "RU", "+380441234567"),  # international form: the region does not matter
    ("+74951234567", "UA", "+74951234567"),
    ("0441234567", "RU", None),  # a Ukrainian national number means nothing in Russia
    ("810380441234567", "RU", "+380441234567"),  # dialled abroad from Russia
    ("00380441234567", "DE", "+380441234567"),
    ("011 380 44 123 4567", "US", "+380441234567"),
])
def test_the_default_region_only_matters_for_national_forms(raw: str, region: str, e164: str | None) -> None:
    assert normalize(raw, region) == e164


@pytest.mark.parametrize("raw", [
    None, "", "   ", "anonymous", "Anonymous", "ANONYMOUS", "withheld", "Withheld", "<unknown>", "unknown",
    "restricted", "private", "unavailable", "s", "0", "000", '"Anonymous" ',
    "sip:anonymous@anonymous.invalid",
])
def test_anonymous_withheld_and_empty_never_match(raw: str | None) -> None:
    assert is_anonymous(raw)
    assert normalize(raw) is None
    caller = classify(raw)
    assert (caller.kind, caller.e164, caller.matchable) == ("anonymous", None, False)


@pytest.mark.parametrize("raw", ["101", "102", "999", "1001", "2050"])
def test_three_and_four_digit_numbers_are_colleagues(raw: str) -> None:
    caller = classify(raw)
    assert (caller.kind, caller.extension, caller.e164, caller.matchable) == ("colleague", raw, None, False)


def test_extension_lengths_are_configurable() -> None:
    assert classify("10", min_extension_digits=2).kind == "colleague"
    assert classify("10001", max_extension_digits=5).kind == "colleague"
    assert classify("1001", max_extension_digits=3).kind == "invalid"


@pytest.mark.parametrize("raw", ["12", "12345", "123-456", "8 (495) 123", "+7 495 123-45-67-89-00", "abc1"])
def test_numbers_that_cannot_be_a_phone_are_invalid(raw: str) -> None:
    caller = classify(raw, "RU")
    assert (caller.kind, caller.e164) == ("invalid", None)


@pytest.mark.parametrize(("e164", "forms"), [
    ("+74951234567", ["+74951234567", "74951234567", "4951234567", "84951234567", "0074951234567"]),
    ("+380441234567", ["+380441234567", "380441234567", "441234567", "0441234567", "00380441234567"]),
    ("+493012345678", ["+493012345678", "493012345678", "3012345678", "03012345678", "00493012345678"]),
    ("+12125550123", ["+12125550123", "12125550123", "2125550123", "0012125550123"]),
])
def test_national_variants_list_the_forms_a_log_may_hold(e164: str, forms: list[str]) -> None:
    assert national_variants(e164) == forms
