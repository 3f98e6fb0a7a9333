"""Prefect flows: the DAgger loop users trigger and schedule."""
