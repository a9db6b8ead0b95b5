"""The OutputStore contract, run against every backend (file://, memory://, s3://)."""

from __future__ import annotations

from collections.abc import Iterator

import blake3
import pytest

from comfyfarm.storage import ObjectNotFound, OutputStore, StoredObject, UnsafeKey


def test_write_then_read(store: OutputStore) -> None:
    """Chunks written under a key read back as the same bytes, with size and BLAKE3 digest."""
    stored = store.write("job/9_0_out.png", [b"hello ", b"world"], content_type="image/png")
    assert stored == StoredObject(
        key="job/9_0_out.png",
        uri=store.uri("job/9_0_out.png"),
        bytes=11,
        hash="blake3:" + blake3.blake3(b"hello world").hexdigest(),
    )
    assert store.read_bytes("job/9_0_out.png") == b"hello world"
    with store.open_read("job/9_0_out.png") as stream:
        assert stream.read(5) == b"hello"
        assert stream.read() == b" world"
    assert store.exists("job/9_0_out.png")


def test_write_bytes_and_empty_objects(store: OutputStore) -> None:
    """write_bytes stores one buffer; an empty object is a valid object."""
    assert store.write_bytes("a/result.json", b'{"ok": true}').bytes == 12
    empty = store.write("a/empty.txt", [])
    assert empty.bytes == 0 and empty.hash == "blake3:" + blake3.blake3(b"").hexdigest()
    assert store.read_bytes("a/empty.txt") == b""


def test_rewrite_is_idempotent(store: OutputStore) -> None:
    """Writing the same key twice leaves one object with the latest content."""
    first = store.write_bytes("job/x.bin", b"same")
    second = store.write_bytes("job/x.bin", b"same")
    assert first == second
    store.write_bytes("job/x.bin", b"newer")
    assert store.read_bytes("job/x.bin") == b"newer"


def test_failed_write_leaves_nothing(store: OutputStore) -> None:
    """A chunk iterator that fails part-way leaves no object under the key."""

    def chunks() -> Iterator[bytes]:
        yield b"partial data"
        raise ConnectionResetError("ComfyUI went away mid-download")

    with pytest.raises(ConnectionResetError):
        store.write("job/broken.png", chunks())
    assert not store.exists("job/broken.png")
    with pytest.raises(ObjectNotFound):
        store.read_bytes("job/broken.png")


def test_failed_rewrite_keeps_the_old_object(store: OutputStore) -> None:
    """A failed rewrite does not disturb the complete object already there."""
    store.write_bytes("job/keep.png", b"complete")

    def chunks() -> Iterator[bytes]:
        yield b"half"
        raise OSError("boom")

    with pytest.raises(OSError):
        store.write("job/keep.png", chunks())
    assert store.read_bytes("job/keep.png") == b"complete"


def test_missing_keys(store: OutputStore) -> None:
    """Reading a missing key raises ObjectNotFound; exists says False; delete is a no-op."""
    assert not store.exists("nothing/here")
    with pytest.raises(ObjectNotFound):
        store.open_read("nothing/here")
    store.delete("nothing/here")


def test_delete(store: OutputStore) -> None:
    """A deleted object is gone."""
    store.write_bytes("job/gone.txt", b"x")
    store.delete("job/gone.txt")
    assert not store.exists("job/gone.txt")


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside", "a/../../b", "a//b", "a/./b", "a\\..\\b", "a\x00b",
     "trailing/", "a/.comfyfarm-tmp-x"],
)  # fmt: skip
def test_unsafe_keys_are_refused(store: OutputStore, key: str) -> None:
    """Absolute, dot-dot, empty-part, backslash and NUL keys raise UnsafeKey everywhere."""
    with pytest.raises(UnsafeKey):
        store.write_bytes(key, b"x")
    with pytest.raises(UnsafeKey):
        store.read_bytes(key)
    with pytest.raises(UnsafeKey):
        store.exists(key)
    with pytest.raises(UnsafeKey):
        store.delete(key)


def test_non_bytes_chunks_are_refused(store: OutputStore) -> None:
    """Chunks must be bytes; a str chunk fails and nothing is stored."""
    with pytest.raises(TypeError):
        store.write("job/text.txt", ["not bytes"])  # type: ignore[list-item]
    assert not store.exists("job/text.txt")


def test_uri_names_the_backend(store: OutputStore) -> None:
    """uri() starts with the store's scheme and ends with the key."""
    uri = store.uri("job/9_0_out.png")
    assert uri.split("://")[0] == store.url.split("://")[0]
    assert uri.endswith("job/9_0_out.png")
