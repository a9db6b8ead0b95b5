"""``comfyfarm validate``: would ComfyUI accept this workflow (with these parameters)?

Loads the workflow (API or UI format, path or library name), applies ``--param``/``--set``/
``--sweep`` exactly as ``comfyfarm submit`` would, and checks every resulting job against the node
schemas and model lists of a ComfyUI (``--comfy-url``) or a saved ``/object_info``
(``--object-info``). Exit status 0 when valid; 1 with one line per problem otherwise (``--json``
for a machine-readable report); 2 when no schema source is given. ``--list-params`` shows the
workflow's named parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from comfyfarm.commands.convert import NO_SCHEMA, add_schema_arguments, load_schema

if TYPE_CHECKING:
    from comfyfarm.workflows import ParamSet


def configure(parser: argparse.ArgumentParser) -> None:
    from comfyfarm.commands.run import add_job_arguments

    parser.add_argument("workflow", help="workflow file (API or UI format) or a library name")
    add_schema_arguments(parser)
    add_job_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument(
        "--list-params", action="store_true", help="list the workflow's named parameters"
    )


def run(args: argparse.Namespace) -> int:
    from comfyfarm import exits
    from comfyfarm.workflows import (
        SchemaUnavailable,
        WorkflowError,
        load_workflow,
        prepare_jobs,
        workflow_params,
    )

    report: dict[str, Any] = {"workflow": args.workflow, "valid": False, "jobs": 0}
    try:
        workflow = load_workflow(args.workflow)
        report["workflow"] = workflow.name
        schema = load_schema(args)
        if schema is None:
            print(NO_SCHEMA, file=sys.stderr)
            return 2
        if args.list_params:
            return _list_params(workflow_params(workflow, workflow.to_api(schema), schema), args)
        jobs = prepare_jobs(
            workflow,
            schema=schema,
            params=args.param,
            sets=args.set,
            sweeps=args.sweep,
            zip_sweeps=args.zip,
            count=args.count,
        )
    except WorkflowError as exc:
        report["problems"] = [problem.to_dict() for problem in exc.problems]
        report["error"] = type(exc).__name__
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            count = len(exc.problems)
            print(f"{report['workflow']}: {count} problem{'s' if count != 1 else ''}")
            for problem in exc.problems:
                print(f"  {problem}")
        return exits.ENVIRONMENT if isinstance(exc, SchemaUnavailable) else exits.BAD_INPUT
    report.update(valid=True, jobs=len(jobs), problems=[])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        nodes = len(jobs[0].prompt) if jobs else 0
        plural = "s" if len(jobs) != 1 else ""
        print(f"{workflow.name}: valid ({len(jobs)} job{plural}, {nodes} nodes)")
    return 0


def _list_params(param_set: ParamSet, args: argparse.Namespace) -> int:
    params = param_set.params
    if args.json:
        listing = [
            {"name": p.name, "targets": list(p.targets), "help": p.help, "default": p.default}
            for p in params.values()
        ]
        print(json.dumps({"source": param_set.source, "params": listing}, indent=2))
        return 0
    print(f"parameters ({param_set.source}):")
    rows = [(p.name, ", ".join(p.targets), p) for p in params.values()]
    name_width = max((len(row[0]) for row in rows), default=0)
    target_width = max((len(row[1]) for row in rows), default=0)
    for name, targets, param in rows:
        default = f" [default: {param.default}]" if param.has_default else ""
        line = f"  {name.ljust(name_width)}  {targets.ljust(target_width)}  {param.help}{default}"
        print(line.rstrip())
    return 0
