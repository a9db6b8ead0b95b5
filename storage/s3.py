"""``s3://bucket/prefix`` store (AWS S3 or any S3-compatible server), via boto3.

URL: ``s3://BUCKET[/PREFIX][?endpoint_url=URL&region=NAME&addressing_style=path|virtual]``.
Without query values the endpoint comes from ``COMFYFARM_S3_ENDPOINT_URL`` (else boto3's own
``AWS_ENDPOINT_URL*``), the region from ``COMFYFARM_S3_REGION``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``. Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, profiles, instance roles) — never from the URL.

Writes stream: data smaller than one part (8 MiB) goes up in one PUT; larger data as a multipart
upload, one part in memory at a time. Either is atomic: S3 shows nothing under the key until the
PUT or the multipart ``complete`` succeeds, and a failed multipart upload is aborted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from comfyfarm.storage.base import (
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    StoreBase,
    StoredObject,
)
from comfyfarm.storage.digests import DEFAULT_DIGEST, Digest, check_algorithm
from comfyfarm.storage.keys import check_key

PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
READ_BUFFER = 1024 * 1024
_RETRYABLE_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
     "RequestTimeTooSkewed"}
)  # fmt: skip
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# The worker's bucket or credentials, not the job: another worker's store may take the outputs
# (and this worker's store probe stops it consuming, ``worker.store_health``).
_WORKER_STORE_CODES = frozenset(
    {"AccessDenied", "AllAccessDisabled", "NoSuchBucket", "InvalidAccessKeyId",
     "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AccountProblem"}
)  # fmt: skip


class S3Store(StoreBase):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str | None = None,
        part_size: int = PART_SIZE,
        digest: str = DEFAULT_DIGEST,
    ) -> None:
        if not bucket:
            raise ValueError("an s3:// URL needs a bucket: s3://BUCKET[/PREFIX]")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.part_size = part_size
        self.digest = check_algorithm(digest)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                connect_timeout=10,
                read_timeout=120,
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": addressing_style} if addressing_style else None,
                # S3-compatible servers often reject the newer default checksum headers.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    @classmethod
    def from_url(
        cls, url: str, *, environ: Mapping[str, str] | None = None, digest: str = DEFAULT_DIGEST
    ) -> S3Store:
        """Build from ``s3://bucket/prefix?endpoint_url=..&region=..``; env read now."""
        env = os.environ if environ is None else environ
        parts = urlsplit(url)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        endpoint = query.get("endpoint_url") or env.get("COMFYFARM_S3_ENDPOINT_URL") or None
        region = (
            query.get("region")
            or env.get("COMFYFARM_S3_REGION")
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
            or None
        )
        return cls(
            parts.netloc,
            parts.path,
            endpoint_url=endpoint,
            region=region,
            addressing_style=query.get("addressing_style"),
            digest=digest,
        )

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- writing ----------------------------------------------------------------------------
    def write(
        self, key: str, chunks: Iterable[bytes], *, content_type: str | None = None
    ) -> StoredObject:
        name = self.object_key(key)
        digest = Digest(self.digest)
        extra = {"ContentType": content_type} if content_type else {}
        parts = _parts(chunks, digest, self.part_size)
        first, last = next(parts)
        if last:  # small: one PUT
            self._call(key, self.client.put_object, Bucket=self.bucket, Key=name, Body=first,
                       **extra)  # fmt: skip
        else:
            head = [first]
            del first  # only one part in memory at a time: the list hands it over, then drops it
            self._multipart(key, name, head, parts, extra)
        return StoredObject(key=key, uri=self.uri(key), bytes=digest.bytes, hash=digest.hash)

    def _multipart(
        self,
        key: str,
        name: str,
        head: list[bytes],
        rest: Iterator[tuple[bytes, bool]],
        extra: dict[str, str],
    ) -> None:
        upload = self._call(key, self.client.create_multipart_upload, Bucket=self.bucket,
                            Key=name, **extra)  # fmt: skip
        upload_id = upload["UploadId"]
        try:
            done: list[dict[str, Any]] = []
            bodies = _bodies(head, rest)
            # Not enumerate(): it keeps the previous item alive while fetching the next part.
            for body in bodies:
                number = len(done) + 1
                answer = self._call(key, self.client.upload_part, Bucket=self.bucket, Key=name,
                                    UploadId=upload_id, PartNumber=number, Body=body)  # fmt: skip
                del body
                done.append({"ETag": answer["ETag"], "PartNumber": number})
            self._call(key, self.client.complete_multipart_upload, Bucket=self.bucket, Key=name,
                       UploadId=upload_id, MultipartUpload={"Parts": done})  # fmt: skip
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name,
                                                   UploadId=upload_id)  # fmt: skip
            except (BotoCoreError, ClientError):
                pass  # bucket lifecycle rules clean up what an abort could not
            raise

    # -- reading ----------------------------------------------------------------------------
    def open_read(self, key: str, *, offset: int = 0) -> BinaryIO:
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        answer = self._call(key, self.client.get_object, Bucket=self.bucket,
                            Key=self.object_key(key), **ranged)  # fmt: skip
        return io.BufferedReader(_BodyReader(key, answer["Body"]), buffer_size=READ_BUFFER)

    def exists(self, key: str) -> bool:
        try:
            self._call(key, self.client.head_object, Bucket=self.bucket, Key=self.object_key(key))
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        answer = self._call(key, self.client.head_object, Bucket=self.bucket,
                            Key=self.object_key(key))  # fmt: skip
        return int(answer["ContentLength"])

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        self._call(key, self.client.delete_object, Bucket=self.bucket, Key=self.object_key(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def presigned_url(self, key: str, *, expires_seconds: int) -> str:
        """A signed HTTPS URL that GETs ``key`` for ``expires_seconds`` (no request is made)."""
        return str(
            self._call(key, self.client.generate_presigned_url, ClientMethod="get_object",
                       Params={"Bucket": self.bucket, "Key": self.object_key(key)},
                       ExpiresIn=expires_seconds)
        )  # fmt: skip

    def _call(self, key: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise s3_error(key, exc) from exc


def s3_error(key: str, exc: Exception) -> StorageError:
    """The StorageError for a boto error: 5xx, throttling, connection errors and the worker's
    own bucket or credentials refusing it (403, no such bucket, no credentials) are
    retryable."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        reason = f"S3 {code or status}: {error.get('Message', '')}".strip()
        if code in _WORKER_STORE_CODES:
            return StorageUnavailable(key=key, reason=reason)
        if code in _MISSING_CODES or status == 404:
            return ObjectNotFound(key=key, reason=reason)
        if status >= 500 or code in _RETRYABLE_CODES:
            return StorageUnavailable(key=key, reason=reason)
        return StorageError(key=key, reason=reason)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageUnavailable(key=key, reason=str(exc))  # this worker's configuration
    if isinstance(exc, ParamValidationError):
        return StorageError(key=key, reason=str(exc))
    return StorageUnavailable(key=key, reason=str(exc))  # connection, timeout, broken stream


def _parts(chunks: Iterable[bytes], digest: Digest, part_size: int) -> Iterator[tuple[bytes, bool]]:
    """(part, is_last): the stream cut into parts of exactly ``part_size`` bytes (the last may be
    smaller). Chunks are copied into one preallocated buffer per part, so about one part is in
    memory at a time; one chunk of look-ahead tells whether a part is the last one."""
    source = iter(chunks)
    upcoming = next(source, None)
    if upcoming is None:
        yield b"", True
        return
    part: bytearray | None = None
    filled = 0
    while upcoming is not None:
        digest.update(upcoming)
        view = memoryview(upcoming).cast("B")
        upcoming = next(source, None)
        offset = 0
        while offset < len(view):
            if part is None:
                part, filled = bytearray(part_size), 0
            take = min(part_size - filled, len(view) - offset)
            part[filled : filled + take] = view[offset : offset + take]
            filled += take
            offset += take
            if filled == part_size:
                yield part, offset == len(view) and upcoming is None  # type: ignore[misc]
                part = None  # drop it before the next part is allocated
    if part is not None:
        del part[filled:]  # shrink in place
        yield part, True  # type: ignore[misc]  # bytearray is bytes-like for boto3


def _bodies(head: list[bytes], rest: Iterator[tuple[bytes, bool]]) -> Iterator[bytes]:
    """The part bodies, holding no reference to a part once it has been handed out."""
    yield head.pop()
    for item in rest:
        part = item[0]
        del item
        yield part
        del part


class _BodyReader(io.RawIOBase):
    """A botocore StreamingBody as a raw binary stream; read errors become StorageUnavailable."""

    def __init__(self, key: str, body: Any) -> None:
        self._key = key
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as exc:
            raise StorageUnavailable(key=self._key, reason=f"read failed: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._body.close()
        finally:
            super().close()
