"""`tether.errors.fingerprint`: the dead-letter queue's grouping key. Numbers, UUIDs,
addresses and ids holding digits are masked (one group); the error type, the step and
the words of the message are not (another group)."""

from __future__ import annotations

from tether.errors import fingerprint


def test_numbers_and_ids_in_one_message_are_one_group() -> None:
    messages = [
        "card declined for order-8812 (cus_N5fr2Hib, 12.50 EUR) after 3 tries",
        "card declined for order-17 (cus_Q9aa1, 7 EUR) after 11 tries",
        "card declined for order-0192f1c2 (cus_x0y, 0.0 EUR) after 1 tries",
    ]
    assert len({fingerprint("Permanent", m, "charge") for m in messages}) == 1
    uuids = [
        "task 0192f1c2-5a7b-7c3d-8e9f-0123456789ab lost at 0x7ffe12 on port 5432",
        "task 01a23cbc-a059-76b4-beb8-243b77526303 lost at 0xdeadbeef on port 6543",
    ]
    assert len({fingerprint("WorkerLost", m, None) for m in uuids}) == 1


def test_another_step_type_or_wording_is_another_group() -> None:
    base = fingerprint("Permanent", "card declined for order 1", "charge")
    assert fingerprint("Permanent", "card declined for order 2", "refund") != base
    assert fingerprint("ValueError", "card declined for order 3", "charge") != base
    assert fingerprint("Permanent", "card expired for order 4", "charge") != base
    assert fingerprint("Permanent", "card declined for order 5", None) != base
    assert fingerprint("Permanent", "card declined for order 6", "charge") == base


def test_a_fingerprint_is_short_hex_and_stable() -> None:
    fp = fingerprint("Permanent", "boom 1", "s")
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == fingerprint("Permanent", "boom 99", "s")
