"""The original AIFlow's import paths, kept so existing workflow files run unchanged.

A top-level package of its own (beside `aiflow`) because workflow files written for AIFlow — the
tutorial's `online_ml_workflow.py` among them — import `from ai_flow.model.workflow import Workflow`
and the like verbatim. Thin re-exports of `aiflow`; nothing is implemented here.
"""
