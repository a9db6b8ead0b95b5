"""Benchmarks of the farm on one machine, against simulated GPUs (``comfyfarm bench``).

- ``throughput`` — native vs naive vs farm on one fleet of simulators: ``fleet`` starts them,
  ``native`` / ``naive`` / ``farm`` (+ ``workers``) run the modes and keep a client-side
  ``record``; ``timeline`` holds the pure math (idle gaps, utilisation, percentiles), ``phases``
  splits the farm's gaps at the worker's timestamps, ``figures`` turns a record and the timelines
  into numbers, ``report`` prints them; ``cpu`` and ``memory`` read ``/proc``.
- ``enqueue`` — ``comfyfarm.producer.bench_enqueue`` (jobs/s of ``submit_many``).
- ``outputs`` — a big output through ``iter_output`` → ``LocalStore`` vs a plain download.
"""
