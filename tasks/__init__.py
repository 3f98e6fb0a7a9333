"""Prefect tasks: thin wrappers over the pipeline's stages (run by DVC) and artifacts."""
