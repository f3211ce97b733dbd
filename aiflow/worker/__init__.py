"""The worker: runs task tries in processes of their own."""
