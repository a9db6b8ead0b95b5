"""Workflows: load (API or UI format), convert, parameterise, sweep and validate.

The producer side and the ``comfyfarm`` commands use only the names exported here::

    schema = SchemaSource.from_url("http://127.0.0.1:8188")      # or .from_file / .from_object_info
    jobs = prepare_jobs("sd15_text2image", schema=schema,
                        params=["prompt=a cat", "seed=random"], sweeps=["steps=20,30"], count=2)
    jobs[0].prompt, jobs[0].params, jobs[0].inputs               # POST-ready prompt, record, files
    validate_prompt(prompt, schema)                              # -> list[Problem]
"""

from comfyfarm.workflows.convert import convert_ui_to_api
from comfyfarm.workflows.errors import (
    ConversionError,
    InputFileError,
    ParameterError,
    PromptInvalid,
    SchemaUnavailable,
    WorkflowError,
    WorkflowFormatError,
    WorkflowNotFound,
)
from comfyfarm.workflows.formats import Workflow, detect_format, load_workflow
from comfyfarm.workflows.inputs import MAX_INPUT_BYTES, InputRef
from comfyfarm.workflows.library import find_workflow, list_workflows
from comfyfarm.workflows.params import ParamDef, ParamSet
from comfyfarm.workflows.prepare import (
    AppliedInputs,
    PreparedJob,
    apply_inputs,
    prepare_jobs,
    workflow_params,
)
from comfyfarm.workflows.problems import Problem
from comfyfarm.workflows.schema import SchemaSource
from comfyfarm.workflows.validate import validate_prompt

__all__ = [
    "MAX_INPUT_BYTES",
    "AppliedInputs",
    "ConversionError",
    "InputFileError",
    "InputRef",
    "ParamDef",
    "ParamSet",
    "ParameterError",
    "PreparedJob",
    "Problem",
    "PromptInvalid",
    "SchemaSource",
    "SchemaUnavailable",
    "Workflow",
    "WorkflowError",
    "WorkflowFormatError",
    "WorkflowNotFound",
    "apply_inputs",
    "convert_ui_to_api",
    "detect_format",
    "find_workflow",
    "list_workflows",
    "load_workflow",
    "prepare_jobs",
    "validate_prompt",
    "workflow_params",
]
