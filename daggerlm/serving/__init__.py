"""Model servers the pipeline talks to over HTTP: started and stopped for a stage, or already running."""
