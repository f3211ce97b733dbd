from aiflow.sdk.conditions import Condition

__all__ = ["Condition"]
