"""The metadata store (SQL), its migrations, and the blob store of workflow snapshots."""
