"""The farm's own Redis keys, all under the key prefix (default ``comfyfarm:``).

=====================================  ==========================================================
``<prefix>cancel:<job_id>``            string: cancellation requested (JSON {at, reason}), TTL
``<prefix>lease:<job_id>``             string: owner of the running job, TTL renewed while it runs
``<prefix>job:<job_id>``               string: what the producer submitted (JSON summary), TTL
``<prefix>result:<job_id>``            string: the job's JobResult JSON (also for failed and
                                       cancelled jobs, whose Celery state holds no JobResult), TTL
``<prefix>worker:<name>``              string: a worker's registry entry (JSON), TTL = heartbeat
``<prefix>workers``                    sorted set: worker name → last heartbeat (time.time())
``<prefix>dead-letter``                list: jobs that failed after their last retry (JSON)
``<prefix>submitted:<job_id>``         string: JSON {url, count}: the ComfyUI the job's prompt
                                       was last POSTed to (a re-delivered job looks for its prompt
                                       there) and how many times it was POSTed (the retry limit
                                       counts these, not deliveries that never reached one), TTL;
                                       older workers wrote the plain URL (still read)
``<prefix>submitted:<job_id>:count``   string: the POST count beside such a plain URL (still
                                       read, no longer written), TTL
``<prefix>takeover``                   string: name of the worker sweeping for orphaned jobs this
                                       round (``worker.takeover``), TTL = the sweep interval
``<prefix>outputs:<job_id>``           list: JSON OutputRecord of each output the worker stored,
                                       appended as it is stored (while the job still runs), TTL
``<prefix>preview:<job_id>``           string: JSON {node_id, content_type, data_base64} of the
                                       newest preview image ComfyUI sent while the job runs, TTL
``<prefix>live``                       pub/sub channel: JSON {job_id, output} per stored output,
                                       {job_id, preview: true} per new preview
``<prefix>cancels``                    pub/sub channel: the id of each job whose cancel flag was
                                       just set (``worker.cancel_watch``: pushed, not polled)
``<prefix>schema:<worker>``            string: zlib-compressed JSON of the node schemas and model
                                       lists a worker's ComfyUI serves (producers validate
                                       against it without reaching ComfyUI), TTL
``<prefix>bell:<queue>``               list: doorbell tokens, one per message a producer of ours
                                       pushed on the queue; idle workers BRPOP it
                                       (``tasks.doorbell``), at most 1,024, cleared when the
                                       queue is found empty
=====================================  ==========================================================

Celery's result of a job is ``<prefix>celery-task-meta-<job_id>`` (``celery_result_key``), also
the pub/sub channel on which every state change is published.

Celery's keys share the prefix (kombu ``global_keyprefix``): queues are ``<prefix>comfyfarm…``,
results ``<prefix>celery-task-meta-<id>``; none of them can collide with the names above.
"""

from __future__ import annotations


def cancel_key(prefix: str, job_id: str) -> str:
    return f"{prefix}cancel:{job_id}"


def lease_key(prefix: str, job_id: str) -> str:
    return f"{prefix}lease:{job_id}"


def job_key(prefix: str, job_id: str) -> str:
    return f"{prefix}job:{job_id}"


def job_result_key(prefix: str, job_id: str) -> str:
    return f"{prefix}result:{job_id}"


def job_outputs_key(prefix: str, job_id: str) -> str:
    return f"{prefix}outputs:{job_id}"


def preview_key(prefix: str, job_id: str) -> str:
    return f"{prefix}preview:{job_id}"


def live_channel(prefix: str) -> str:
    return f"{prefix}live"


def cancel_channel(prefix: str) -> str:
    return f"{prefix}cancels"


def celery_result_key(prefix: str, job_id: str) -> str:
    """Where Celery's Redis backend keeps (and publishes) the state of task ``job_id``.

    Celery inserts "_" after a prefix that does not end in one of ``:_-.``; Settings only allows
    prefixes that do, so the key is simply the prefix + Celery's own name.
    """
    if prefix and prefix[-1] not in ":_-.":
        prefix += "_"
    return f"{prefix}celery-task-meta-{job_id}"


def worker_key(prefix: str, name: str) -> str:
    return f"{prefix}worker:{name}"


def workers_index_key(prefix: str) -> str:
    return f"{prefix}workers"


def takeover_key(prefix: str) -> str:
    return f"{prefix}takeover"


def dead_letter_key(prefix: str) -> str:
    return f"{prefix}dead-letter"


def lease_pattern(prefix: str) -> str:
    """SCAN pattern matching every lease key (prefix characters are escaped)."""
    return _escape_glob(prefix) + "lease:*"


def job_id_from_lease_key(prefix: str, key: str) -> str:
    return key[len(prefix) + len("lease:") :]


def _escape_glob(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)


def schema_key(prefix: str, worker_name: str) -> str:
    return f"{prefix}schema:{worker_name}"


def submission_key(prefix: str, job_id: str) -> str:
    return f"{prefix}submitted:{job_id}"


def submission_count_key(prefix: str, job_id: str) -> str:
    """How many times the job's prompt was POSTed, as workers before the JSON entry of
    ``submission_key`` counted it (read, no longer written: ``worker.ledger``)."""
    return f"{prefix}submitted:{job_id}:count"


def store_failure_count_key(prefix: str, job_id: str) -> str:
    """How many tries of the job failed on the output store (they use up retries too)."""
    return f"{prefix}submitted:{job_id}:store-failures"
