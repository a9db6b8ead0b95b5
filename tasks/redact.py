"""``redact_url``: the one helper that takes credentials out of a URL before it is shown or stored.

A URL such as ``--comfy-url http://user:pw@host`` must reach the HTTP client as it is, but never
a result (``comfy_url``), Redis (results, worker registry, submission ledger, published schemas),
``comfyfarm status``, a log line, an error message or a webhook. Every edge that shows or keeps
a URL passes it through ``redact_url``; a worker that must *contact* a ComfyUI it only knows by
its redacted URL (the ledger says another ComfyUI has the prompt) gets the password back from
its own URL with ``restore_credentials`` when the user name matches (farms behind one proxy
share it).
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

MASK = "***"
#: Separator of the sentinel addresses in a broker URL (Celery's): sentinel://h1:26379;sentinel://h2
SENTINEL_SEP = ";"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (a user name alone, often a token, too);
    each address of a ``sentinel://…;sentinel://…`` list on its own."""
    if SENTINEL_SEP in url:
        return SENTINEL_SEP.join(redact_url(part) for part in url.split(SENTINEL_SEP))
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        user = parts.username or ""
        secret = f"{user}:{MASK}" if parts.password is not None else MASK
        return urlunsplit(parts._replace(netloc=f"{secret}@{_host_port(parts)}"))
    except ValueError:
        return "<unparseable URL>"


def restore_credentials(redacted: str, own: str) -> str:
    """``redacted`` with the password of ``own`` put back, when ``redacted`` was masked and
    names the same user; else ``redacted`` unchanged."""
    try:
        parts, mine = urlsplit(redacted), urlsplit(own)
        if parts.password != MASK or mine.password is None or parts.username != mine.username:
            return redacted
        netloc = f"{mine.username or ''}:{mine.password}@{_host_port(parts)}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return redacted


def _host_port(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host
