"""The web server: the REST API (and, to come, the pages and metrics)."""
