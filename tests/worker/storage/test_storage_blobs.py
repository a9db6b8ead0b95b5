"""Content-addressed blobs and asset records, against every backend (file://, memory://, s3://)."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import blake3
import pytest

from comfyfarm.storage import LocalStore, MemoryStore, OutputStore, UnsafeKey
from comfyfarm.storage.asset_records import AssetRecord, RecordError, record_key
from comfyfarm.storage.blobs import (
    SPOOL_DIR,
    Blob,
    BlobError,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    HashMismatch,
    InvalidDigest,
    blob_key,
)

MiB = 1 << 20


def b3(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def upload(blobs: BlobStore, tenant: str, *chunks: bytes) -> tuple[Blob, bool]:
    writer = blobs.begin(tenant)
    for chunk in chunks:
        writer.write(chunk)
    return writer.commit()


def test_upload_is_stored_under_its_blake3_digest(store: OutputStore) -> None:
    """A streamed upload lands under blobs/<tenant>/<hex[:2]>/<hex> with its BLAKE3 and size."""
    blobs = BlobStore(store, max_bytes=MiB)
    blob, created = upload(blobs, "acme", b"hello ", b"world")
    digest = b3(b"hello world")
    hexdigest = digest.split(":")[1]
    assert created
    assert blob == Blob(digest=digest, size=11, key=f"blobs/acme/{hexdigest[:2]}/{hexdigest}")
    with blobs.open_read(blob) as stream:
        assert stream.read() == b"hello world"
    assert blobs.uri(blob) == store.uri(blob.key)


def test_same_bytes_again_are_deduplicated(store: OutputStore) -> None:
    """Uploading bytes the tenant already has reports created_new False and finds one blob."""
    blobs = BlobStore(store, max_bytes=MiB)
    first, created_first = upload(blobs, "acme", b"pixels")
    again, created_again = upload(blobs, "acme", b"pix", b"els")
    assert (created_first, created_again) == (True, False)
    assert again == first
    assert blobs.find("acme", first.digest) == first


def test_blobs_are_per_tenant(store: OutputStore) -> None:
    """Another tenant neither finds a tenant's blob nor deduplicates against it."""
    blobs = BlobStore(store, max_bytes=MiB)
    mine, _ = upload(blobs, "acme", b"secret")
    assert blobs.find("globex", mine.digest) is None
    theirs, created = upload(blobs, "globex", b"secret")
    assert created and theirs.key != mine.key and theirs.digest == mine.digest


def test_find_misses_unknown_and_malformed_digests(store: OutputStore) -> None:
    """find returns None for an unknown digest and for anything not blake3:<64 hex>."""
    blobs = BlobStore(store, max_bytes=MiB)
    assert blobs.find("acme", b3(b"never uploaded")) is None
    for bad in ("", "blake3:", "sha256:" + "0" * 64, "blake3:" + "A" * 64, "blake3:../../x"):
        assert blobs.find("acme", bad) is None


def test_upload_over_the_cap_is_refused_while_writing(store: OutputStore) -> None:
    """The chunk that passes max_bytes raises BlobTooLarge; nothing is stored, the writer closed."""
    blobs = BlobStore(store, max_bytes=10)
    writer = blobs.begin("acme")
    writer.write(b"0123456789")  # exactly the cap is fine
    with pytest.raises(BlobTooLarge) as caught:
        writer.write(b"x")
    assert caught.value.limit == 10 and "10-byte limit" in str(caught.value)
    assert writer.closed
    with pytest.raises(BlobError, match="already committed or aborted"):
        writer.commit()
    assert blobs.find("acme", b3(b"0123456789")) is None


def test_expected_digest_is_verified(store: OutputStore) -> None:
    """A wrong expected digest raises HashMismatch with both digests and stores nothing."""
    blobs = BlobStore(store, max_bytes=MiB)
    writer = blobs.begin("acme")
    writer.write(b"real bytes")
    wrong = b3(b"other bytes")
    with pytest.raises(HashMismatch) as caught:
        writer.commit(wrong)
    assert (caught.value.expected, caught.value.actual) == (wrong, b3(b"real bytes"))
    assert blobs.find("acme", b3(b"real bytes")) is None
    right = blobs.begin("acme")
    right.write(b"real bytes")
    assert right.commit(b3(b"real bytes"))[0].digest == b3(b"real bytes")


def test_malformed_expected_digest_is_an_invalid_digest(store: OutputStore) -> None:
    """An expected digest that is not blake3:<64 hex> raises InvalidDigest (a HashMismatch)."""
    blobs = BlobStore(store, max_bytes=MiB)
    writer = blobs.begin("acme")
    writer.write(b"x")
    with pytest.raises(InvalidDigest, match="not blake3"):
        writer.commit("sha256:" + "0" * 64)


def test_context_manager_aborts_an_unfinished_upload(tmp_path: Path) -> None:
    """Leaving the with-block without commit drops the spool file."""
    spool = tmp_path / "spool"
    spool.mkdir()
    blobs = BlobStore(MemoryStore("blobs-abort"), max_bytes=MiB, spool_dir=str(spool))
    with pytest.raises(RuntimeError), blobs.begin("acme") as writer:
        writer.write(b"half an upload")
        assert len(list(spool.iterdir())) == 1
        raise RuntimeError("client went away")
    assert list(spool.iterdir()) == []


def test_file_store_commits_by_rename_and_leaves_no_spool(tmp_path: Path) -> None:
    """On file:// the spool lives in the store root and commit renames it into place."""
    store = LocalStore(tmp_path / "root")
    blobs = BlobStore(store, max_bytes=MiB)
    writer = blobs.begin("acme")
    writer.write(b"abc")
    spooled = list((tmp_path / "root" / SPOOL_DIR).iterdir())
    assert len(spooled) == 1
    inode = spooled[0].stat().st_ino
    blob, _ = writer.commit()
    assert store.path(blob.key).stat().st_ino == inode  # the same file, renamed
    assert list((tmp_path / "root" / SPOOL_DIR).iterdir()) == []


def test_upload_is_never_whole_in_memory(tmp_path: Path) -> None:
    """A 32 MiB upload in 1 MiB chunks peaks at a few MiB of Python memory."""
    blobs = BlobStore(LocalStore(tmp_path / "root"), max_bytes=64 * MiB)
    chunk = os.urandom(MiB)
    tracemalloc.start()
    try:
        writer = blobs.begin("acme")
        for _ in range(32):
            writer.write(chunk)
        blob, _ = writer.commit()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert blob.size == 32 * MiB
    assert peak < 4 * MiB, peak


def test_bad_tenants_are_refused(store: OutputStore) -> None:
    """Tenants that are not a plain safe path part raise UnsafeKey before anything is touched."""
    blobs = BlobStore(store, max_bytes=MiB)
    for bad in ("", "..", ".hidden", "a/b", "a\\b", "x" * 65, "tab\t", "-dash"):
        with pytest.raises(UnsafeKey):
            blobs.begin(bad)
        with pytest.raises(UnsafeKey):
            blobs.find(bad, b3(b""))


def test_blob_key_refuses_malformed_digests() -> None:
    """blob_key accepts only blake3:<64 lowercase hex>."""
    with pytest.raises(InvalidDigest):
        blob_key("acme", "blake3:" + "g" * 64)


def test_missing_blob_bytes_raise_blob_not_found(store: OutputStore) -> None:
    """Reading a blob whose object is gone raises BlobNotFound."""
    blobs = BlobStore(store, max_bytes=MiB)
    blob, _ = upload(blobs, "acme", b"gone soon")
    store.delete(blob.key)
    with pytest.raises(BlobNotFound):
        blobs.open_read(blob)


def test_asset_records_round_trip_per_tenant(store: OutputStore) -> None:
    """create_asset mints a UUID record; get_asset returns it to its tenant only."""
    blobs = BlobStore(store, max_bytes=MiB)
    blob, _ = upload(blobs, "acme", b"\x89PNG...")
    asset = blobs.create_asset(
        "acme", blob, name="photo.png", mime_type="image/png", metadata={"tags": ["input"]}
    )
    assert len(asset.id) == 36 and asset.id.count("-") == 4
    assert (asset.digest, asset.size, asset.key) == (blob.digest, blob.size, blob.key)
    assert (asset.name, asset.mime_type, asset.metadata) == ("photo.png", "image/png",
                                                            {"tags": ["input"]})  # fmt: skip
    assert blobs.get_asset("acme", asset.id) == asset
    assert blobs.get_asset("globex", asset.id) is None
    assert blobs.blob_of(asset) == blob
    stored = json.loads(store.read_bytes(record_key("acme", asset.id)))
    assert stored["id"] == asset.id and stored["tenant"] == "acme"


def test_two_assets_over_one_blob_are_distinct(store: OutputStore) -> None:
    """Minting twice over the same blob gives two ids; deleting one keeps the other's bytes."""
    blobs = BlobStore(store, max_bytes=MiB)
    blob, _ = upload(blobs, "acme", b"shared")
    first = blobs.create_asset("acme", blob, name="a.png", mime_type="image/png", metadata={})
    second = blobs.create_asset("acme", blob, name="b.png", mime_type="image/png", metadata={})
    assert first.id != second.id
    assert blobs.delete_asset("acme", first.id)
    assert blobs.get_asset("acme", first.id) is None
    with blobs.open_read(blobs.blob_of(second)) as stream:
        assert stream.read() == b"shared"


def test_delete_asset_is_false_for_unknown_foreign_and_repeated(store: OutputStore) -> None:
    """delete_asset is False for another tenant's asset, a second delete, and junk ids."""
    blobs = BlobStore(store, max_bytes=MiB)
    blob, _ = upload(blobs, "acme", b"x")
    asset = blobs.create_asset("acme", blob, name="x.bin", mime_type="", metadata={})
    assert not blobs.delete_asset("globex", asset.id)
    assert blobs.delete_asset("acme", asset.id)
    assert not blobs.delete_asset("acme", asset.id)
    for junk in ("", "../../etc/passwd", asset.id.upper(), "asset_123"):
        assert not blobs.delete_asset("acme", junk)
        assert blobs.get_asset("acme", junk) is None


def test_asset_fields_are_checked(store: OutputStore) -> None:
    """Bad names, MIME types and metadata raise RecordError naming the field; nothing stored."""
    blobs = BlobStore(store, max_bytes=MiB)
    blob, _ = upload(blobs, "acme", b"x")
    cases = [
        ({"name": "a\nb", "mime_type": "", "metadata": {}}, "name"),
        ({"name": "x" * 1025, "mime_type": "", "metadata": {}}, "name"),
        ({"name": "a", "mime_type": "m" * 256, "metadata": {}}, "mime_type"),
        ({"name": "a", "mime_type": "", "metadata": {"n": float("nan")}}, "metadata"),
        ({"name": "a", "mime_type": "", "metadata": {"big": "x" * 20_000}}, "metadata"),
    ]
    for kwargs, field_name in cases:
        with pytest.raises(RecordError) as caught:
            blobs.create_asset("acme", blob, **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field_name


def test_tampered_or_foreign_records_read_as_absent(tmp_path: Path) -> None:
    """A record that is not JSON, too big, or names another tenant reads as no asset."""
    store = LocalStore(tmp_path / "root")
    blobs = BlobStore(store, max_bytes=MiB)
    blob, _ = upload(blobs, "acme", b"x")
    asset = blobs.create_asset("acme", blob, name="x", mime_type="", metadata={})
    key = record_key("acme", asset.id)
    store.write_bytes(key, b"not json")
    assert blobs.get_asset("acme", asset.id) is None
    store.write_bytes(key, b" " * (70 * 1024))
    assert blobs.get_asset("acme", asset.id) is None
    foreign = AssetRecord.from_dict({**asset.to_dict(), "tenant": "globex"})
    store.write_bytes(key, foreign.to_json())
    assert blobs.get_asset("acme", asset.id) is None


def test_max_bytes_must_be_positive() -> None:
    """A BlobStore needs a positive integer cap."""
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_bytes"):
            BlobStore(MemoryStore("blobs-cap"), max_bytes=bad)  # type: ignore[arg-type]
