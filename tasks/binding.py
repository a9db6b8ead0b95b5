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


def open_metrics_refusal(host: str, token: str | None) -> str | None:
    """Why metrics on ``host`` may not be served without ``token`` (None when they may)."""
    if token is not None or is_loopback(host):
        return None
    return (
        f"metrics on {host} would be open to the network: set COMFYFARM_METRICS_TOKEN "
        "(scrapers send it as a Bearer token) or use 127.0.0.1"
    )
