# Shared steps of scripts/demo and scripts/test.

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "gpuaf needs $tool; install it first" >&2; exit 1; }
  done
}

install_system_packages() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  # a real Slurm for the tests (daemons live in /usr/sbin, often not on a user's PATH)
  { command -v sbatch && { command -v slurmctld || [ -x /usr/sbin/slurmctld ]; }; } >/dev/null \
    || missing+=(slurm-wlm)
  { command -v munged || [ -x /usr/sbin/munged ]; } >/dev/null || missing+=(munge)
  [ ${#missing[@]} -eq 0 ] && return
  step "installing ${missing[*]} (Debian packages)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_python() {  # $1: extras, e.g. "[test]"
  step "installing the gpuaf Python package into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".$1"
}

install_node() {
  step "installing configurable-http-proxy and the demo identity provider (npm)"
  npm ci --no-audit --no-fund --loglevel=error
}

build_portal_ui() {  # the portal pages' script (portal-ui/), served from api/static/
  step "building the portal pages' script (npm)"
  npm ci --prefix portal-ui --no-audit --no-fund --loglevel=error
  npm run --prefix portal-ui --silent build >/dev/null
}

build_labextension() {  # the JupyterLab extension of sessions (labextension/README.md)
  step "building the JupyterLab extension (npm)"
  local core  # the installed JupyterLab's shared package versions
  core="$(.venv/bin/python -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')"
  npm ci --prefix labextension --no-audit --no-fund --loglevel=error
  JUPYTERLAB_CORE="$core" npm run --prefix labextension --silent build >/dev/null
  mkdir -p .venv/share/jupyter/labextensions
  ln -sfn "$PWD/gpuaf/labext/labextension" .venv/share/jupyter/labextensions/gpuaf-labextension
}
