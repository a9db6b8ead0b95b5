"""Which listen addresses stay on this machine: every network-facing service of the farm (Flower,
the gateway, metrics endpoints) refuses to bind anything else without its credentials."""

from __future__ import annotations

import ipaddress


def is_loopback(address: str) -> bool:
    """True for ``localhost`` and loopback IPs; False for ``0.0.0.0``, ``""`` and host names."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
