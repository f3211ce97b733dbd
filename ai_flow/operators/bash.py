from aiflow.sdk.operators import BashOperator

__all__ = ["BashOperator"]
