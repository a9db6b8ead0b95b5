"""A ComfyUI-compatible server that stands in for a GPU box. Imports nothing of comfyfarm.

It speaks ComfyUI 0.3.64's HTTP + WebSocket protocol (as recorded in the shared traces) with
simulated GPU time, real output files, fault injection and accounting. Run it with
``python -m simulator`` or ``comfyfarm sim`` (flags in ``comfyfarm.simulator.cli``).

    cli ──> app (build_app) ──> routes_comfy / routes_files / routes_sim ──> instance
                                (ComfyUI routes, also under /api; /_sim/)

    instance (Simulator: its parts, the worker loop that runs queued prompts)
                 ├─ prompt_queue   pending heap, running item, history
                 ├─ validation     POST /prompt checks against schema (data/object_info.json)
                 ├─ executor       one prompt: cache, graph order, events, progress
                 │    └─ nodes / savers (node_api)   what each node class does
                 ├─ ws_hub         sockets, routing, publisher
                 ├─ gpu            simulated time;  faults / job_faults;  accounting
                 └─ files / images output, input, temp dirs; PNG encoding
"""
