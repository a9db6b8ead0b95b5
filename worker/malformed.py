"""The worker's guard against broker messages it cannot run: they become dead letters.

Whoever can write to the broker can put anything in a queue. Celery itself copes badly with
some of it: a ``comfyfarm.run_job`` envelope whose JSON body is not ``[args, kwargs, embed]``
makes its request parsing raise inside the consumer, the worker logs "Unrecoverable error" and
exits 0, and the message goes back to the queue for the next worker to die on. A kombu
``compression`` header is inflated before any check (a 510 KB message becomes 512 MiB).

``GuardedConsumer`` (installed as the app's ``worker_consumer``) checks every message before
Celery's strategy sees it, in the worker's main process:

- a task name no worker registers → dead letter (Celery would drop it with a log line);
- a body that is not ``[list, dict, dict | null]``, or for ``run_job``/``deliver_webhook`` not
  exactly one JSON object argument and no keyword arguments → dead letter;
- a ``compression`` header → dead letter, refused *before* decompression (``refuse_compression``
  replaces kombu's decoders in this process, so kombu records an error instead of inflating);
- a body that cannot be decoded, or anything Celery's own strategy raises for it → dead letter.

Each is acknowledged (never re-delivered) and recorded with ``push_dead_letter``: task name, id,
the reason, and at most ``MAX_EXCERPT`` characters of the (never decompressed) body. The worker
keeps consuming. What *is* a well-formed ``run_job`` message is validated further by the task
(``JobSpec.from_dict``; an unreadable spec is dead-lettered there).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from kombu import compression

from comfyfarm.tasks.keys import DeadLetter, push_dead_letter
from comfyfarm.tasks.names import DELIVER_WEBHOOK, RUN_JOB
from comfyfarm.worker.event_flush import EventFlushConsumer

log = logging.getLogger(__name__)

#: Characters of a refused message's body kept in its dead letter.
MAX_EXCERPT = 2000
#: Tasks whose only argument is one JSON object.
SINGLE_OBJECT_TASKS = frozenset({RUN_JOB, DELIVER_WEBHOOK})


class MalformedMessage(Exception):
    """Raised (and caught here) when a broker message is not one this farm can run."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": self.reason, "reason": self.reason}


class CompressedMessage(MalformedMessage):
    """Raised by kombu's (replaced) decoders for a message with a ``compression`` header."""


def _refuse(content_type: str) -> Callable[[bytes], bytes]:
    def refuse(body: bytes) -> bytes:
        raise CompressedMessage(
            f"compressed messages are refused (compression {content_type!r}, "
            f"{len(body)} bytes not inflated)"
        )

    return refuse


def refuse_compression() -> None:
    """Make every kombu decompressor in this process refuse instead of inflating."""
    for content_type in list(compression._decoders):
        compression._decoders[content_type] = _refuse(content_type)


def check_body(task_name: str, body: object) -> None:
    """Raise ``MalformedMessage`` unless ``body`` is a protocol-2 ``[args, kwargs, embed]``
    (and, for our own tasks, exactly one JSON object argument)."""
    if not isinstance(body, list | tuple) or len(body) != 3:
        raise MalformedMessage(f"body must be [args, kwargs, embed], got {_kind(body)}")
    args, kwargs, embed = body
    if not isinstance(args, list | tuple):
        raise MalformedMessage(f"args must be a list, got {_kind(args)}")
    if not isinstance(kwargs, dict):
        raise MalformedMessage(f"kwargs must be an object, got {_kind(kwargs)}")
    if embed is not None and not isinstance(embed, dict):
        raise MalformedMessage(f"embed must be an object or null, got {_kind(embed)}")
    if task_name in SINGLE_OBJECT_TASKS:
        if len(args) != 1 or not isinstance(args[0], dict) or kwargs:
            raise MalformedMessage(
                f"{task_name} takes one JSON object argument and no keyword arguments "
                f"(got {len(args)} argument(s), {len(kwargs)} keyword argument(s))"
            )


def _kind(value: object) -> str:
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    return "null" if value is None else type(value).__name__


class DeadLetters:
    """Where refused messages go (set once by ``install``, used in the main process)."""

    def __init__(self, client: redis.Redis, prefix: str, worker_name: str) -> None:
        self.client, self.prefix, self.worker_name = client, prefix, worker_name

    def refuse(self, message: Any, reason: str, *, error: dict[str, Any] | None = None) -> None:
        """Record ``message`` as a dead letter and acknowledge it (it is never re-delivered)."""
        headers = message.headers if isinstance(message.headers, dict) else {}
        task_id = str(headers.get("id") or "")
        task_name = str(headers.get("task") or "")
        letter = DeadLetter(
            job_id=task_id,
            reason=f"malformed message: {reason}",
            error=error or {"type": "MalformedMessage", "message": reason, "reason": reason},
            worker=self.worker_name,
            attempts=1,
            spec={
                "task": task_name,
                "content_type": str(message.content_type or ""),
                "compression": str(headers.get("compression") or ""),
                "body_excerpt": _excerpt(message),
            },
        )
        log.error("refused message %s (task %r): %s", task_id or "?", task_name, reason)
        try:
            push_dead_letter(self.client, self.prefix, letter)
        except redis.RedisError:
            log.exception("could not record the dead letter of message %s", task_id)
        if not message.acknowledged:
            message.ack()


def _excerpt(message: Any) -> str:
    if (message.headers or {}).get("compression"):
        return ""  # never inflated, and the compressed bytes say nothing to a person
    body = message.body
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body[: MAX_EXCERPT * 4]).decode("utf-8", errors="replace")
    else:
        text = str(body)[: MAX_EXCERPT * 4]
    return text[:MAX_EXCERPT]


class GuardedStrategies(dict[str, Any]):
    """Celery's task-name → strategy table, handing out guarded strategies (see the module)."""

    letters: DeadLetters | None = None

    def __getitem__(self, name: str) -> Any:
        if not dict.__contains__(self, name):
            raise KeyError(name)
        return _guarded(name, dict.__getitem__(self, name), self.letters)


def _guarded(name: str, strategy: Any, letters: DeadLetters | None) -> Callable[..., Any]:
    def guarded(message: Any, payload: Any, *args: Any, **kwargs: Any) -> Any:
        if letters is None:  # not installed: Celery's behaviour
            return strategy(message, payload, *args, **kwargs)
        try:
            check_body(name, message.payload if payload is None else payload)
            return strategy(message, payload, *args, **kwargs)
        except MalformedMessage as exc:
            letters.refuse(message, exc.reason)
        except Exception as exc:  # anything Celery's request parsing raises for this message
            letters.refuse(message, f"{type(exc).__name__}: {exc}")
        return None

    return guarded


class GuardedConsumer(EventFlushConsumer):
    """Celery's consumer with every unrunnable message dead-lettered (see the module), and task
    events published every 100 ms (``worker.event_flush``)."""

    Strategies = GuardedStrategies
    letters: DeadLetters | None = None

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        if self.letters is None:
            super().on_unknown_task(body, message, exc)
            return
        name = (message.headers or {}).get("task") if isinstance(message.headers, dict) else None
        self.letters.refuse(message, f"unknown task name {name!r}")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        if self.letters is None:
            super().on_unknown_message(body, message)
            return
        self.letters.refuse(message, "not a task message (no task name)")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        if self.letters is None:
            super().on_invalid_task(body, message, exc)
            return
        self.letters.refuse(message, f"invalid task message: {exc}")

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        if self.letters is None:
            super().on_decode_error(message, exc)
            return
        if isinstance(exc, MalformedMessage):
            self.letters.refuse(message, exc.reason)
        else:
            self.letters.refuse(message, f"cannot decode the body: {type(exc).__name__}: {exc}")


def install(app: Celery, client: redis.Redis, prefix: str, worker_name: str) -> None:
    """Make ``app``'s worker dead-letter every message it cannot run (call before it starts)."""
    letters = DeadLetters(client, prefix, worker_name)
    GuardedConsumer.letters = letters
    GuardedStrategies.letters = letters
    app.conf.worker_consumer = f"{__name__}:GuardedConsumer"
    refuse_compression()
