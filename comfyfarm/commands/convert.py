"""``comfyfarm convert``: a workflow saved by the ComfyUI editor → the API format ``/prompt`` takes.

No "Export (API)" step in the editor: node schemas come from a running ComfyUI (``--comfy-url``,
default ``$COMFYFARM_COMFY_URL``) or from a saved copy of its ``/object_info``
(``--object-info FILE``). Writes the API prompt to ``-o FILE`` or stdout; problems (unknown node
types, ...) go to stderr, one per line, with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfyfarm.workflows import SchemaSource


def add_schema_arguments(parser: argparse.ArgumentParser) -> None:
    """``--comfy-url`` / ``--object-info``: where node schemas come from (shared with validate)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--comfy-url",
        default=os.environ.get("COMFYFARM_COMFY_URL"),
        metavar="URL",
        help="a running ComfyUI to read /object_info from (env COMFYFARM_COMFY_URL)",
    )
    source.add_argument(
        "--object-info",
        metavar="FILE",
        help="a saved /object_info JSON instead of a running ComfyUI",
    )


NO_SCHEMA = "error: node schemas are needed: give --comfy-url URL or --object-info FILE"


def load_schema(args: argparse.Namespace) -> SchemaSource | None:
    """The SchemaSource the arguments name, None when none is given (raises WorkflowError)."""
    from comfyfarm.workflows import SchemaSource

    if args.object_info:
        return SchemaSource.from_file(args.object_info)
    if args.comfy_url:
        return SchemaSource.from_url(args.comfy_url)
    return None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", help="UI-format workflow file (or a library name)")
    add_schema_arguments(parser)
    parser.add_argument("-o", "--output", metavar="FILE", help="write the API prompt here")
    parser.add_argument("--indent", type=int, default=2, help="JSON indentation (default 2)")


def run(args: argparse.Namespace) -> int:
    from comfyfarm import exits
    from comfyfarm.workflows import SchemaUnavailable, WorkflowError, load_workflow

    try:
        workflow = load_workflow(args.workflow)
        schema = load_schema(args) if workflow.format == "ui" else None
        if workflow.format == "ui" and schema is None:
            print(NO_SCHEMA, file=sys.stderr)
            return 2
        prompt = workflow.to_api(schema)
    except WorkflowError as exc:
        print(f"error: cannot convert {args.workflow}:\n{exc}", file=sys.stderr)
        return exits.ENVIRONMENT if isinstance(exc, SchemaUnavailable) else exits.BAD_INPUT
    text = json.dumps(prompt, indent=args.indent, ensure_ascii=False) + "\n"
    if workflow.format == "api":
        print(f"{args.workflow} is already in API format", file=sys.stderr)
    if args.output:
        target = Path(args.output)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(target)
        print(f"wrote {target} ({len(prompt)} nodes)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
