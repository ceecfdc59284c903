"""Users' home folders: ``<data_dir>/homes/<user>``, where sessions and notebook jobs work.

Sessions on the local backend run there, and notebook jobs leave their results there
(``<notebooks.output_dir>/<job id>/``). With a remote batch system the data directory
must be on a file system the workers share with the portal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from gpuaf.errors import PublicError

if TYPE_CHECKING:
    from gpuaf.settings import Settings

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


def home_of(settings: Settings, user: str, *, create: bool = True) -> Path:
    """The user's home folder (made when missing, mode 0700)."""
    if not USER_NAME.match(user) or ".." in user:
        raise PublicError(
            f"The user name {user!r} cannot name a folder: letters, digits and _ . @ + - only.",
            status=400,
        )
    home = settings.data_dir / "homes" / user
    if create:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home
