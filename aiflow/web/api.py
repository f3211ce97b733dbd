"""The REST API, `/api/v1`: what `aiflow.ops` offers, over HTTP, with OpenAPI docs at `/docs`.

It reads the metadata store and Kafka and writes only through `ops` (and the event client for
events), so the API, the CLI and Python code behave alike. Errors are JSON `{"detail": reason}`:
404 for what does not exist, 409 for a conflict (a disabled workflow, a latest snapshot), 400 for bad
input, 503 when the database or Kafka cannot be reached.

Access: with a token configured (`webserver.token_file`, or `AIFLOW_WEBSERVER_TOKEN`), every
`/api` request needs `Authorization: Bearer <token>`; a server bound off loopback refuses to start
without one. `/healthz` and `/readyz` are open (for probes).
"""

from __future__ import annotations

import hmac
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from aiflow import ops
from aiflow.config import Config
from aiflow.errors import (
    AIFlowError,
    NotFound,
)
from aiflow.metrics import mount_metrics
from aiflow.web import pages
from aiflow.web.errors import http_status

T = TypeVar("T")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")  # what an open server answers to


class NamespaceIn(BaseModel):
    name: str
    properties: dict[str, str] = Field(default_factory=dict)


class PropertiesIn(BaseModel):
    properties: dict[str, str]


class TriggerIn(BaseModel):
    condition: dict[str, Any] = Field(description="a built-in condition as `aiflow.sdk.conditions.condition_to_spec` "
                                                  "describes it (SingleEventCondition, MeetAnyCondition, ...)")


def _builtin_condition(spec: Any) -> bool:
    """Whether a condition spec names built-in conditions only: a class of the user's own would be imported
    into the server itself (an upload, by contrast, loads the file in a process of its own)."""
    if not isinstance(spec, dict) or spec.get("type") == "class":
        return False
    return all(_builtin_condition(c) for c in spec.get("conditions", []))


class ScheduleIn(BaseModel):
    expression: str = Field(description="`cron@<5 fields>` (UTC) or `interval@<days> <hours> <minutes> <seconds>`")


class EventIn(BaseModel):
    key: str
    value: str | None = None
    namespace: str | None = None


def _save(upload: UploadFile, folder: Path, suffix: str = "") -> Path:
    """An uploaded file, written into `folder` under its own base name (never a path of the client's)."""
    name = Path(upload.filename or "").name
    if not name or name in (".", "..") or not name.endswith(suffix):
        raise HTTPException(400, f"bad file name {upload.filename!r}" + (f": a {suffix} file is expected" if suffix
                                                                         else ""))
    target = folder / name
    with open(target, "wb") as out:
        shutil.copyfileobj(upload.file, out)
    return target


def create_app(config: Config, token: str | None = None) -> FastAPI:
    """The application for this configuration; `token`, when given, guards every `/api` route."""
    app = FastAPI(title="aiflow", version="1", description="Event-driven workflows on Kafka: the REST API.")
    if token is None:
        # Open, so on loopback only: answer only to loopback names, so a page whose name another site
        # re-points at 127.0.0.1 (DNS rebinding) cannot read or drive it.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_NAMES))
    config = config.with_overrides(**{"api.url": ""})  # the server is where the database is: never a client of itself

    @app.exception_handler(AIFlowError)
    async def aiflow_error(request: Request, exc: AIFlowError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=http_status(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": f"bad request: {reasons}"}, status_code=400)

    def authorized(request: Request) -> None:
        # A browser sends a cross-site POST without asking first (a form, a multipart upload): another
        # site's page must not start, stop or upload through a server this browser can reach.
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            if request.headers.get("sec-fetch-site") == "cross-site" or (
                    origin is not None and urlsplit(origin).netloc != request.headers.get("host")):
                raise HTTPException(403, f"a request from another site ({origin}) is refused")
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise HTTPException(401, "a bearer token is required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    def call(f: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return f(*args, **kwargs, config=config)

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(authorized)])

    # -- namespaces ----------------------------------------------------------------------------
    @api.get("/namespaces", tags=["namespaces"])
    def list_namespaces(limit: int | None = Query(None, ge=1), offset: int | None = Query(None, ge=0)) -> Any:
        return [n.to_dict() for n in call(ops.list_namespaces, limit, offset)]

    @api.post("/namespaces", status_code=201, tags=["namespaces"])
    def add_namespace(body: NamespaceIn) -> Any:
        return call(ops.add_namespace, body.name, body.properties).to_dict()

    @api.get("/namespaces/{namespace}", tags=["namespaces"])
    def get_namespace(namespace: str) -> Any:
        found = call(ops.get_namespace, namespace)
        if found is None:
            raise NotFound(f"namespace {namespace} does not exist")
        return found.to_dict()

    @api.put("/namespaces/{namespace}", tags=["namespaces"])
    def update_namespace(namespace: str, body: PropertiesIn) -> Any:
        """Replace the namespace's properties."""
        return call(ops.update_namespace, namespace, body.properties).to_dict()

    @api.delete("/namespaces/{namespace}", status_code=204, tags=["namespaces"])
    def delete_namespace(namespace: str) -> None:
        call(ops.delete_namespace, namespace)

    # -- workflows -----------------------------------------------------------------------------
    @api.get("/namespaces/{namespace}/workflows", tags=["workflows"])
    def list_workflows(namespace: str, limit: int | None = Query(None, ge=1),
                       offset: int | None = Query(None, ge=0)) -> Any:
        return [w.to_dict() for w in call(ops.list_workflows, namespace, limit, offset)]

    @api.post("/namespaces/{namespace}/workflows", status_code=201, tags=["workflows"])
    def upload_workflows(namespace: str, file: UploadFile = File(..., description="the workflow file (.py)"),
                         files: list[UploadFile] = File(default=[], description="files the tasks need (artifacts)"),
                         ) -> Any:
        """Upload a workflow file with its artifacts (each a file, kept under its own name beside the
        workflow file; send a folder as a zip and unpack it in the task). Refused with the file's line
        when it does not load, as `aiflow workflow upload` is."""
        with tempfile.TemporaryDirectory(prefix="aiflow-api-upload-") as tmp:
            folder = Path(tmp)
            flow = _save(file, folder, suffix=".py")
            artifacts = [_save(f, folder) for f in files]
            if len({p.name for p in [flow, *artifacts]}) != len(artifacts) + 1:
                raise HTTPException(400, "two uploaded files have the same name")
            return [w.to_dict() for w in call(ops.upload_workflows, flow, artifacts, namespace=namespace)]

    @api.get("/namespaces/{namespace}/workflows/{workflow}", tags=["workflows"])
    def get_workflow(namespace: str, workflow: str) -> Any:
        found = call(ops.get_workflow, workflow, namespace)
        if found is None:
            raise NotFound(f"workflow {namespace}.{workflow} does not exist")
        return found.to_dict(with_definition=True)

    @api.post("/namespaces/{namespace}/workflows/{workflow}/enable", tags=["workflows"])
    def enable_workflow(namespace: str, workflow: str) -> Any:
        return call(ops.enable_workflow, workflow, namespace).to_dict()

    @api.post("/namespaces/{namespace}/workflows/{workflow}/disable", tags=["workflows"])
    def disable_workflow(namespace: str, workflow: str) -> Any:
        return call(ops.disable_workflow, workflow, namespace).to_dict()

    @api.delete("/namespaces/{namespace}/workflows/{workflow}", status_code=204, tags=["workflows"])
    def delete_workflow(namespace: str, workflow: str) -> None:
        call(ops.delete_workflow, workflow, namespace)

    @api.get("/namespaces/{namespace}/workflows/{workflow}/snapshots", tags=["workflows"])
    def list_snapshots(namespace: str, workflow: str) -> Any:
        return [s.to_dict() for s in call(ops.list_workflow_snapshots, workflow, namespace)]

    @api.get("/namespaces/{namespace}/workflows/{workflow}/snapshots/{version}", tags=["workflows"])
    def get_snapshot(namespace: str, workflow: str, version: int) -> Any:
        """One snapshot version with the definition it announced."""
        return call(ops.get_workflow_snapshot, workflow, version, namespace).to_dict(with_definition=True)

    @api.delete("/namespaces/{namespace}/workflows/{workflow}/snapshots/{version}", status_code=204,
                tags=["workflows"])
    def delete_snapshot(namespace: str, workflow: str, version: int) -> None:
        """Delete an earlier version (409 for the latest, or one an unfinished execution runs)."""
        call(ops.delete_workflow_snapshot, workflow, version, namespace)

    # -- executions ----------------------------------------------------------------------------
    @api.get("/namespaces/{namespace}/workflows/{workflow}/executions", tags=["executions"])
    def list_executions(namespace: str, workflow: str, status: str | None = None,
                        limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0)) -> Any:
        """Newest first; `status` keeps those with that status (RUNNING, SUCCESS, FAILED, STOPPED)."""
        return [e.to_dict() for e in call(ops.list_workflow_executions, workflow, namespace, limit, offset,
                                          status=status)]

    @api.post("/namespaces/{namespace}/workflows/{workflow}/executions", status_code=201, tags=["executions"])
    def start_execution(namespace: str, workflow: str) -> Any:
        """Start an execution of the workflow's latest snapshot; returns its id."""
        return {"id": call(ops.start_workflow_execution, workflow, namespace, wait=0)}

    @api.get("/executions/{execution_id}", tags=["executions"])
    def get_execution(execution_id: str) -> Any:
        """The execution with the tries of its tasks."""
        found = call(ops.get_workflow_execution, execution_id)
        if found is None:
            raise NotFound(f"workflow execution {execution_id} does not exist")
        return {**found.to_dict(), "tasks": [t.to_dict() for t in call(ops.list_task_executions, execution_id)]}

    @api.delete("/executions/{execution_id}", status_code=204, tags=["executions"])
    def delete_execution(execution_id: str) -> None:
        """Delete a finished execution (409 while it runs)."""
        call(ops.delete_workflow_execution, execution_id)

    @api.get("/executions/{execution_id}/tasks/{task}", tags=["executions"])
    def get_task_execution(execution_id: str, task: str, try_number: int | None = Query(None, ge=1)) -> Any:
        """A try of the task: the latest, or `try_number`."""
        return call(ops.get_task_execution, execution_id, task, try_number).to_dict()

    @api.post("/executions/{execution_id}/stop", status_code=202, tags=["executions"])
    def stop_execution(execution_id: str) -> Any:
        call(ops.stop_workflow_execution, execution_id)
        return {"id": execution_id, "stopping": True}

    @api.post("/executions/{execution_id}/tasks/{task}/{action}", status_code=202, tags=["executions"])
    def task_action(execution_id: str, task: str, action: str) -> Any:
        """`action`: start, stop or restart the task in the execution."""
        commands = {"start": ops.start_task_execution, "stop": ops.stop_task_execution,
                    "restart": ops.restart_task_execution}
        if action not in commands:
            raise HTTPException(400, f"unknown action {action!r}: start, stop or restart")
        call(commands[action], execution_id, task)
        return {"id": execution_id, "task": task, "action": action}

    # -- triggers and schedules ----------------------------------------------------------------
    @api.get("/namespaces/{namespace}/workflows/{workflow}/triggers", tags=["triggers and schedules"])
    def list_triggers(namespace: str, workflow: str) -> Any:
        return [t.to_dict() for t in call(ops.list_workflow_triggers, workflow, namespace)]

    @api.post("/namespaces/{namespace}/workflows/{workflow}/triggers", status_code=201,
              tags=["triggers and schedules"])
    def add_trigger(namespace: str, workflow: str, body: TriggerIn) -> Any:
        """Start a new execution whenever the condition is met (built-in conditions only)."""
        from aiflow.sdk.conditions import WorkflowRule, condition_from_spec

        if not _builtin_condition(body.condition):
            raise HTTPException(400, "a trigger over the API takes built-in conditions only: add one of your own "
                                     "condition class with aiflow.ops where the database is reachable")
        try:
            rule = WorkflowRule(condition_from_spec(body.condition))
        except (KeyError, TypeError, ValueError) as exc:
            raise HTTPException(400, f"bad condition {body.condition}: {exc!r}") from None
        return call(ops.add_workflow_trigger, rule, workflow, namespace).to_dict()

    @api.get("/triggers/{trigger_id}", tags=["triggers and schedules"])
    def get_trigger(trigger_id: int) -> Any:
        return call(ops.get_workflow_trigger, trigger_id).to_dict()

    @api.get("/schedules/{schedule_id}", tags=["triggers and schedules"])
    def get_schedule(schedule_id: int) -> Any:
        return call(ops.get_workflow_schedule, schedule_id).to_dict()

    @api.get("/namespaces/{namespace}/workflows/{workflow}/schedules", tags=["triggers and schedules"])
    def list_schedules(namespace: str, workflow: str) -> Any:
        return [s.to_dict() for s in call(ops.list_workflow_schedules, workflow, namespace)]

    @api.post("/namespaces/{namespace}/workflows/{workflow}/schedules", status_code=201,
              tags=["triggers and schedules"])
    def add_schedule(namespace: str, workflow: str, body: ScheduleIn) -> Any:
        return call(ops.add_workflow_schedule, body.expression, workflow, namespace).to_dict()

    rule_actions: dict[tuple[str, str], Callable[..., Any]] = {
        ("triggers", "pause"): ops.pause_workflow_trigger, ("triggers", "resume"): ops.resume_workflow_trigger,
        ("schedules", "pause"): ops.pause_workflow_schedule, ("schedules", "resume"): ops.resume_workflow_schedule}

    @api.post("/{kind}/{rule_id}/{action}", tags=["triggers and schedules"])
    def rule_action(kind: str, rule_id: int, action: str) -> Any:
        """Pause or resume a trigger or a schedule (`kind`: triggers or schedules)."""
        f = rule_actions.get((kind, action))
        if f is None:
            raise HTTPException(404, f"no such action: {kind}/{rule_id}/{action}")
        return call(f, rule_id).to_dict()

    @api.delete("/{kind}/{rule_id}", status_code=204, tags=["triggers and schedules"])
    def delete_rule(kind: str, rule_id: int) -> None:
        deletes = {"triggers": ops.delete_workflow_trigger, "schedules": ops.delete_workflow_schedule}
        if kind not in deletes:
            raise HTTPException(404, f"no such resource: {kind}")
        call(deletes[kind], rule_id)

    # -- events and dead letters ---------------------------------------------------------------
    @api.post("/events", status_code=201, tags=["events"])
    def send_event(body: EventIn) -> Any:
        """Send an event; returns it once it is durable, with its offset."""
        from aiflow.events.client import EventClient

        with EventClient(config) as client:
            return client.send_event(body.key, body.value, namespace=body.namespace).to_dict()

    @api.get("/namespaces/{namespace}/events", tags=["events"])
    def list_events(namespace: str, key: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, limit: int = Query(100, ge=1, le=10000)) -> Any:
        """Stored events of the namespace, oldest first (the newest `limit`); `since` and `until` are
        ISO times, UTC unless they say otherwise."""
        from aiflow.events.client import EventClient

        since, until = (t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t
                        for t in (since, until))
        with EventClient(config) as client:
            return [e.to_dict() for e in client.list_events(key, namespace, since, until, limit)]

    @api.get("/dead-letters", tags=["events"])
    def list_dead_letters(limit: int = Query(50, ge=1, le=10000)) -> Any:
        """Records the services could not read or apply, with where they were read and why."""
        from aiflow.kafka.readers import read_dead_letters

        return [d.to_dict() for d in read_dead_letters(config, limit)]

    app.include_router(api)

    # -- health --------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    def healthz() -> Any:
        """The server answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> Any:
        """The database answers (503 otherwise)."""
        ops.list_namespaces(limit=1, config=config)
        return {"status": "ready"}

    mount_metrics(app)  # /metrics, open like the probes
    app.include_router(pages.router(config, token))  # the pages: /, workflows, executions, logs, events
    return app
