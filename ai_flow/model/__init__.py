"""`ai_flow.model`: re-exports of aiflow.sdk under the original module names."""
