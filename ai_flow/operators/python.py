from aiflow.sdk.operators import PythonOperator

__all__ = ["PythonOperator"]
