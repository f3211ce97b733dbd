"""Kafka: client settings, topics and the local development broker. The one place for Kafka settings."""
