"""The pages: server-rendered HTML over `aiflow.ops`, with live updates by server-sent events.

`router(config, token)` gives an `APIRouter` to include in the application of `aiflow.web.api`.
Pages read through `ops`, the event client and `read_dead_letters`, and change things only through
`ops` and the event client, as the REST API does. Templates are Jinja2 with autoescaping on, so
every name, event value and message is escaped where it is written; the few fragments the scripts
insert (`innerHTML`) are those same server-rendered templates.

Access: with a token, a page needs the `Authorization: Bearer` header the API takes, or the session
cookie that `/login` sets once the token is typed in (HttpOnly, SameSite=Strict; it holds an HMAC of
the token, never the token). A form post must come from the server's own origin (its `Origin`
header, which browsers send with every POST, names this host), so another site cannot drive the
buttons of a browser that has the cookie, or of an open loopback server.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute

from aiflow import ops
from aiflow.config import Config
from aiflow.errors import AIFlowError, KafkaUnavailable, NotFound
from aiflow.protocol.records import parse_source
from aiflow.sdk.status import TASK_ALIVE_SET, WORKFLOW_FINISHED_SET, TaskStatus, WorkflowStatus
from aiflow.web.errors import http_status

HERE = Path(__file__).resolve().parent
STATIC = {"aiflow.css": "text/css", "aiflow.js": "text/javascript"}
COOKIE = "aiflow_session"
PAGE_SIZE = 20
POLL_SECONDS = 1.0
LOG_CHUNK = 64 * 1024
LOG_TAIL = 256 * 1024  # what a log page shows at first: the end of a long log

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _time(moment: datetime | str | None) -> datetime | None:
    """Times come as datetimes from ops and as ISO strings from the records' dicts."""
    return datetime.fromisoformat(moment) if isinstance(moment, str) and moment else moment or None


def _when(moment: datetime | str | None) -> str:
    found = _time(moment)
    return found.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if found else ""


def _took(begin: datetime | str | None, end: datetime | str | None) -> str:
    start = _time(begin)
    if start is None:
        return ""
    seconds = ((_time(end) or datetime.now(timezone.utc)) - start).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


_env.filters.update(q=lambda s: quote(str(s), safe=""), when=_when)
_env.globals.update(took=_took)


def _render(name: str, **values: Any) -> str:
    return _env.get_template(name).render(**values)


# -- causes ---------------------------------------------------------------------------------
# What the scheduler writes as a try's or an execution's cause (aiflow/scheduler/core.py, service.py).
_KEY = r"(?P<key>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
_ON_EVENT = re.compile(r"^(?:rule (?P<rule>\d+) of (?P<task>\S+) \(\w+\)|trigger \d+) on event " + _KEY +
                       r"(?: at (?P<source>\S+))?$")
_ON_TRY = re.compile(r"^rule \d+ of \S+ \(\w+\) on (?P<task>[\w.\-]+) try (?P<try>\d+) (?P<status>[A-Z]+)$")
_RETRY = re.compile(r"^retry \d+ of \d+ after try (?P<try>\d+) failed$")


def _rule_namespace(definition: dict[str, Any], task: str, rule: int, key: str) -> str | None:
    """The namespace a task's rule names for the event key, if it names one."""
    rules = definition.get("rules", {}).get(task, [])
    stack = [rules[rule - 1]["condition"]] if 0 < rule <= len(rules) else []
    while stack:
        condition = stack.pop()
        if key in condition.get("event_keys", []) and condition.get("namespace"):
            return str(condition["namespace"])
        stack.extend(condition.get("conditions", []))
    return None


def cause_link(cause: str, execution_id: str, task: str, namespace: str,
               definition: dict[str, Any] | None = None) -> str | None:
    """Where a cause points: the event on the events page, or the earlier try on the execution page.

    The cause of an event rule gives the event's key and where it was read (topic/partition/offset) but
    not its namespace: that is the rule's own when it names one, else the execution's. A cause that
    names neither an event nor a try (a command, a periodic restart, the execution's start) has no link.
    """
    if found := _ON_EVENT.match(cause):
        try:
            key = ast.literal_eval(found["key"])
        except (ValueError, SyntaxError):
            return None
        if found["rule"] and definition is not None:
            namespace = _rule_namespace(definition, found["task"], int(found["rule"]), key) or namespace
        query = {"key": key}
        source = parse_source(found["source"] or "")
        if source is not None:
            query["at"] = f"{source[1]}:{source[2]}"
        return f"/namespaces/{quote(namespace, safe='')}/events?{urlencode(query)}"
    if found := _ON_TRY.match(cause):
        return f"/executions/{quote(execution_id, safe='')}#try-{quote(found['task'])}-{found['try']}"
    if found := _RETRY.match(cause):
        return f"/executions/{quote(execution_id, safe='')}#try-{quote(task)}-{found['try']}"
    return None


# -- the rule graph -------------------------------------------------------------------------
def _edges_of(condition: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, source, label) for each input of a rule's condition: ("task", upstream, status) or
    ("event", key, condition type)."""
    if "task" in condition and "status" in condition:
        return [("task", str(condition["task"]), str(condition["status"]))]
    children = condition.get("conditions")
    if children:
        return [edge for child in children for edge in _edges_of(child)]
    kind = str(condition.get("type", ""))
    label = "" if kind == "SingleEventCondition" else kind.rsplit(".", 1)[-1]
    return [("event", str(k), label) for k in condition.get("event_keys", [])]


def rule_graph(description: dict[str, Any]) -> dict[str, Any]:
    """Nodes and edges of a workflow's rules, laid out left to right by how tasks depend on each other:
    tasks are nodes, event keys are nodes of their own, each rule's inputs are edges into its task,
    labelled with the status (task rules) or the condition (event rules) and the action unless START."""
    tasks = {t["name"]: t for t in description.get("tasks", [])}
    edges: list[dict[str, Any]] = []
    for target, rules in description.get("rules", {}).items():
        for index, rule in enumerate(rules, start=1):
            action = rule.get("action", "START")
            for kind, source, label in _edges_of(rule.get("condition", {})):
                text = " ".join(p for p in (label, "" if action == "START" else action) if p)
                edges.append({"kind": kind, "source": ("task:" if kind == "task" else "event:") + source,
                              "target": "task:" + target, "label": text, "rule": index})
    nodes: dict[str, dict[str, Any]] = {}
    for name, task in tasks.items():
        periodic = task.get("periodic_expression")
        nodes["task:" + name] = {"id": "task:" + name, "kind": "task", "label": name,
                                 "note": f"⟳ {periodic}" if periodic else task.get("operator", ""),
                                 "periodic": bool(periodic)}
    for edge in edges:
        if edge["source"] not in nodes:
            kind, _, label = edge["source"].partition(":")
            nodes[edge["source"]] = {"id": edge["source"], "kind": "external" if kind == "task" else "event",
                                     "label": label, "note": "other workflow" if kind == "task" else "event",
                                     "periodic": False}
    # Layers: the longest path from a node without inputs; a cycle (a STOP rule back upstream) is cut.
    inputs: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in edges:
        inputs[edge["target"]].append(edge["source"])
    layer: dict[str, int] = {}

    def depth(node: str, seen: frozenset[str]) -> int:
        if node not in layer:
            ups = [u for u in inputs[node] if u not in seen and u != node]
            layer[node] = 1 + max((depth(u, seen | {node}) for u in ups), default=-1)
        return layer[node]

    for node_id in nodes:
        depth(node_id, frozenset())
    for info in nodes.values():  # an event key sits just before the first task that listens to it
        if info["kind"] == "event":
            targets = [layer[e["target"]] for e in edges if e["source"] == info["id"]]
            layer[info["id"]] = max(0, min(targets, default=1) - 1)
    width, height, gap_x, gap_y, margin = 170, 46, 90, 26, 20
    columns: dict[int, list[str]] = {}
    for node_id in nodes:
        columns.setdefault(layer[node_id], []).append(node_id)
    for column, members in columns.items():
        for row, node_id in enumerate(members):
            nodes[node_id].update(x=margin + column * (width + gap_x), y=margin + row * (height + gap_y),
                                  w=width, h=height)
    for edge in edges:
        a, b = nodes[edge["source"]], nodes[edge["target"]]
        x1, y1, x2, y2 = a["x"] + width, a["y"] + height / 2, b["x"], b["y"] + height / 2
        if b["x"] <= a["x"]:  # backwards or within a column: loop under the nodes
            low = max(a["y"], b["y"]) + height + gap_y / 2
            edge["path"] = f"M{x1},{y1} C{x1 + 60},{low + 40} {x2 - 60},{low + 40} {x2},{y2}"
            edge["lx"], edge["ly"] = (x1 + x2) / 2, low + 26
        else:
            mid = (x1 + x2) / 2
            edge["path"] = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
            edge["lx"], edge["ly"] = mid, (y1 + y2) / 2 - 6
    rows = max((len(m) for m in columns.values()), default=1)
    loops = any(nodes[e["target"]]["x"] <= nodes[e["source"]]["x"] for e in edges)
    return {"nodes": list(nodes.values()), "edges": edges,
            "width": 2 * margin + (max(columns, default=0) + 1) * (width + gap_x) - gap_x,
            "height": 2 * margin + rows * (height + gap_y) - gap_y + (50 if loops else 0)}


# -- the timeline ---------------------------------------------------------------------------
def timeline(tries: list[dict[str, Any]], now: datetime | None = None) -> dict[str, Any]:
    """One bar per try on a common time axis (tries not begun yet are drawn as a mark at their start)."""
    now = now or datetime.now(timezone.utc)
    label_w, plot_w, row_h, top = 200, 640, 24, 26
    begins = [datetime.fromisoformat(t["begin_date"]) for t in tries if t["begin_date"]]
    ends = [datetime.fromisoformat(t["end_date"]) if t["end_date"] else now for t in tries if t["begin_date"]]
    t0 = min(begins, default=now)
    span = max(1.0, (max(ends, default=now) - t0).total_seconds())
    bars = []
    for row, t in enumerate(tries):
        y = top + row * row_h
        if t["begin_date"]:
            begin = datetime.fromisoformat(t["begin_date"])
            end = datetime.fromisoformat(t["end_date"]) if t["end_date"] else now
            x = label_w + plot_w * (begin - t0).total_seconds() / span
            w = max(3.0, plot_w * (end - begin).total_seconds() / span)
        else:
            x, w = label_w + plot_w, 3.0
        bars.append({"y": y, "x": round(x, 1), "w": round(w, 1), "task": t["task"], "try": t["try_number"],
                     "status": t["status"], "title": f"{t['task']} try {t['try_number']}: {t['status']}"})
    digits = 0 if span >= 20 else 1
    ticks = [{"x": round(label_w + plot_w * i / 4, 1), "label": f"+{span * i / 4:.{digits}f} s"} for i in range(5)]
    return {"bars": bars, "ticks": ticks, "width": label_w + plot_w + 40, "height": top + len(tries) * row_h + 10,
            "label_w": label_w}


# -- data for the pages ---------------------------------------------------------------------
def _definition_of(config: Config, namespace: str, workflow: str, version: int | None) -> dict[str, Any]:
    try:
        if version is not None:
            return ops.get_workflow_snapshot(workflow, version, namespace, config=config).definition
    except AIFlowError:
        pass
    found = ops.get_workflow(workflow, namespace, config=config)
    return found.definition if found is not None else {}


def execution_state(config: Config, execution_id: str) -> dict[str, Any]:
    """The execution with its tries, and the page's live parts rendered from it."""
    found = ops.get_workflow_execution(execution_id, config=config)
    if found is None:
        raise NotFound(f"workflow execution {execution_id} does not exist")
    execution = found.to_dict()
    tries = [t.to_dict() for t in ops.list_task_executions(execution_id, config=config)]
    definition = _definition_of(config, found.namespace, found.workflow, found.snapshot_version)
    for t in tries:
        t["cause_link"] = cause_link(t["cause"], execution_id, t["task"], found.namespace, definition)
    execution["cause_link"] = cause_link(found.cause, execution_id, "", found.namespace)
    alive = any(TaskStatus(t["status"]) in TASK_ALIVE_SET for t in tries)
    finished = WorkflowStatus(found.status) in WORKFLOW_FINISHED_SET and not alive
    parts = {"execution-status": _render("_status.html", status=found.status),
             "execution-message": _render("_message.html", execution=execution),
             "tries": _render("_tries.html", tries=tries, execution=execution),
             "timeline": _render("_timeline.html", tl=timeline(tries))}
    return {"execution": {**execution, "tasks": tries}, "parts": parts, "alive": alive, "finished": finished,
            "task_names": [t["name"] for t in definition.get("tasks", [])]}


def _sse(data: Any, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


class _PageRoute(APIRoute):
    """A page that fails with an aiflow error answers an HTML page saying so, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except AIFlowError as exc:
                return HTMLResponse(_render("error.html", title="Error", message=str(exc)),
                                    status_code=http_status(exc))

        return answer


def _parse_time(text: str | None) -> datetime | None:
    """A time from a form (`datetime-local` gives no zone: UTC, like every time the pages show)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise AIFlowError(f"not a time: {text!r} (use YYYY-MM-DDTHH:MM, UTC)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the pages post nothing else)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _back(path: str, notice: str = "") -> RedirectResponse:
    return RedirectResponse(path + (("&" if "?" in path else "?") + urlencode({"notice": notice}) if notice else ""),
                            status_code=303)


def _local(path: str | None, default: str = "/") -> str:
    """`path` when it is a path of this server (never another site, even as `//host`)."""
    return path if path and path.startswith("/") and not path.startswith("//") and "\\" not in path else default


def router(config: Config, token: str | None = None) -> APIRouter:
    """The pages for this configuration; `token`, when given, guards all but `/login` and `/static`."""
    session = hmac.new(token.encode(), b"aiflow pages session", hashlib.sha256).hexdigest() if token else None

    def signed_in(request: Request) -> bool:
        if session is None or token is None:
            return True
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), session.encode())

    def page_access(request: Request) -> None:
        if not signed_in(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(303, "sign in first", headers={"Location": "/login?" + urlencode({"next": target})})
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
                raise HTTPException(403, f"a form posted from {origin} is refused: use this server's own pages")

    def stream_access(request: Request) -> None:
        if not signed_in(request):
            raise HTTPException(401, "sign in first")

    open_pages = APIRouter(include_in_schema=False)
    pages = APIRouter(include_in_schema=False, route_class=_PageRoute, dependencies=[Depends(page_access)])
    streams = APIRouter(include_in_schema=False, dependencies=[Depends(stream_access)])

    def html(name: str, **values: Any) -> HTMLResponse:
        return HTMLResponse(_render(name, signed=session is not None, default_ns=config.namespace, **values))

    # -- sign-in and static files --------------------------------------------------------------
    @open_pages.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in STATIC:
            raise HTTPException(404, f"no static file {name}")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                            headers={"Cache-Control": "no-cache"})

    @open_pages.get("/login", response_class=HTMLResponse)
    def login_form(next: str = "/") -> HTMLResponse:
        return html("login.html", title="Sign in", next=_local(next), failed=False)

    @open_pages.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        target = _local(form.get("next"))
        if token is None or session is None:
            return RedirectResponse(target, status_code=303)
        if not hmac.compare_digest(form.get("token", "").strip().encode(), token.encode()):
            return HTMLResponse(_render("login.html", title="Sign in", next=target, failed=True, signed=True),
                                status_code=401)
        answer = RedirectResponse(target, status_code=303)
        answer.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/",
                          secure=request.url.scheme == "https")
        return answer

    @open_pages.post("/logout")
    def logout() -> Response:
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(COOKIE, path="/")
        return answer

    # -- namespaces and workflows --------------------------------------------------------------
    @pages.get("/", response_class=HTMLResponse)
    def index(notice: str = "") -> HTMLResponse:
        namespaces = []
        for ns in ops.list_namespaces(config=config):
            workflows = []
            for w in ops.list_workflows(ns.name, config=config):
                workflows.append({"info": w, "triggers": ops.list_workflow_triggers(w.name, ns.name, config=config),
                                  "schedules": ops.list_workflow_schedules(w.name, ns.name, config=config)})
            namespaces.append({"name": ns.name, "workflows": workflows})
        return html("index.html", title="Workflows", namespaces=namespaces, notice=notice)

    @pages.get("/namespaces/{namespace}/workflows/{workflow}", response_class=HTMLResponse)
    def workflow_page(namespace: str, workflow: str, status: str = "", page: int = 1, notice: str = "") -> HTMLResponse:
        found = ops.get_workflow(workflow, namespace, config=config)
        if found is None:
            raise NotFound(f"workflow {namespace}.{workflow} does not exist")
        page = max(1, page)
        offset = (page - 1) * PAGE_SIZE
        executions = ops.list_workflow_executions(workflow, namespace, PAGE_SIZE + 1, offset, status=status or None,
                                                  config=config)
        description = found.to_dict(with_definition=True)
        return html("workflow.html", title=f"{namespace}.{workflow}", wf=found, description=description,
                    graph=rule_graph(description), executions=executions[:PAGE_SIZE],
                    more=len(executions) > PAGE_SIZE, page=page, status=status.upper(),
                    statuses=[s.value for s in WorkflowStatus], notice=notice,
                    triggers=ops.list_workflow_triggers(workflow, namespace, config=config),
                    schedules=ops.list_workflow_schedules(workflow, namespace, config=config))

    @pages.post("/namespaces/{namespace}/workflows/{workflow}/executions")
    def start_execution(namespace: str, workflow: str) -> Response:
        execution_id = ops.start_workflow_execution(workflow, namespace, config=config)  # waits for the store
        if ops.get_workflow_execution(execution_id, config=config) is None:
            return _back(f"/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow, safe='')}",
                         f"execution {execution_id} sent; no scheduler has taken it yet")
        return _back(f"/executions/{quote(execution_id, safe='')}", "execution started")

    @pages.post("/namespaces/{namespace}/workflows/{workflow}/{action}")
    def workflow_action(namespace: str, workflow: str, action: str) -> Response:
        actions = {"enable": ops.enable_workflow, "disable": ops.disable_workflow}
        if action not in actions:
            raise NotFound(f"no such action: {action}")
        actions[action](workflow, namespace, config=config)
        return _back("/", f"{namespace}.{workflow}: {action}d")

    @pages.post("/triggers/{rule_id}/{action}")
    @pages.post("/schedules/{rule_id}/{action}")
    async def rule_action(request: Request, rule_id: int, action: str) -> Response:
        kind = request.url.path.split("/")[1]
        actions: dict[tuple[str, str], Callable[..., Any]] = {
            ("triggers", "pause"): ops.pause_workflow_trigger, ("triggers", "resume"): ops.resume_workflow_trigger,
            ("schedules", "pause"): ops.pause_workflow_schedule,
            ("schedules", "resume"): ops.resume_workflow_schedule}
        if (kind, action) not in actions:
            raise NotFound(f"no such action: {kind}/{rule_id}/{action}")
        form = await _form(request)
        await run_in_threadpool(actions[(kind, action)], rule_id, config=config)
        return _back(_local(form.get("next")), f"{kind[:-1]} {rule_id}: {action}d")

    # -- executions ----------------------------------------------------------------------------
    @pages.get("/executions/{execution_id}", response_class=HTMLResponse)
    def execution_page(execution_id: str, notice: str = "") -> HTMLResponse:
        state = execution_state(config, execution_id)
        return html("execution.html", title=f"Execution {execution_id}", ex=state["execution"],
                    parts=state["parts"], task_names=state["task_names"], finished=state["finished"],
                    notice=notice)

    @streams.get("/executions/{execution_id}/stream")
    async def execution_stream(request: Request, execution_id: str) -> StreamingResponse:
        """The execution's JSON (`execution`) and its rendered parts (`parts`) each time it changes,
        polled every second; event `end` once it is finished and no try of it is alive."""

        async def changes() -> AsyncIterator[str]:
            last, sent = "", 0.0
            while not await request.is_disconnected():
                try:
                    state = await run_in_threadpool(execution_state, config, execution_id)
                except AIFlowError as exc:
                    yield _sse({"detail": str(exc)}, "problem")
                    await asyncio.sleep(5 * POLL_SECONDS)
                    continue
                body = json.dumps(state["execution"], sort_keys=True)
                # While a try runs its bar grows: a push every few seconds even without a change.
                if body != last or (state["alive"] and time.monotonic() - sent > 3):
                    yield _sse({"execution": state["execution"], "parts": state["parts"]})
                    last, sent = body, time.monotonic()
                if state["finished"]:
                    yield _sse({}, "end")
                    return
                await asyncio.sleep(POLL_SECONDS)

        return StreamingResponse(changes(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @pages.post("/executions/{execution_id}/stop")
    def stop_execution(execution_id: str) -> Response:
        ops.stop_workflow_execution(execution_id, config=config)
        return _back(f"/executions/{quote(execution_id, safe='')}", "stop requested")

    @pages.post("/executions/{execution_id}/tasks/{task}/{action}")
    def task_action(execution_id: str, task: str, action: str) -> Response:
        actions = {"start": ops.start_task_execution, "stop": ops.stop_task_execution,
                   "restart": ops.restart_task_execution}
        if action not in actions:
            raise NotFound(f"unknown action {action!r}: start, stop or restart")
        actions[action](execution_id, task, config=config)
        return _back(f"/executions/{quote(execution_id, safe='')}", f"{action} of {task} requested")

    # -- logs ----------------------------------------------------------------------------------
    # A try's output comes from this server's $AIFLOW_HOME/logs when the try ran on this machine, else from
    # the logs topic (ops.read_task_log, ops.follow_task_log); positions are bytes of the try's log file
    # either way, so a stream resumes at the same place whichever it reads.
    @pages.get("/executions/{execution_id}/tasks/{task}/tries/{try_number}/log", response_class=HTMLResponse)
    def log_page(execution_id: str, task: str, try_number: int) -> HTMLResponse:
        attempt = ops.get_task_execution(execution_id, task, try_number, config=config)
        problem = ""
        try:
            piece: ops.TaskLog | None = ops.read_task_log(execution_id, task, try_number, tail=LOG_TAIL,
                                                          config=config)
        except (NotFound, KafkaUnavailable) as exc:
            piece, problem = None, str(exc)
        text = piece.text if piece is not None else ""
        size = piece.position if piece is not None else 0
        return html("log.html", title=f"{task} try {try_number}", attempt=attempt,
                    source=piece.source if piece is not None else "", text=text, size=size,
                    cut=piece is not None and piece.start > 0, exists=bool(text), problem=problem,
                    alive=TaskStatus(attempt.status) in TASK_ALIVE_SET)

    @streams.get("/executions/{execution_id}/tasks/{task}/tries/{try_number}/log/stream")
    async def log_stream(request: Request, execution_id: str, task: str, try_number: int,
                         start: int = 0) -> StreamingResponse:
        """The try's output from byte `start` on, as `{"text": ...}` chunks; `end` once the try has ended
        and everything is sent. Each chunk's id is the position after it, so a browser that reconnects
        (its `Last-Event-ID`) goes on from there instead of receiving the text again."""
        await run_in_threadpool(ops.get_task_execution, execution_id, task, try_number, config=config)
        resumed = request.headers.get("last-event-id", "")
        first = int(resumed) if resumed.isdigit() else max(0, start)

        async def chunks() -> AsyncIterator[str]:
            # A generator: it finds the try's output (file or topic) at its first `next`, in the thread pool.
            pieces = ops.follow_task_log(execution_id, task, try_number, start=first, idle=POLL_SECONDS,
                                         config=config)
            try:
                while not await request.is_disconnected():
                    piece = await run_in_threadpool(next, pieces, None)
                    if piece is None:
                        return
                    if piece.text:
                        yield f"id: {piece.position}\n" + _sse({"text": piece.text, "position": piece.position})
                    if piece.ended:
                        attempt = await run_in_threadpool(ops.get_task_execution, execution_id, task, try_number,
                                                          config=config)
                        yield _sse({"status": attempt.status}, "end")
                        return
            except (NotFound, KafkaUnavailable) as exc:
                yield _sse({"detail": str(exc)}, "problem")
            finally:
                await run_in_threadpool(pieces.close)

        return StreamingResponse(chunks(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- events and dead letters ---------------------------------------------------------------
    @pages.get("/namespaces/{namespace}/events", response_class=HTMLResponse)
    def events_page(namespace: str, key: str = "", since: str = "", until: str = "", at: str = "",
                    limit: int = 100) -> HTMLResponse:
        from aiflow.events.client import EventClient

        limit = min(max(1, limit), 10000)
        if at and limit < 1000:
            limit = 1000  # the event a cause points at may be older than the newest hundred
        with EventClient(config, namespace=namespace) as client:
            events = client.list_events(key or None, namespace, _parse_time(since), _parse_time(until), limit)
        rows = [e.to_dict() for e in reversed(events)]
        return html("events.html", title=f"Events of {namespace}", namespace=namespace, rows=rows, key=key,
                    since=since, until=until, at=at, limit=limit,
                    at_found=any(f"{r['partition']}:{r['offset']}" == at for r in rows))

    @streams.get("/namespaces/{namespace}/events/stream")
    async def events_stream(request: Request, namespace: str, key: str = "") -> StreamingResponse:
        """Each new event of the namespace (and key) as `{"row": <rendered row>, "event": ...}`."""
        from aiflow.events.client import EventClient

        since = datetime.now(timezone.utc) - timedelta(seconds=1)  # from when the tail was asked for

        async def events() -> AsyncIterator[str]:
            # The reading thread starts with the body (a response never read starts none) and hands
            # events to the loop, so a waiting tail holds no worker thread of the server's pool.
            loop = asyncio.get_running_loop()
            found: asyncio.Queue[dict[str, Any] | str] = asyncio.Queue()
            stop = threading.Event()

            def follow() -> None:
                try:
                    with EventClient(config, namespace=namespace) as client:
                        for event in client.iter_events(key=key or None, namespace=namespace, since=since,
                                                        follow=True, stop=stop):
                            loop.call_soon_threadsafe(found.put_nowait, event.to_dict())
                except Exception as exc:  # shown on the page; the stream ends
                    loop.call_soon_threadsafe(found.put_nowait, str(exc))

            threading.Thread(target=follow, name="aiflow-page-events", daemon=True).start()
            try:
                while not await request.is_disconnected():
                    try:
                        item = await asyncio.wait_for(found.get(), POLL_SECONDS)
                    except asyncio.TimeoutError:
                        yield ": waiting\n\n"
                        continue
                    if isinstance(item, str):
                        yield _sse({"detail": item}, "problem")
                        return
                    yield _sse({"event": item, "row": _render("_event_row.html", e=item, at="", fresh=True)})
            finally:
                stop.set()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @pages.get("/dead-letters", response_class=HTMLResponse)
    def dead_letters(limit: int = 50) -> HTMLResponse:
        from aiflow.kafka.readers import read_dead_letters

        limit = min(max(1, limit), 10000)
        rows = [d.to_dict() for d in reversed(read_dead_letters(config, limit))]
        return html("dead_letters.html", title="Dead letters", rows=rows, limit=limit)

    @pages.get("/events/new", response_class=HTMLResponse)
    def event_form(namespace: str = "", key: str = "", notice: str = "") -> HTMLResponse:
        return html("send_event.html", title="Send an event", namespace=namespace or config.namespace, key=key,
                    notice=notice)

    @pages.post("/events/new")
    async def send_event(request: Request) -> Response:
        from aiflow.events.client import EventClient

        form = await _form(request)
        namespace = form.get("namespace", "").strip() or config.namespace
        key, value = form.get("key", "").strip(), form.get("value", "")

        def send() -> Any:
            with EventClient(config, namespace=namespace) as client:
                return client.send_event(key, value or None, namespace=namespace)

        event = await run_in_threadpool(send)
        query = urlencode({"key": event.key, "at": f"{event.partition}:{event.offset}"})
        return _back(f"/namespaces/{quote(namespace, safe='')}/events?{query}", f"event {event.key} sent")

    everything = APIRouter()
    for part in (open_pages, streams, pages):
        everything.include_router(part)
    return everything
