"""The service side: the seven operations (`operations`), their status projection, the status
cache and the Prefect adapter they read and write through. Runs in the shim and the CLI."""
