"""Store keys: validation and the job output layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyfarm.storage import LocalStore, MemoryStore, UnsafeKey, open_store
from comfyfarm.storage.keys import check_key, job_output_key, result_key

JOB = "8f14e45f-ceea-467a-9575-8a2b1c3d4e5f"


def test_output_layout() -> None:
    """Outputs go to <prefix>/<job_id>/<node>_<index>_<filename>, result.json beside them."""
    assert job_output_key("renders", JOB, "9", 0, "ComfyUI_00001_.png") == (
        f"renders/{JOB}/9_0_ComfyUI_00001_.png"
    )
    assert result_key("renders/2026", JOB) == f"renders/2026/{JOB}/result.json"
    assert job_output_key("", JOB, "10:3", 2, "a.webp") == f"{JOB}/10:3_2_a.webp"


@pytest.mark.parametrize(
    ("node_id", "index", "filename"),
    [("9", 0, "../x.png"), ("9", 0, "sub/x.png"), ("a/b", 0, "x.png"), ("9", -1, "x.png"),
     ("9", 0, ".."), ("9", 0, "")],
)  # fmt: skip
def test_output_key_parts_must_be_plain(node_id: str, index: int, filename: str) -> None:
    """File names and node ids with separators or dots are refused."""
    with pytest.raises(UnsafeKey):
        job_output_key("renders", JOB, node_id, index, filename)


def test_prefix_must_be_relative() -> None:
    """A storage prefix that climbs out is refused."""
    with pytest.raises(UnsafeKey):
        result_key("../../etc", JOB)


def test_long_and_control_characters() -> None:
    """Over-long keys and control characters are refused; ordinary unicode is fine."""
    assert check_key("jobs/été/ß.png") == "jobs/été/ß.png"
    with pytest.raises(UnsafeKey):
        check_key("a" * 1025)
    with pytest.raises(UnsafeKey):
        check_key("a\nb")


def test_open_store_by_url(tmp_path: Path) -> None:
    """file:// URLs and plain paths open a LocalStore, memory:// a shared MemoryStore."""
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)
    assert open_store(str(tmp_path)).url == tmp_path.as_uri()
    first = open_store("memory://shared-test")
    assert isinstance(first, MemoryStore)
    first.write_bytes("k", b"v")
    assert open_store("memory://shared-test").read_bytes("k") == b"v"
    first.clear()
    for bad in ("ftp://x/y", "file://otherhost/x"):
        with pytest.raises(ValueError):
            open_store(bad)


def test_a_file_store_may_keep_no_digests(tmp_path: Path) -> None:
    """file:///dir?digest=none stores the bytes but no digest; other values are refused."""
    default = open_store(tmp_path.as_uri())
    plain = open_store(tmp_path.as_uri() + "?digest=sha256")
    bare = open_store(tmp_path.as_uri() + "?digest=none")
    assert isinstance(default, LocalStore) and default.digest == "blake3"
    assert isinstance(plain, LocalStore) and plain.digest == "sha256"
    assert isinstance(bare, LocalStore) and bare.digest == "none" and bare.url == tmp_path.as_uri()
    stored = bare.write("job/a.bin", iter([b"ab", b"cd", b"e"]))
    assert (stored.bytes, stored.hash) == (5, "")
    assert (tmp_path / "job" / "a.bin").read_bytes() == b"abcde"
    for bad, named in (("?digest=md5", "md5"), ("?hash=none", "hash")):
        with pytest.raises(ValueError, match=named):
            open_store(tmp_path.as_uri() + bad)
