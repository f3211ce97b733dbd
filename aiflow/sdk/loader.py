"""Loading a workflow file: run it as a module and take its top-level Workflow objects.

`python -m aiflow.sdk.loader [--memory-mb N] FILE` prints the file's workflows as JSON (or the
error, exit 1). The upload runs it in a separate process, with a time limit and a memory cap, so
that a bad file cannot harm the uploading process and the file's imports (numpy, scikit-learn, ...)
are not loaded into it. The scheduler loads files the same way (aiflow/sdk/host.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import resource
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

from aiflow.errors import WorkflowDefinitionError, WorkflowFileError
from aiflow.sdk.workflow import NAMESPACE_ENV, Workflow, collect_created


def module_name_for(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    return f"aiflow_workflow_{path.stem.replace('-', '_')}_{digest}"


def load_workflows(path: str | os.PathLike[str]) -> list[Workflow]:
    """Execute the workflow file and return its top-level workflows, in definition order."""
    file = Path(path).resolve()
    if not file.is_file():
        raise WorkflowFileError(f"{path}: no such file")
    name = module_name_for(file)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise WorkflowFileError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(file.parent) not in sys.path:  # sibling modules import as when the file is run directly
        sys.path.insert(0, str(file.parent))
    sys.modules[name] = module  # so classes and dataclasses defined in the file can find their module
    created: list[Workflow] = []
    collect_created(created)
    try:
        spec.loader.exec_module(module)
    except WorkflowDefinitionError as exc:
        sys.modules.pop(name, None)
        line = exc.line or _line_in(file, exc)
        raise WorkflowFileError(f"{path}:{line}: {exc.message}" if line else f"{path}: {exc.message}") from None
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise WorkflowFileError(f"{path}:{exc.lineno}: SyntaxError: {exc.msg}") from None
    except BaseException as exc:  # the user's code may raise anything, SystemExit included
        sys.modules.pop(name, None)
        line = _line_in(file, exc)
        tail = "".join(traceback.format_exception(exc)[-3:]).rstrip()
        raise WorkflowFileError(f"{path}:{line}: {type(exc).__name__}: {exc}\n{tail}" if line
                                else f"{path}: {type(exc).__name__}: {exc}\n{tail}") from None
    finally:
        collect_created(None)
    # Every workflow the file created while it ran, in order: `with Workflow(...) as w:` and without `as`.
    found = {id(w): w for w in created}
    if not found:
        raise WorkflowFileError(f"{path}: defines no Workflow")
    seen: dict[tuple[str, str], None] = {}
    for wf in found.values():
        if (wf.namespace, wf.name) in seen:
            raise WorkflowFileError(f"{path}:{wf.line}: two workflows named {wf.namespace}.{wf.name}")
        seen[(wf.namespace, wf.name)] = None
    return list(found.values())


_env_lock = threading.Lock()


def load_workflow(path: str | os.PathLike[str], namespace: str, name: str) -> Workflow:
    """Load workflow `name` from the file, with `namespace` as the default namespace, as at upload."""
    with _env_lock:
        before = os.environ.get(NAMESPACE_ENV)
        os.environ[NAMESPACE_ENV] = namespace
        try:
            found = load_workflows(path)
        finally:
            if before is None:
                os.environ.pop(NAMESPACE_ENV, None)
            else:
                os.environ[NAMESPACE_ENV] = before
    for wf in found:
        if wf.name == name and wf.namespace == namespace:
            return wf
    raise WorkflowFileError(f"{path} does not define workflow {namespace}.{name}")


def _line_in(file: Path, exc: BaseException) -> int | None:
    """The line of `file` closest to where `exc` was raised."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if Path(frame.f_code.co_filename).resolve() == file:
            line = lineno
    return line


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space (0: no cap): a workflow file that allocates without end then
    fails with MemoryError, in its own process, instead of taking the machine's memory."""
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def describe_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    return [wf.describe() for wf in load_workflows(path)]


def answers_and_limits(argv: list[str]) -> tuple[IO[str], list[str]]:
    """For a process that loads user code and answers on stdout: the real stdout, kept for the answers
    alone (what the user's code prints goes to stderr), and the arguments after `--memory-mb N`, whose
    cap is now in force."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if argv[:1] == ["--memory-mb"]:
        limit_memory(int(argv[1]))
        argv = argv[2:]
    return answers, argv


def main(argv: list[str]) -> int:
    answers, argv = answers_and_limits(argv)
    if len(argv) != 1:
        result: dict[str, Any] = {"error": "usage: python -m aiflow.sdk.loader [--memory-mb N] WORKFLOW_FILE"}
    else:
        try:
            result = {"workflows": describe_file(argv[0])}
        except WorkflowFileError as exc:
            result = {"error": str(exc)}
    sys.stdout.flush()
    answers.write(json.dumps(result, default=str) + "\n")
    answers.flush()
    return 0 if "workflows" in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
