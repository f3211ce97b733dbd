from aiflow.sdk.workflow import Operator

AIFlowOperator = Operator

__all__ = ["AIFlowOperator", "Operator"]
