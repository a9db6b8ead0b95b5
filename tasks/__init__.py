"""The contract shared by producers and workers: Celery app, task names, payload models.

Imports only Celery, kombu, redis and the standard library.

- ``settings``  Settings.from_env(): every COMFYFARM_* variable, validated
- ``app``       make_app(settings): the Celery app both sides use (JSON only, acks late, ...)
- ``names``     RUN_JOB, the one task name
- ``routing``   queue names (shared / per worker / per capability) and priorities
- ``models``    JobSpec, InputFile, JobResult, OutputRecord, Timings, JobProgress
- ``keys``      the farm's own Redis keys; ``control`` (cancel), ``lease`` (Lease),
                ``registry`` (workers), ``deadletter``; ``connect`` (a Redis client)
- ``errors``    the error tree of the contract
- ``multiprocess_metrics`` the Prometheus sample directory the processes of one service share
                (a worker's pool, ``gateway --processes N``); imports prometheus_client only
                when called (the worker and gateway extras have it)
"""
