"""Store keys: relative POSIX paths, checked before any store touches them.

A key is refused (``UnsafeKey``) if it is empty, absolute, longer than 1024 characters, has an
empty, ``.`` or ``..`` part, a backslash, a NUL or another control character, or a part starting
with the stores' temporary-file prefix.

Layout of a job's outputs: ``<prefix>/<job_id>/<node_id>_<index>_<filename>`` plus
``<prefix>/<job_id>/result.json`` (without ``<prefix>/`` when the prefix is empty).
"""

from __future__ import annotations

from urllib.parse import unquote

from comfyfarm.storage.base import UnsafeKey

TEMP_PREFIX = ".comfyfarm-tmp-"
MAX_KEY_LENGTH = 1024
RESULT_FILENAME = "result.json"
LOG_FILENAME = "log.txt"


def check_key(key: str) -> str:
    """``key`` itself if it is a safe relative POSIX path; raises ``UnsafeKey`` otherwise."""
    if not isinstance(key, str) or not key:
        raise UnsafeKey(key=str(key), reason="empty or not a string")
    if len(key) > MAX_KEY_LENGTH:
        raise UnsafeKey(key=key[:80], reason=f"longer than {MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise UnsafeKey(key=key, reason="absolute path")
    if "\\" in key:
        raise UnsafeKey(key=key, reason="backslash")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise UnsafeKey(key=key, reason="NUL or control character")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise UnsafeKey(key=key, reason="empty, '.' or '..' path part")
        if part.startswith(TEMP_PREFIX):
            raise UnsafeKey(key=key, reason=f"parts starting with {TEMP_PREFIX!r} are reserved")
    return key


def key_of_uri(store_url: str, uri: str) -> str | None:
    """The key of ``uri`` in the store at ``store_url`` (as ``store.uri(key)`` wrote it), or
    None when the URI is not under that store. The key is not checked here: the store checks
    it when it is used (a ``..`` that would climb out is refused then)."""
    base = store_url.rstrip("/") + "/"
    if "://" not in uri or not uri.startswith(base) or "?" in uri or "#" in uri:
        return None
    rest = uri[len(base) :]
    return unquote(rest) if base.startswith("file:") else rest  # file URIs are %-encoded


def job_dir(prefix: str, job_id: str) -> str:
    """``<prefix>/<job_id>`` (just ``<job_id>`` when ``prefix`` is empty)."""
    _check_name("job_id", job_id)
    key = f"{prefix.strip('/')}/{job_id}" if prefix.strip("/") else job_id
    return check_key(key)


def job_output_key(prefix: str, job_id: str, node_id: str, index: int, filename: str) -> str:
    """``<prefix>/<job_id>/<node_id>_<index>_<filename>``; ``filename`` must be a plain name."""
    _check_name("node_id", node_id)
    _check_name("filename", filename)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise UnsafeKey(key=filename, reason=f"index must be a non-negative integer, not {index!r}")
    return check_key(f"{job_dir(prefix, job_id)}/{node_id}_{index}_{filename}")


def result_key(prefix: str, job_id: str) -> str:
    """``<prefix>/<job_id>/result.json``."""
    return check_key(f"{job_dir(prefix, job_id)}/{RESULT_FILENAME}")


def job_log_key(prefix: str, job_id: str) -> str:
    """``<prefix>/<job_id>/log.txt``: what ComfyUI printed while the job's prompt ran."""
    return check_key(f"{job_dir(prefix, job_id)}/{LOG_FILENAME}")


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise UnsafeKey(key=str(name), reason=f"{what} must be a plain name without '/'")
