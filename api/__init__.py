"""The portal API: a FastAPI app run as a JupyterHub-managed service."""
