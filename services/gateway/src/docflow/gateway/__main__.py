"""`python -m docflow.gateway`: serve the API (host and port from DOCFLOW_* settings)."""

from docflow.gateway.main import run

run()
