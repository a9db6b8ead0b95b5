"""Where a client fetches an asset's bytes: a presigned S3 URL, or the gateway's content route.

Where the farm's store can sign (``s3://``) and ``COMFYFARM_GATEWAY_PRESIGN_SECONDS`` is above 0
(default 3600), the ``url`` of an Asset and of an Output is a presigned GET URL of its object,
valid that long (``url_expires_at``), and ``GET /assets/{id}/content`` answers ``302`` to a fresh
one — what the contract describes for Cloud: the bytes go from S3 to the client, not through the
gateway, and the client sends its token to the gateway only (HTTP clients drop it on a redirect
to another origin). Signing is local: no request to S3. Otherwise — a ``file://`` or
``memory://`` store, signing off (``0``: for S3 endpoints clients cannot reach), a value output
with no object — the url is the gateway's own content route, which needs the caller's token.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from comfyfarm.gateway.content import key_of
from comfyfarm.gateway.job_view import API
from comfyfarm.storage import OutputStore


class ContentLinks:
    """Builds content URLs for one store with one signing lifetime."""

    def __init__(self, store: OutputStore, *, presign_seconds: int) -> None:
        self._store = store
        self.presign_seconds = presign_seconds
        presign = getattr(store, "presigned_url", None) if presign_seconds > 0 else None
        self._presign: Callable[..., str] | None = presign

    def presigned(self, uri: str | None) -> tuple[str, float] | None:
        """(signed URL, when it stops working) for an object of the store; None when the
        store cannot sign, signing is off, or ``uri`` is not one of its objects."""
        if self._presign is None or uri is None:
            return None
        key = key_of(self._store, uri)
        if key is None:
            return None
        url = self._presign(key, expires_seconds=self.presign_seconds)
        return str(url), time.time() + self.presign_seconds

    def link(
        self, asset_id: str, uri: str | None, origin: str, expires: float
    ) -> tuple[str, float]:
        """(url, url_expires_at) of an asset: signed where possible, else the gateway's route
        (valid until ``expires``)."""
        signed = self.presigned(uri)
        if signed is not None:
            return signed
        return f"{origin}{API}/assets/{asset_id}/content", expires
