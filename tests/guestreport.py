"""A guest's report of one item (guest/protocol.py ItemReport) with only the fields a
test cares about; the rest as a guest that ran nothing would say them."""

from guest.protocol import ItemReport


def guest_report(**fields) -> ItemReport:
    base = {
        "id": "x",
        "scenario": "x",
        "repetition": 0,
        "seed": 0,
        "cycles_done": 0,
        "cycles": 0,
        "error": None,
        "violations": [],
        "workers": {},
        "actions": [],
        "needs_reboot": False,
    }
    return ItemReport(**{**base, **fields})
