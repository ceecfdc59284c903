"""The JupyterHub side: configuration built from the settings, IAM login, page overrides."""
