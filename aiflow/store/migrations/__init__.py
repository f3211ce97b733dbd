"""The store's schema migrations: Alembic revisions in versions/, run by store.db."""

# The newest revision in versions/ (a test checks it against Alembic's own view): a database already there is
# recognised with one query, without importing Alembic (store.db) or SQLAlchemy (store.reads).
HEAD_REVISION = "0002"
