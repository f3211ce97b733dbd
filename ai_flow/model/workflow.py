from aiflow.sdk.workflow import Workflow

__all__ = ["Workflow"]
