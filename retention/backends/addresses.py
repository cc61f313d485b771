"""Exactly the textual IPv4 and IPv6 forms, as regular expressions for SQL.

PostgreSQL's ``::inet`` cast fails the whole UPDATE on anything else, and MySQL's
``INET6_ATON`` is lenient, so address-like garbage must not reach either.
"""

from __future__ import annotations

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_DOTTED = _OCTET + r"(\." + _OCTET + "){3}"


def _ipv6_pattern() -> str:
    """The textual IPv6 forms of RFC 4291 section 2.2."""
    h = "[0-9A-Fa-f]{1,4}"
    forms = [f"({h}:){{7}}{h}", f"({h}:){{6}}{_DOTTED}"]
    for left in range(8):  # groups before '::', which stands for at least one
        room = 7 - left
        head = f"({h}:){{{left - 1}}}{h}" if left else ""
        tails = [f"{h}(:{h}){{0,{room - 1}}}"] if room else []
        if room >= 2:
            tails.append(f"({h}:){{0,{room - 2}}}{_DOTTED}")
        forms.append(f"{head}::" + (f"({'|'.join(tails)})?" if tails else ""))
    return "^(" + "|".join(forms) + ")$"


IPV4 = f"^{_DOTTED}$"
IPV6 = _ipv6_pattern()
