"""The original AIFlow's import paths, kept so existing workflow files run unchanged.

Thin re-exports of `aiflow`; nothing is implemented here.
"""
