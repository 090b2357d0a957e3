#!/usr/bin/env bash
# Builds (once) and caches the pinned Airflow virtualenvs the tests and the demo run against.
# Airflow's constraint files are not reachable here, so each install is pinned by an upload
# cut-off just after its release (see README "Reproducible installs").
#   tools/venvs.sh [NAME ...]     NAME in: 310 313 315 317 318 (and each +t) 318c 318k user318 320 321 321c 322 33x api   (default: 318 321)
# Prints nothing on success but the venv paths; rebuilds a venv whose spec changed.
set -euo pipefail
CACHE="${AIRFLOW_SERDE_COMPAT_CACHE:-$HOME/.cache/airflow-serde-compat}"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE"

spec() {
  case "$1" in
    318) echo "2026-03-12T00:00:00Z|apache-airflow[postgres]==3.1.8 sqlalchemy<2.1 pymysql" ;;
    # The test runner's venv: 3.1.8 as above plus the test tools (newest, they are ours).
    318t) echo "2026-03-12T00:00:00Z|apache-airflow[postgres,cncf.kubernetes]==3.1.8 sqlalchemy<2.1 pymysql numpy pandas pyarrow|pytest hypothesis build orjson atheris" ;;
    # Earlier 3.1.x readers (issue 10), each pinned just after its own release; `31Nt` adds what the
    # tests/airflow run needs (the same extras and tools as 318t).
    310) echo "2025-09-26T00:00:00Z|apache-airflow[postgres]==3.1.0 sqlalchemy<2.1 pymysql" ;;
    313) echo "2025-11-15T00:00:00Z|apache-airflow[postgres]==3.1.3 sqlalchemy<2.1 pymysql" ;;
    315) echo "2025-12-13T00:00:00Z|apache-airflow[postgres]==3.1.5 sqlalchemy<2.1 pymysql" ;;
    317) echo "2026-02-05T00:00:00Z|apache-airflow[postgres]==3.1.7 sqlalchemy<2.1 pymysql" ;;
    310t) echo "2025-09-26T00:00:00Z|apache-airflow[postgres,cncf.kubernetes]==3.1.0 sqlalchemy<2.1 pymysql numpy pandas pyarrow|pytest hypothesis build orjson" ;;
    313t) echo "2025-11-15T00:00:00Z|apache-airflow[postgres,cncf.kubernetes]==3.1.3 sqlalchemy<2.1 pymysql numpy pandas pyarrow|pytest hypothesis build orjson" ;;
    315t) echo "2025-12-13T00:00:00Z|apache-airflow[postgres,cncf.kubernetes]==3.1.5 sqlalchemy<2.1 pymysql numpy pandas pyarrow|pytest hypothesis build orjson" ;;
    317t) echo "2026-02-05T00:00:00Z|apache-airflow[postgres,cncf.kubernetes]==3.1.7 sqlalchemy<2.1 pymysql numpy pandas pyarrow|pytest hypothesis build orjson" ;;
    320) echo "2026-04-08T00:00:00Z|apache-airflow[postgres]==3.2.0 pymysql" ;;
    321) echo "2026-04-23T00:00:00Z|apache-airflow[postgres]==3.2.1 pymysql" ;;
    # MySQL/MariaDB e2e only: Airflow needs mysqlclient (MySQLdb, even with a pymysql URL) and aiomysql;
    # building mysqlclient needs gcc, pkg-config and libmariadb-dev (apt) on the machine.
    # 321m adds SQLAlchemy 2.1 (3.2.1 does not cap it; the cut-off alone gives 2.0.49): on MariaDB >= 10.7 its
    # sa.Uuid() is the native UUID type, the setup whose downgrade mangles task-instance ids (README).
    318m) echo "2026-03-12T00:00:00Z|apache-airflow[postgres]==3.1.8 sqlalchemy<2.1 pymysql mysqlclient aiomysql" ;;
    321m) echo "2026-04-23T00:00:00Z|apache-airflow[postgres]==3.2.1 pymysql mysqlclient aiomysql|sqlalchemy==2.1.1" ;;
    # e2e CeleryExecutor (issue 10): 318 / 321 plus the Celery provider and the redis client, same cut-offs.
    318c) echo "2026-03-12T00:00:00Z|apache-airflow[postgres]==3.1.8 sqlalchemy<2.1 pymysql apache-airflow-providers-celery redis" ;;
    321c) echo "2026-04-23T00:00:00Z|apache-airflow[postgres]==3.2.1 pymysql apache-airflow-providers-celery redis" ;;
    322) echo "2026-05-30T00:00:00Z|apache-airflow[postgres]==3.2.2 pymysql" ;;
    # e2e "life after the rollback": the official REST client 3.1.8 (uploaded after core 3.1.8; cut-off before 3.2.0) and
    # playwright (newest, a tool of ours; it drives Debian's chromium, its own browser download is not used).
    api) echo "2026-04-07T00:00:00Z|apache-airflow-client==3.1.8|playwright" ;;
    # KubernetesExecutor e2e (issue 10): the bridged runtime needs the executor's provider, pinned by 3.1.8's cut-off.
    318k) echo "2026-03-12T00:00:00Z|apache-airflow[postgres,cncf.kubernetes]==3.1.8 sqlalchemy<2.1 pymysql" ;;
    # The official image's layout (issue 10): not a venv but a user site. `user318` is a PYTHONUSERBASE
    # that `pip install --user` filled with 3.1.8, using a plain (non-venv) CPython, $USER_SITE_PYTHON
    # (default: pyenv's 3.11); that interpreter's own site-packages is left as it is.
    user318) echo "2026-03-12T00:00:00Z|apache-airflow[postgres]==3.1.8 sqlalchemy<2.1" ;;
    33x) echo "${AIRFLOW_33X_CUTOFF:-2026-09-18T00:00:00Z}|apache-airflow[postgres]>=3.3,<3.4 pymysql" ;;
    *) echo "unknown venv $1" >&2; exit 2 ;;
  esac
}

# This machine's pip configuration adds local indexes and find-links that ignore
# --uploaded-prior-to (3.1.0/3.1.1 then got a structlog too new to import): resolve from PyPI alone.
pypi_pip() {
  PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL= PIP_CONSTRAINT= "$@"
}

user_site_python() {
  if [[ -n "${USER_SITE_PYTHON:-}" ]]; then echo "$USER_SITE_PYTHON"; return; fi
  local p; p="$(ls -d "$HOME"/.pyenv/versions/3.11.*/bin/python3.11 2>/dev/null | sort -V | tail -1)"
  [[ -n "$p" ]] || { echo "no non-venv python3.11 under ~/.pyenv: set USER_SITE_PYTHON" >&2; exit 2; }
  echo "$p"
}

# A user site (pip install --user), as the official image's /home/airflow/.local: PYTHONUSERBASE=$dir.
# pip >= 25.1 (for --uploaded-prior-to) goes into the user site too, never into the interpreter's own.
build_user() {
  local name="$1" s="$2" cutoff pkgs dir py
  cutoff="${s%%|*}"; pkgs="${s#*|}"; dir="$CACHE/v$name"; py="$(user_site_python)"
  s="$s|$py|ignore-installed"
  if [[ -f "$dir/.spec" && "$(cat "$dir/.spec")" == "$s" ]]; then echo "$dir"; return; fi
  rm -rf "$dir"; mkdir -p "$dir"
  "$py" -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)' || { echo "$py is a venv" >&2; exit 2; }
  PYTHONUSERBASE="$dir" pypi_pip "$py" -m pip install -q --disable-pip-version-check --no-warn-script-location --root-user-action=ignore --user -U "pip>=25.1" >&2
  # --ignore-installed: the whole dependency closure goes into the user site, as in the image, whose base
  # interpreter has nothing else; this machine's interpreter may carry packages of its own (wrapt, ...).
  # shellcheck disable=SC2086
  PYTHONUSERBASE="$dir" pypi_pip "$py" -m pip install -q --disable-pip-version-check --no-warn-script-location --root-user-action=ignore --user \
    --ignore-installed --uploaded-prior-to "$cutoff" $pkgs >&2
  echo "$s" > "$dir/.spec"
  echo "$dir"
}

build() {
  local name="$1" s cutoff pkgs dir extra
  s="$(spec "$name")"; cutoff="${s%%|*}"; pkgs="${s#*|}"; extra=""
  if [[ "$name" == user* ]]; then build_user "$name" "$s"; return; fi
  if [[ "$pkgs" == *"|"* ]]; then extra="${pkgs#*|}"; pkgs="${pkgs%%|*}"; fi
  dir="$CACHE/v$name"
  if [[ -f "$dir/.spec" && "$(cat "$dir/.spec")" == "$s" ]]; then
    # A plain Airflow venv (no `t`) is what an image without the bridge has: the "package uninstalled"
    # e2e phases and the install test rely on it. A hand install (a benchmark, a debugging session)
    # once made CI's pristine 3.1.8 a bridged one; undo any, so the cache always matches its spec.
    if [[ "$name" != *t ]] && compgen -G "$dir/lib/python3*/site-packages/airflow_serde_compat*" >/dev/null; then
      echo "venvs.sh: removing airflow-serde-compat installed by hand into v$name" >&2
      pypi_pip "$dir/bin/pip" uninstall -y -q --disable-pip-version-check airflow-serde-compat >&2
      rm -rf "$dir"/lib/python3*/site-packages/airflow_serde_compat*
    fi
    echo "$dir"; return
  fi
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  pypi_pip "$dir/bin/pip" install -q --disable-pip-version-check -U "pip>=25.1" >&2
  # shellcheck disable=SC2086
  pypi_pip "$dir/bin/pip" install -q --disable-pip-version-check --uploaded-prior-to "$cutoff" $pkgs >&2
  # shellcheck disable=SC2086
  [[ -n "$extra" ]] && pypi_pip "$dir/bin/pip" install -q --disable-pip-version-check $extra >&2
  echo "$s" > "$dir/.spec"
  echo "$dir"
}

names=("$@"); [[ ${#names[@]} -eq 0 ]] && names=(318 321)
# One builder per venv at a time (parallel test runs, the demo and CI may ask at once).
for n in "${names[@]}"; do
  spec "$n" >/dev/null
  ( flock 9; build "$n" ) 9>"$CACHE/.lock-$n"
done
