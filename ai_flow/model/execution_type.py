from aiflow.sdk.status import ExecutionType

__all__ = ["ExecutionType"]
