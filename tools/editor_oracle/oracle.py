"""The editor oracle: ComfyUI's own frontend, headless, converts workflow templates to API prompts.

Why: "Export (API)" in the editor (``app.graphToPrompt()``) is the authority on what a UI
workflow means. Instead of guessing its rules, this script runs the real built editor
(PyPI ``comfyui-frontend-package``) in Debian's chromium, serves it a ComfyUI-shaped backend whose
``/object_info`` is the real one of ComfyUI 0.3.64 (or any running ComfyUI / ``comfyfarm sim``
given with ``--object-info-url``), loads every template of ``comfyui-workflow-templates`` and
writes what the editor exports, ``_meta`` included, next to the template.

    python tools/editor_oracle/oracle.py --frontend DIR --templates DIR --out DIR

``DIR`` of ``--frontend`` is the package's ``static`` folder; of ``--templates`` its ``templates``
folder. Chromium is driven over the DevTools protocol (a WebSocket, aiohttp's client): no
playwright, no browser download. Everything runs on loopback; the browser gets an empty profile
and no network besides the local server. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

# The real /object_info of ComfyUI 0.3.64 (recorded; also what the workflows tests use).
DEFAULT_OBJECT_INFO = Path(__file__).resolve().parents[2] / "tests/protocol/object_info.json"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--remote-debugging-port=0",
)

# The editor's conversion, as File → Export (API) calls it. Missing-node dialogs are suppressed;
# a template the editor itself cannot convert comes back as {"error": ...}.
CONVERT_JS = """
(async (wf) => {
  try {
    await window.app.loadGraphData(wf, true, false, null,
      {showMissingNodesDialog: false, showMissingModelsDialog: false});
    const p = await window.app.graphToPrompt();
    return JSON.stringify({output: p.output});
  } catch (e) {
    return JSON.stringify({error: String(e && e.stack || e)});
  }
})
"""


def backend(static: Path, object_info: dict[str, Any]) -> web.Application:
    """A ComfyUI-shaped server: the editor's static files plus the few routes it reads at start."""
    routes = web.RouteTableDef()
    empty: dict[str, Any] = {}

    async def json_of(value: Any) -> web.Response:
        return web.json_response(value)

    @routes.get("/")
    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    @routes.get("/ws")
    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        sid = request.query.get("clientId", "oracle")
        await sock.send_json(
            {
                "type": "status",
                "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid},
            }
        )
        async for _ in sock:
            pass
        return sock

    answers: dict[str, Any] = {
        "/api/object_info": object_info,
        "/api/users": {"storage": "server", "migrated": True},
        "/api/settings": {
            "Comfy.TutorialCompleted": True,
            "Comfy.Validation.Workflows": True,
        },
        "/api/userdata": [],
        "/api/extensions": [],
        "/api/embeddings": [],
        "/api/features": {"supports_preview_metadata": True, "max_upload_size": 104857600},
        "/api/workflow_templates": empty,
        "/api/experiment/models": [],
        "/api/i18n": empty,
        "/api/queue": {"queue_running": [], "queue_pending": []},
        "/api/history": empty,
        "/api/system_stats": {
            "system": {
                "os": "posix",
                "comfyui_version": "0.3.64",
                "python_version": "3.11",
                "pytorch_version": "cpu",
                "embedded_python": False,
                "argv": ["main.py"],
                "ram_total": 0,
                "ram_free": 0,
            },
            "devices": [],
        },
    }

    @routes.route("*", "/api/{tail:.*}")
    async def api(request: web.Request) -> web.StreamResponse:
        if request.path in answers:
            return await json_of(answers[request.path])
        if request.method != "GET":
            return web.json_response({})
        if request.path.startswith(("/api/settings/", "/api/experiment/models/")):
            return web.json_response(None if "settings" in request.path else [])
        print(f"oracle: 404 {request.path}", file=sys.stderr)
        return web.Response(status=404)

    @routes.get("/{tail:.*}")
    async def files(request: web.Request) -> web.StreamResponse:
        path = (static / request.match_info["tail"]).resolve()
        if static.resolve() not in path.parents or not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes(routes)
    return app


WIDGETS_JS = """
(() => {
  const out = {};
  const names = %s;
  app.graph.clear();
  for (const name of names) {
    const node = LiteGraph.createNode(name);
    if (!node) { out[name] = null; continue; }
    // [name, type, takes a widgets_values slot, sent in the API prompt]
    out[name] = (node.widgets || []).map((w) => [w.name, w.type, w.serialize !== false,
      !(w.options && w.options.serialize === false)]);
  }
  return JSON.stringify(out);
})()
"""

TITLES_JS = """
JSON.stringify(Object.fromEntries(
  Object.entries(LiteGraph.registered_node_types).map(([name, cls]) => [name, cls.title])))
"""


class Page:
    """One Chromium tab over the DevTools protocol: evaluate JavaScript, await its promise."""

    def __init__(self, session: aiohttp.ClientSession, sock: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.sock = sock
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.sock.send_json({"id": call_id, "method": method, "params": params})
        async for msg in self.sock:
            data = json.loads(msg.data)
            if data.get("id") == call_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                result: dict[str, Any] = data["result"]
                return result
        raise RuntimeError("DevTools connection closed")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"])[:2000])
        return result["result"].get("value")

    async def close(self) -> None:
        await self.sock.close()
        await self.session.close()


@contextlib.asynccontextmanager
async def editor(url: str) -> AsyncIterator[Page]:
    """Chromium (empty profile, loopback only) showing the editor at ``url``, until it is ready."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("oracle: chromium not found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="oracle-profile-", ignore_cleanup_errors=True) as tmp:
        profile = Path(tmp)
        proc = await asyncio.create_subprocess_exec(
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            page = await _attach(profile / "DevToolsActivePort")
            try:
                await page.call("Page.enable")
                await page.call("Page.navigate", url=url)
                for _ in range(600):
                    ready = await page.evaluate(
                        "!!(window.app && window.app.graph && window.app.vueAppReady)"
                    )
                    if ready:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise SystemExit("oracle: the editor did not start within 60 s")
                yield page
            finally:
                await page.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()


async def _attach(port_file: Path) -> Page:
    for _ in range(300):
        if port_file.exists() and port_file.read_text().strip():
            break
        await asyncio.sleep(0.1)
    else:
        raise SystemExit("oracle: chromium did not open its DevTools port within 30 s")
    port = port_file.read_text().split()[0]
    session = aiohttp.ClientSession()
    async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
        targets = await resp.json()
    target = next(t for t in targets if t.get("type") == "page")
    sock = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
    return Page(session, sock)


async def load_object_info(args: argparse.Namespace) -> dict[str, Any]:
    if args.object_info_url:
        async with aiohttp.ClientSession() as session:
            async with session.get(args.object_info_url.rstrip("/") + "/object_info") as resp:
                return dict(await resp.json())
    return dict(json.loads(Path(args.object_info).read_text("utf-8")))


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


def one_per_line(table: dict[str, Any]) -> str:
    """A JSON object with one entry per line: small, and readable in a diff."""
    lines = [f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in table.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


async def convert_templates(page: Page, templates: list[Path], out: Path) -> dict[str, Any]:
    """Each template through the editor: ``<name>.ui.json`` (the input, compact) and, when the
    editor's export is complete, ``<name>.api.json``; the manifest says which is which."""
    manifest: dict[str, Any] = {}
    for path in templates:
        workflow = json.loads(path.read_text("utf-8"))
        raw = await page.evaluate(f"({CONVERT_JS})({json.dumps(workflow)})")
        result = json.loads(raw)
        (out / f"{path.stem}.ui.json").write_text(compact(workflow), "utf-8")
        api = out / f"{path.stem}.api.json"
        api.unlink(missing_ok=True)
        if "error" in result:
            entry = {"editor": "error", "error": result["error"].splitlines()[0]}
        else:
            output = result["output"]
            broken = sorted(k for k, v in output.items() if "class_type" not in v)
            if broken:  # nodes of types the editor does not know: it exports them classless
                entry = {"editor": "incomplete", "nodes_without_class_type": broken}
            else:
                api.write_text(json.dumps(output, ensure_ascii=False, indent=1) + "\n", "utf-8")
                entry = {"editor": "ok"}
        manifest[path.stem] = entry
        print(f"{path.stem}: {entry['editor']}", flush=True)
    return manifest


async def main(args: argparse.Namespace) -> int:
    static = Path(args.frontend)
    object_info = await load_object_info(args)
    runner = web.AppRunner(backend(static, object_info))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = runner.addresses[0][1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    templates = sorted(
        p for p in Path(args.templates).glob("*.json") if not p.name.startswith("index")
    )
    if args.only:
        templates = [p for p in templates if p.stem in set(args.only)]
    try:
        async with editor(f"http://127.0.0.1:{port}/") as page:
            if not args.no_tables:
                names = json.dumps(sorted(object_info))
                widgets = json.loads(await page.evaluate(WIDGETS_JS % names))
                titles = json.loads(await page.evaluate(TITLES_JS))
                unnamed = {
                    name: titles[name]
                    for name, entry in object_info.items()
                    if name in titles and titles[name] != (entry.get("display_name") or name)
                }
                (out / "editor_widgets.json").write_text(one_per_line(widgets), "utf-8")
                (out / "editor_titles.json").write_text(one_per_line(unnamed), "utf-8")
            manifest = await convert_templates(page, templates, out)
    finally:
        await runner.cleanup()
    if not args.only:
        (out / "MANIFEST.json").write_text(one_per_line(manifest), "utf-8")
    ok = sum(1 for entry in manifest.values() if entry["editor"] == "ok")
    print(f"oracle: the editor exported {ok} of {len(manifest)} templates completely")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frontend", required=True, help="comfyui_frontend_package/static")
    parser.add_argument("--templates", required=True, help="comfyui_workflow_templates/templates")
    parser.add_argument("--out", required=True, help="where the fixtures go")
    parser.add_argument("--object-info", default=str(DEFAULT_OBJECT_INFO))
    parser.add_argument("--object-info-url", help="read /object_info from this ComfyUI or sim")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="template names (without .json)")
    parser.add_argument(
        "--no-tables", action="store_true", help="skip editor_widgets.json, editor_titles.json"
    )
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
