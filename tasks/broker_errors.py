"""Why the broker cannot be reached, in words an operator can act on.

redis-py's ``MasterNotFoundError`` ("No master found for 'farm' : …") lists each sentinel it
asked by the ``repr`` of a whole client — about 1,500 characters of connection options per
sentinel — before the reason. ``describe_broker_error`` keeps what matters: the master's name,
each sentinel's address and its reason (once, when every sentinel says the same), and a hint for
the two TLS mistakes (a wrong CA; plain TCP to sentinels that speak only TLS). Every other error
is left as it is.
"""

from __future__ import annotations

import re

# One "<redis.client.Redis(<...host=H,port=P,...)>)>)> - network:ConnectionError: REASON" entry.
_SENTINEL = re.compile(
    r"<redis\.client\.Redis\(.*?host=(?P<host>[^,]+),port=(?P<port>\d+).*?\)>\)>\)>"
    r" - (?:\w+:)?\w+: (?P<reason>.*?)(?=, <redis\.client\.Redis\(|$)"
)
_MASTER = re.compile(r"^No master found for (?P<name>'[^']*')")
# "Error 1 connecting to 127.0.0.1:26379. " / "Error while reading from 127.0.0.1:26379 : "
_WHERE = re.compile(r"^Error (?:\d+ connecting to|while reading from) \S+?(?:\. | : )")
MAX_REASON = 300


def describe_broker_error(exc: BaseException) -> str:
    """One line for ``exc``: a sentinel's "no master found" summarised, else ``str(exc)``."""
    text = str(exc)
    master = _MASTER.match(text)
    entries = list(_SENTINEL.finditer(text))
    if master is None or not entries:
        return text
    reasons = {
        f"{entry['host']}:{entry['port']}": _WHERE.sub("", entry["reason"]).rstrip(".")[:MAX_REASON]
        for entry in entries
    }
    distinct = set(reasons.values())
    if len(distinct) == 1:
        said = f"every sentinel ({', '.join(reasons)}): {distinct.pop()}"
    else:
        said = "; ".join(f"{where}: {reason}" for where, reason in reasons.items())
    return f"no sentinel named a master for {master['name']}: {said}{_hint(text)}"


def _hint(text: str) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return " (is COMFYFARM_REDIS_CA_FILE the CA that signed the sentinels' certificates?)"
    if "Connection reset by peer" in text and "SSLConnection" not in text:
        return " (sentinels that speak only TLS need COMFYFARM_SENTINEL_TLS=1)"
    return ""
