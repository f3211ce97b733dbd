from aiflow.sdk.state import Context

__all__ = ["Context"]
