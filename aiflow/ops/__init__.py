"""The Python API that the CLI and users share: namespaces, workflows, snapshots, executions and tasks,
triggers and schedules.

Every function takes an optional `config` (default: `Config.load()`); `namespace=None` means the
configured default namespace. Errors are `aiflow.errors` exceptions with a message that says what
to do.

The functions change the store and tell the rest of the system through Kafka; `_publish` is the only
module here that talks to Kafka.
"""

from aiflow.ops.executions import (
    ExecutionInfo,
    TaskExecutionInfo,
    TaskLog,
    delete_workflow_execution,
    follow_task_log,
    get_task_execution,
    get_workflow_execution,
    list_task_executions,
    list_workflow_executions,
    new_execution_id,
    read_task_log,
    restart_task_execution,
    start_task_execution,
    start_workflow_execution,
    stop_task_execution,
    stop_workflow_execution,
    stop_workflow_executions,
    task_log_path,
    wait_for_execution,
)
from aiflow.ops.namespaces import (
    DEFAULT_NAMESPACE,
    NamespaceInfo,
    add_namespace,
    delete_namespace,
    get_namespace,
    list_namespaces,
    update_namespace,
)
from aiflow.ops.snapshots import (
    SnapshotInfo,
    delete_workflow_snapshot,
    delete_workflow_snapshots,
    get_workflow_snapshot,
    list_workflow_snapshots,
)
from aiflow.ops.workflow_rules import (
    ScheduleInfo,
    TriggerInfo,
    add_workflow_schedule,
    add_workflow_trigger,
    delete_workflow_schedule,
    delete_workflow_schedules,
    delete_workflow_trigger,
    delete_workflow_triggers,
    get_workflow_schedule,
    get_workflow_trigger,
    list_workflow_schedules,
    list_workflow_triggers,
    pause_workflow_schedule,
    pause_workflow_trigger,
    resume_workflow_schedule,
    resume_workflow_trigger,
)
from aiflow.ops.workflows import (
    WorkflowInfo,
    delete_workflow,
    disable_workflow,
    enable_workflow,
    get_workflow,
    inspect_workflow_file,
    list_workflows,
    upload_workflows,
)

__all__ = [
    # namespaces
    "DEFAULT_NAMESPACE", "NamespaceInfo", "add_namespace", "delete_namespace", "get_namespace", "list_namespaces",
    "update_namespace",
    # workflows
    "WorkflowInfo", "delete_workflow", "disable_workflow", "enable_workflow", "get_workflow", "inspect_workflow_file",
    "list_workflows", "upload_workflows",
    # snapshots
    "SnapshotInfo", "delete_workflow_snapshot", "delete_workflow_snapshots", "get_workflow_snapshot",
    "list_workflow_snapshots",
    # executions and tasks
    "ExecutionInfo", "TaskExecutionInfo", "TaskLog", "delete_workflow_execution", "follow_task_log",
    "get_task_execution", "get_workflow_execution", "list_task_executions", "list_workflow_executions",
    "new_execution_id", "read_task_log", "restart_task_execution",
    "start_task_execution", "start_workflow_execution", "stop_task_execution", "stop_workflow_execution",
    "stop_workflow_executions", "task_log_path", "wait_for_execution",
    # triggers and schedules
    "ScheduleInfo", "TriggerInfo", "add_workflow_schedule", "add_workflow_trigger", "delete_workflow_schedule",
    "delete_workflow_schedules", "delete_workflow_trigger", "delete_workflow_triggers", "get_workflow_schedule",
    "get_workflow_trigger", "list_workflow_schedules", "list_workflow_triggers", "pause_workflow_schedule",
    "pause_workflow_trigger", "resume_workflow_schedule", "resume_workflow_trigger",
]
