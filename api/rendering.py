"""An executed notebook for the browser: HTML with scripts switched off, or the file."""

from __future__ import annotations

from pathlib import Path

import nbformat
from fastapi.responses import HTMLResponse, Response

# outputs are the user's: the page may show them but never run their scripts
SANDBOX = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:"


def executed_notebook(path: Path, fmt: str, name: str) -> Response:
    if fmt == "ipynb":
        headers = {"Content-Disposition": f'attachment; filename="{name}.ipynb"'}
        return Response(path.read_bytes(), media_type="application/x-ipynb+json", headers=headers)
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    exporter = HTMLExporter(template_name="classic")
    exporter.exclude_input_prompt = False
    body, _resources = exporter.from_notebook_node(nb)
    return HTMLResponse(body, headers={"Content-Security-Policy": SANDBOX})
