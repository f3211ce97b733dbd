"""`ai_flow.ops`: the original Python API names, over aiflow.ops."""

from aiflow.ops import (
    add_namespace,
    delete_namespace,
    delete_workflow,
    delete_workflow_snapshot,
    disable_workflow,
    enable_workflow,
    get_namespace,
    get_workflow,
    get_workflow_snapshot,
    list_namespaces,
    list_workflow_snapshots,
    list_workflows,
    update_namespace,
    upload_workflows,
)

list_namespace = list_namespaces

__all__ = [
    "add_namespace", "delete_namespace", "delete_workflow", "delete_workflow_snapshot", "disable_workflow",
    "enable_workflow", "get_namespace", "get_workflow", "get_workflow_snapshot", "list_namespace",
    "list_namespaces", "list_workflow_snapshots", "list_workflows", "update_namespace", "upload_workflows",
]
