"""The `aios` command line (typer): thin callers of the use cases."""
