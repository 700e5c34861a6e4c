"""Signal names and numbers: the one parser of ``"SIGTERM"``, ``"term"``, ``"15"`` or ``15``."""

from __future__ import annotations

import signal

from pylxcore.errors import SpecError


def signal_number(sig: int | str) -> int:
    """The number of signal ``sig``: a number (int or digits) this host knows,
    or a name with or without ``SIG``, in any case ("SIGTERM", "term").
    Raises SpecError (key "signal") naming a signal this host does not have."""
    if isinstance(sig, bool) or not isinstance(sig, (int, str)):
        raise SpecError(f"expected a signal name or number, got {sig!r}", key="signal")
    if isinstance(sig, str) and not (sig.isascii() and sig.isdigit()):  # ("²".isdigit() too)
        name = sig.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        # Signals' members are the signals alone: no SIG_DFL, SIG_IGN or SIG_BLOCK.
        member = signal.Signals.__members__.get(name)
        if member is None:
            raise SpecError(f"unknown signal {sig!r}", key="signal")
        return int(member)
    number = int(sig)
    if number not in {int(s) for s in signal.valid_signals()}:
        raise SpecError(f"unknown signal {sig!r}", key="signal")
    return number
