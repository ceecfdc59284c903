# The JupyterHub configuration file of gpuaf: everything comes from the settings file
# named by $GPUAF_SETTINGS (see `gpuaf hub`).
import os

from gpuaf.hub.config import configure
from gpuaf.settings import ENV_VAR, load_settings

c = get_config()  # noqa: F821 - provided by JupyterHub
configure(c, load_settings(os.environ.get(ENV_VAR) or None), os.environ.get(ENV_VAR, ""))
