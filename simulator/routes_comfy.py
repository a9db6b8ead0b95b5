"""ComfyUI's HTTP and WebSocket routes (everything except files), shaped like server.py of 0.3.64.

With a newer ``--comfy-version`` they follow the newer server.py where it differs: a client
``prompt_id`` must be a canonical lowercase UUID (else 400 ``invalid_prompt_id``), ``extra_data``
gets ``create_time`` (ms), and ``/system_stats`` lists every GPU (primary first).

Handlers keep ComfyUI's way of reading bodies: ``await request.json()`` on a body that is not
JSON raises, and aiohttp turns that into ``500 Internal Server Error`` (text/plain), which is
exactly what the real server answers.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from comfyfarm.simulator.config import MODEL_FOLDERS, is_jobs_generation
from comfyfarm.simulator.instance import Simulator
from comfyfarm.simulator.prompt_queue import SENSITIVE_EXTRA_DATA_KEYS, QueueItem
from comfyfarm.simulator.validation import validate_prompt
from comfyfarm.simulator.ws_hub import SERVER_FEATURES, Client

log = logging.getLogger(__name__)

VERSION = "0.3.64"
EXTENSIONS = [
    "/extensions/core/groupNode.js",
    "/extensions/core/maskEditorOld.js",
    "/extensions/core/clipspace.js",
    "/extensions/core/maskEditorLayerFilenames.js",
    "/extensions/core/widgetInputs.js",
    "/extensions/core/groupNodeManage.js",
]
GIB = 1024**3


def server_error(status: int) -> web.Response:
    """The body aiohttp gives an unhandled exception, for faults that imitate one."""
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
    text = f"{status} {reason.get(status, 'Error')}\n\nServer got itself in trouble"
    return web.Response(status=status, text=text)


def comfy_routes(sim: Simulator) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    hub, queue = sim.hub, sim.queue

    @routes.get("/ws")
    async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            hub.clients.pop(sid, None)  # reusing a session: the old socket stops receiving
        else:
            sid = uuid.uuid4().hex
        client = Client(ws, request)
        hub.register(sid, client)
        try:
            await hub.send("status", {"status": queue.status(), "sid": sid}, sid)
            if hub.client_id == sid and hub.last_node_id is not None:
                await hub.send("executing", {"node": hub.last_node_id}, sid)
            first_message = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    log.warning("invalid JSON received from client %s", sid)
                    continue
                if first_message and isinstance(data, dict) and data.get("type") == "feature_flags":
                    flags = data.get("data", {})
                    client.feature_flags = flags if isinstance(flags, dict) else {}
                    await hub.send("feature_flags", SERVER_FEATURES, sid)
                first_message = False
        finally:
            hub.unregister(sid, client)
        return ws

    @routes.get("/")
    async def root(request: web.Request) -> web.Response:
        body = "<!doctype html><title>ComfyUI</title><p>comfyfarm simulator (ComfyUI API only)</p>"
        return web.Response(text=body, content_type="text/html")

    @routes.get("/prompt")
    async def get_prompt(request: web.Request) -> web.Response:
        return web.json_response(queue.status())

    @routes.post("/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        fault = sim.faults.check("prompt_5xx")
        if fault is not None:
            return server_error(int(fault["status"]))
        json_data = await request.json()
        if "number" in json_data:
            number: int | float = float(json_data["number"])
        else:
            number = sim.number
            if "front" in json_data and json_data["front"]:
                number = -number
            sim.number += 1
        if "prompt" not in json_data:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            sim.accounting.prompts_rejected += 1
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = json_data["prompt"]
        newer = is_jobs_generation(sim.config.comfy_version)
        if newer and json_data.get("prompt_id") is not None:
            if not _canonical_uuid(json_data["prompt_id"]):
                return web.json_response(
                    {"error": INVALID_PROMPT_ID, "node_errors": {}}, status=400
                )
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        if newer and json_data.get("prompt_id") is None:
            prompt_id = str(uuid.uuid4())  # newer servers mint an id for an explicit null too
        valid = validate_prompt(prompt, sim.schemas, json_data.get("partial_execution_targets"))
        extra_data: Any = json_data["extra_data"] if "extra_data" in json_data else {}
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid.ok:
            sim.accounting.prompts_rejected += 1
            return web.json_response(
                {"error": valid.error, "node_errors": valid.node_errors}, status=400
            )
        sensitive = {k: extra_data.pop(k) for k in SENSITIVE_EXTRA_DATA_KEYS if k in extra_data}
        if newer:
            extra_data["create_time"] = int(time.time() * 1000)
        sim.console.write("got prompt")
        queue.put(QueueItem(number, prompt_id, prompt, extra_data, valid.outputs, sensitive))
        sim.accounting.prompts_accepted += 1
        return web.json_response(
            {"prompt_id": prompt_id, "number": number, "node_errors": valid.node_errors}
        )

    @routes.get("/queue")
    async def get_queue(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "queue_running": [item.public() for item in queue.running_items()],
                "queue_pending": [item.public() for item in queue.pending_items()],
            }
        )

    @routes.post("/queue")
    async def post_queue(request: web.Request) -> web.Response:
        json_data = await request.json()
        if "clear" in json_data and json_data["clear"]:
            queue.wipe()
        if "delete" in json_data:
            for prompt_id in json_data["delete"]:
                queue.delete(prompt_id)
        return web.Response(status=200)

    @routes.post("/interrupt")
    async def post_interrupt(request: web.Request) -> web.Response:
        try:
            json_data = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        sim.interrupt(json_data.get("prompt_id"))
        return web.Response(status=200)

    @routes.post("/free")
    async def post_free(request: web.Request) -> web.Response:
        json_data = await request.json()
        sim.request_free(
            unload_models=bool(json_data.get("unload_models", False)),
            free_memory=bool(json_data.get("free_memory", False)),
        )
        return web.Response(status=200)

    @routes.get("/history")
    async def get_history(request: web.Request) -> web.Response:
        max_items = request.rel_url.query.get("max_items")
        offset = request.rel_url.query.get("offset")
        return web.json_response(
            queue.get_history(
                max_items=int(max_items) if max_items is not None else None,
                offset=int(offset) if offset is not None else -1,
            )
        )

    @routes.get("/history/{prompt_id}")
    async def get_history_item(request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = queue.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    @routes.post("/history")
    async def post_history(request: web.Request) -> web.Response:
        json_data = await request.json()
        if "clear" in json_data and json_data["clear"]:
            queue.wipe_history()
        if "delete" in json_data:
            for prompt_id in json_data["delete"]:
                queue.delete_history_item(prompt_id)
        return web.Response(status=200)

    @routes.get("/object_info")
    async def get_object_info(request: web.Request) -> web.Response:
        return web.json_response(sim.schemas.object_info())

    @routes.get("/object_info/{node_class}")
    async def get_object_info_node(request: web.Request) -> web.Response:
        node_class = request.match_info["node_class"]
        if node_class in sim.schemas:
            return web.json_response({node_class: sim.schemas.entry(node_class)})
        return web.json_response({})

    @routes.get("/embeddings")
    async def get_embeddings(request: web.Request) -> web.Response:
        names = [os.path.splitext(name)[0] for name in sim.schemas.model_files("embeddings")]
        return web.json_response(names)

    @routes.get("/models")
    async def list_model_types(request: web.Request) -> web.Response:
        return web.json_response(list(MODEL_FOLDERS))

    @routes.get("/models/{folder}")
    async def get_models(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(sim.schemas.model_files(folder))

    @routes.get("/extensions")
    async def get_extensions(request: web.Request) -> web.Response:
        return web.json_response(EXTENSIONS)

    @routes.get("/features")
    async def get_features(request: web.Request) -> web.Response:
        return web.json_response(SERVER_FEATURES)

    @routes.get("/internal/logs")
    async def internal_logs(request: web.Request) -> web.Response:
        return web.json_response(sim.console.text())

    @routes.get("/internal/logs/raw")
    async def internal_logs_raw(request: web.Request) -> web.Response:
        return web.json_response(sim.console.raw())

    @routes.get("/system_stats")
    async def system_stats(request: web.Request) -> web.Response:
        return web.json_response(_system_stats(sim.config.comfy_version, sim.config.gpus))

    return routes


INVALID_PROMPT_ID = {
    "type": "invalid_prompt_id",
    "message": "prompt_id must be a valid UUID",
    "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
    "omit it to let the server generate one",
    "extra_info": {},
}


def _canonical_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _device(index: int) -> dict[str, Any]:
    return {
        "name": f"cuda:{index} Simulated GPU ({platform.node() or 'sim'}) : cudaMallocAsync",
        "type": "cuda",
        "index": index,
        "vram_total": 24 * GIB,
        "vram_free": 20 * GIB,
        "torch_vram_total": 24 * GIB,
        "torch_vram_free": 20 * GIB,
    }


def _system_stats(version: str = VERSION, gpus: int = 1) -> dict[str, Any]:
    return {
        "system": {
            "os": os.name,
            "ram_total": 32 * GIB,
            "ram_free": 24 * GIB,
            "comfyui_version": version,
            "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.95",
            "required_templates_version": "0.1.95",
            "python_version": sys.version,
            "pytorch_version": "2.8.0+sim",
            "embedded_python": False,
            "argv": ["comfyfarm-sim", *sys.argv[1:]],
        },
        "devices": [_device(index) for index in range(gpus)],
    }
