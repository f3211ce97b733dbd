from aiflow.sdk.status import TaskAction

__all__ = ["TaskAction"]
