"""JupyterLab side of notebook jobs: "Submit as batch job" in a session.

* a Jupyter *server* extension (:mod:`.handlers`) under the server's base URL:
  ``gpuaf/parameters`` (the notebook's parameters cell), ``gpuaf/slices`` (the portal's
  slices, fetched with the session's own hub token) and ``gpuaf/submit`` (the notebook,
  its parameters and sweep checked, the environment frozen by :mod:`.freeze`, sent to
  the portal's ``POST /api/v1/jobs``);
* the prebuilt JupyterLab extension (``labextension/`` at the top of the repository,
  built into ``gpuaf/labext/labextension/``): the toolbar button, the palette command
  and the dialog.

Every session's server enables it with ``--ServerApp.jpserver_extensions=gpuaf.labext=True``
(:mod:`gpuaf.spawners.session_job`).
"""

from __future__ import annotations

from typing import Any

LABEXTENSION_NAME = "gpuaf-labextension"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "gpuaf.labext"}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from gpuaf.labext.handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("gpuaf: notebook job submission enabled (gpuaf/submit)")
