"""End-to-end rollback harness: real Airflow processes, real DB, real `airflow db downgrade`.

Used by tests/e2e/test_rollback.py (pytest) and tools/demo.py (narrated). Runs with any python3 >= 3.9 and only
the stdlib: every Airflow command runs in its own pinned venv (tools/venvs.sh) as a subprocess.

Scenario (one DB, one writer version W, see dags/e2e_rollback_dag.py for the choreography):
  pre phase   W components run the DAG until the *_before tasks are frozen (SCHEDULED, pool 0) and the *_after
              tasks are deferred; stop everything.
  downgrade   `airflow db downgrade -n 3.1.8 -y` with W's install (skipped for the oracle, W == 3.1.8).
  snapshot    copy of the downgraded DB for the "no bridge" check.
  post phase  3.1.8 (+bridge, AIRFLOW_SERDE_COMPAT=1) components on the DB; pool restored, gate "after" opened;
              wait until every TI is finished and the deadline callback ran.
  nobridge    3.1.8 scheduler + triggerer with AIRFLOW_SERDE_COMPAT unset on the snapshot: expect the crash.
              With executor="celery" instead: every component bridged but the Celery worker, on the snapshot:
              expect the resumed tasks to fail on the worker (run_nobridge_worker).

executor="celery" (issue 10): every phase runs the real CeleryExecutor; `airflow celery worker` is a component of
its own, Redis (E2E_REDIS_URL, default redis://127.0.0.1:6379/0) the broker, the PostgreSQL metadata DB the result
backend; venvs NAMEc (tools/venvs.sh: + apache-airflow-providers-celery, redis).
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parents[2]
DAGS_SRC = pathlib.Path(__file__).resolve().parent / "dags"
CACHE = pathlib.Path(os.environ.get("AIRFLOW_SERDE_COMPAT_CACHE", pathlib.Path.home() / ".cache/airflow-serde-compat"))
DAG_ID = "e2e_rollback"
POOL = "e2e_frozen"
POOL_SLOTS = 16
BEFORE_TASKS = ["rich_before", "empty_before", "fail_before", "timeout_before", "sensor_before"]
AFTER_TASKS = ["rich_after", "none_after", "sensor_after"]
# Deferred by the writer and still deferred when the reader stops (its gate opens only after upgrading again,
# afterlife.py); its twin is the same deferral resumed by the writer before the rollback, the oracle.
STAYS_DEFERRED = ["reup_after"]
TWINS = {"reup_after": "reup_twin"}
CRASH_RE = re.compile(r"KeyError: <Encoding\.VAR: '__var'>")
WORKER = "celery-worker"
# 3.1.8 (task-sdk 1.1.8) cannot serialize a uuid.UUID XCom at all (push_uuid fails natively), so these tasks
# have no native oracle; test_with_bridge_uuid_xcom_reads_like_the_writer compares them with the writer instead.
UUID_TASKS = {"push_uuid", "pull_uuid_now", "pull_uuid_after"}
TERMINAL = {"success", "failed", "upstream_failed", "skipped", "removed"}
VERSION_OF = {"310": "3.1.0", "313": "3.1.3", "315": "3.1.5", "317": "3.1.7", "318": "3.1.8", "320": "3.2.0", "321": "3.2.1", "322": "3.2.2", "33x": "3.3.x"}


def log(msg: str) -> None:
    print(msg, flush=True)


class E2EError(AssertionError):
    pass


# ----------------------------------------------------------------------------------------------------------------
# venvs
# ----------------------------------------------------------------------------------------------------------------
def venv(name: str) -> pathlib.Path:
    """Build (cached) and return the venv for NAME via tools/venvs.sh."""
    out = subprocess.run(["bash", str(REPO / "tools/venvs.sh"), name], check=True, stdout=subprocess.PIPE,
                         text=True, timeout=1800).stdout.split()
    return pathlib.Path(out[-1])


def bridge_venv(base_name: str = "318") -> pathlib.Path:
    """v318-bridge: a dedicated venv with exactly v318's packages + a fresh non-editable install of /work/main.

    Built once (from v318's `pip freeze`, warm pip cache), the bridge itself is force-reinstalled on every call
    because its source changes. Raises E2EError (with pip's output) if the package cannot be installed.
    """
    base = venv(base_name)
    target = CACHE / f"v{base_name}-bridge"
    freeze = subprocess.run([str(base / "bin/pip"), "freeze", "--disable-pip-version-check"], check=True,
                            stdout=subprocess.PIPE, text=True).stdout
    freeze = "\n".join(l for l in freeze.splitlines() if not l.lower().startswith(("airflow-serde-compat", "-e ")))
    stamp = target / ".base-freeze"
    if not (stamp.exists() and stamp.read_text() == freeze):
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        subprocess.run([str(target / "bin/pip"), "install", "-q", "--disable-pip-version-check", "-U", "pip>=25.1"],
                       check=True)
        req = target / "requirements.txt"
        req.write_text(freeze + "\n")
        subprocess.run([str(target / "bin/pip"), "install", "-q", "--disable-pip-version-check", "--no-deps", "-r",
                        str(req)], check=True, timeout=1800)
        stamp.write_text(freeze)
    p = subprocess.run([str(target / "bin/pip"), "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--force-reinstall", str(REPO)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    if p.returncode:
        raise E2EError(f"could not install the bridge from {REPO} into {target}:\n{p.stdout[-3000:]}")
    pths = list((target / "lib").glob("python3*/site-packages/*.pth"))
    chk = subprocess.run([str(target / "bin/python"), "-c", "import airflow_serde_compat, sys; print('ok')"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    if chk.returncode:
        raise E2EError(f"bridge installed but `import airflow_serde_compat` fails:\n{chk.stdout[-3000:]}")
    if not any("serde" in p.name for p in pths):
        log(f"  note: no *serde*.pth in {target} site-packages (found: {[p.name for p in pths]})")
    return target


# ----------------------------------------------------------------------------------------------------------------
# databases
# ----------------------------------------------------------------------------------------------------------------
class Database:
    kind = "?"

    def url(self) -> str: ...
    def create(self) -> None: ...
    def drop(self) -> None: ...
    def snapshot(self, suffix: str) -> "Database": ...
    def query(self, sql: str) -> list[tuple]: ...

    def execute(self, sql: str) -> None:
        self.query(sql)


class SqliteDB(Database):
    kind = "sqlite"

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)

    def url(self):
        return f"sqlite:///{self.path}"

    def create(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def drop(self):
        for p in (self.path, pathlib.Path(f"{self.path}-wal"), pathlib.Path(f"{self.path}-shm")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def snapshot(self, suffix):
        dst = SqliteDB(self.path.with_name(f"{self.path.stem}_{suffix}.db"))
        src = sqlite3.connect(str(self.path))
        try:
            out = sqlite3.connect(str(dst.path))
            src.backup(out)
            out.close()
        finally:
            src.close()
        return dst

    def query(self, sql):
        con = sqlite3.connect(str(self.path), timeout=30)
        try:
            cur = con.execute(sql)
            rows = cur.fetchall()
            con.commit()
            return rows
        finally:
            con.close()


class PostgresDB(Database):
    kind = "postgres"

    def __init__(self, name: str, host="127.0.0.1", port=5432, user="postgres"):
        self.name, self.host, self.port, self.user = name, host, port, user

    def url(self):
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.name}"

    def _psql(self, sql, db="postgres"):
        p = subprocess.run(["psql", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", db, "-X", "-q",
                            "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        if p.returncode:
            raise E2EError(f"psql failed: {sql[:200]}\n{p.stderr}")
        return [tuple(l.split("\t")) for l in p.stdout.splitlines() if l != ""]

    def create(self):
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._psql(f'CREATE DATABASE "{self.name}"')

    def drop(self):
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def snapshot(self, suffix):
        dst = PostgresDB(f"{self.name}_{suffix}", self.host, self.port, self.user)
        dst._psql(f'DROP DATABASE IF EXISTS "{dst.name}" WITH (FORCE)')
        self._psql(f'CREATE DATABASE "{dst.name}" TEMPLATE "{self.name}"')
        return dst

    def query(self, sql):
        return self._psql(sql, db=self.name)


class MysqlDB(Database):
    kind = "mysql"

    def __init__(self, name: str, host="127.0.0.1", port=3306, user="root"):
        self.name, self.host, self.port, self.user = name, host, port, user

    def url(self):
        return f"mysql+pymysql://{self.user}@{self.host}:{self.port}/{self.name}"

    def _mysql(self, sql, db=None):
        cmd = ["mysql", "-h", self.host, "-P", str(self.port), "-u", self.user, "-N", "-B"]
        if db:
            cmd += [db]
        p = subprocess.run(cmd + ["-e", sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        if p.returncode:
            raise E2EError(f"mysql failed: {sql[:200]}\n{p.stderr}")
        return [tuple(l.split("\t")) for l in p.stdout.splitlines() if l != ""]

    def create(self):
        self._mysql(f"DROP DATABASE IF EXISTS `{self.name}`; CREATE DATABASE `{self.name}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")

    def drop(self):
        self._mysql(f"DROP DATABASE IF EXISTS `{self.name}`")

    def snapshot(self, suffix):
        dst = MysqlDB(f"{self.name}_{suffix}", self.host, self.port, self.user)
        dst.create()
        dump = subprocess.run(["mysqldump", "-h", self.host, "-P", str(self.port), "-u", self.user, self.name],
                              stdout=subprocess.PIPE, check=True, timeout=600)
        subprocess.run(["mysql", "-h", self.host, "-P", str(self.port), "-u", self.user, dst.name], input=dump.stdout,
                       check=True, timeout=600)
        return dst

    def query(self, sql):
        return self._mysql(sql, db=self.name)


def make_db(kind: str, workdir: pathlib.Path, tag: str) -> Database:
    name = f"serde_compat_e2e_{os.getpid()}_{tag}"
    if kind == "sqlite":
        return SqliteDB(workdir / "airflow.db")
    if kind == "postgres":
        return PostgresDB(name)
    if kind == "mysql":
        return MysqlDB(name)
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: pathlib.Path, n: int = 40) -> str:
    try:
        lines = pathlib.Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"<{path} missing>"
    return "\n".join(lines[-n:])


def _procs_with_marker(marker: str) -> list[int]:
    """All live processes whose environment carries E2E_RUN_MARKER=marker (every descendant inherits it)."""
    needle = f"E2E_RUN_MARKER={marker}".encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(d))
        except OSError:
            continue
    return found


class Component:
    def __init__(self, name, popen, logpath, env=None):
        self.name, self.popen, self.log = name, popen, logpath
        self.env = env or {}

    def alive(self):
        return self.popen.poll() is None


class AirflowSite:
    """One AIRFLOW_HOME + DB; starts/stops components of a given venv against it."""

    def __init__(self, workdir: pathlib.Path, db: Database, fire_after: int, before_delay: int,
                 executor: str = "local"):
        if executor not in ("local", "celery"):
            raise ValueError(executor)
        if executor == "celery" and db.kind != "postgres":
            raise ValueError("the Celery scenario uses the PostgreSQL metadata DB as result backend")
        self.executor = executor
        self.workdir = pathlib.Path(workdir)
        self.home = self.workdir / "home"
        self.db = db
        self.marker = uuid.uuid4().hex
        self.components: list[Component] = []
        self.fire_after, self.before_delay = fire_after, before_delay
        self.deadline = os.environ.get("E2E_DEADLINE", "1") != "0"
        self.dags = self.home / "dags"
        self.results = self.workdir / "results"
        self.gates = self.workdir / "gates"
        self.logs = self.workdir / "logs"
        for d in (self.home, self.results, self.gates, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(DAGS_SRC, self.dags, ignore=shutil.ignore_patterns("__pycache__"))
        self.asset = os.environ.get("E2E_ASSET", "1") != "0" and (self.dags / "e2e_asset_dag.py").exists()
        self.fernet = base64.urlsafe_b64encode(os.urandom(32)).decode()
        self.jwt = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self.port = free_port()
        # Celery: a queue of this site's own, so concurrent runs sharing the Redis never mix.
        self.queue = f"e2e-{self.marker[:12]}"
        self.worker_log_port = free_port()
        self.env_overrides: dict[str, str] = {}
        self._logn = 0
        # Merged last into every component's environment (k8s.py: the KubernetesExecutor's settings;
        # test_user_site.py: PYTHONUSERBASE); "VIRTUAL_ENV": None removes a key.
        self.extra_env: dict = {}

    def env(self, venv: pathlib.Path, phase: str, bridge: bool) -> dict:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
        e.update({
            "PATH": f"{venv}/bin:{e.get('PATH', '/usr/bin:/bin')}",
            "VIRTUAL_ENV": str(venv),
            "PYTHONPATH": str(self.dags),
            "PYTHONUNBUFFERED": "1",
            "E2E_RUN_MARKER": self.marker,
            "E2E_RESULTS_DIR": str(self.results),
            "E2E_GATES_DIR": str(self.gates),
            "E2E_PHASE": phase,
            "E2E_FIRE_AFTER": str(self.fire_after),
            "E2E_BEFORE_DELAY": str(self.before_delay),
            "E2E_FIXED_OFFSET_TZ": os.environ.get("E2E_FIXED_OFFSET_TZ", "0"),
            "E2E_DEADLINE": "1" if self.deadline else "0",
            "E2E_ASSET": "1" if self.asset else "0",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__FERNET_KEY": self.fernet,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{self.port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db.url(),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt,
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__CAPACITY": "100",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "15",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        })
        if self.executor == "celery":
            db = self.db
            e.update({
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": os.environ.get("E2E_REDIS_URL", "redis://127.0.0.1:6379/0"),
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{db.user}@{db.host}:{db.port}/{db.name}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "8",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
            })
        e.update(self.env_overrides)
        if bridge:
            e["AIRFLOW_SERDE_COMPAT"] = "1"
        for k, v in self.extra_env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        return e

    def _logfile(self, name):
        self._logn += 1
        return self.logs / f"{self._logn:02d}-{name}.log"

    def scan(self, venv) -> dict:
        """`airflow-serde-compat scan --verify --output json` on this DB, from the bridge's venv.

        Recorded, never raised: the tests compare it with format_rows(), an independent count.
        """
        env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_SERDE_COMPAT"}
        env["AIRFLOW_HOME"] = str(self.home)
        p = subprocess.run(
            [str(venv / "bin/airflow-serde-compat"), "scan", "--verify", "--output", "json",
             f"--sql-alchemy-conn={self.db.url()}", f"--fernet-key={self.fernet}"],
            env=env, capture_output=True, text=True, timeout=600, cwd=self.home,
        )
        try:
            report = json.loads(p.stdout)
        except ValueError:
            report = None
        return {"exit": p.returncode, "report": report, "stderr": p.stderr[-3000:]}

    def cli(self, venv, phase, args, bridge=False, timeout=300, check=True):
        lf = self._logfile("cli-" + "-".join(a for a in args[:3] if not a.startswith("-")))
        with open(lf, "w") as f:
            p = subprocess.run([str(venv / "bin/airflow"), *args], env=self.env(venv, phase, bridge),
                               stdout=f, stderr=subprocess.STDOUT, cwd=self.home, timeout=timeout,
                               start_new_session=True)
        if check and p.returncode:
            raise E2EError(f"`airflow {' '.join(args)}` ({venv.name}) exited {p.returncode}:\n{tail(lf, 60)}")
        return p.returncode, lf

    def start(self, venv, phase, name, bridge=False, args=None):
        lf = self._logfile(f"{phase}-{name}")
        f = open(lf, "w")
        env = self.env(venv, phase, bridge)
        p = subprocess.Popen([str(venv / "bin/airflow"), *(args or [name])], env=env,
                             stdout=f, stderr=subprocess.STDOUT, cwd=self.home, start_new_session=True)
        f.close()
        c = Component(name, p, lf, env)
        self.components.append(c)
        return c

    def start_all(self, venv, phase, bridge=False, worker_bridge=None):
        """api-server, dag-processor, scheduler, triggerer (+ the Celery worker, bridged as `worker_bridge`,
        default `bridge`)."""
        cs = [self.start(venv, phase, "api-server", bridge, ["api-server", "--port", str(self.port)])]
        # Task runners give up on an api-server that is not listening yet (Connection refused, task
        # failed): on a loaded machine it took 22 s to start, longer than their retries.
        self.wait_port()
        for n in ("dag-processor", "scheduler", "triggerer"):
            cs.append(self.start(venv, phase, n, bridge))
        if self.executor == "celery":
            wb = bridge if worker_bridge is None else worker_bridge
            # No --celery-hostname: with it the provider (3.17.0 / 3.18.0) first calls control.inspect() to
            # refuse a duplicate name, and the prefork children then hang for good in kombu's after-fork cleanup
            # (recv on the parent's Redis socket): tasks are "received" and never run (tests/e2e/README.md).
            cs.append(self.start(venv, phase, WORKER, wb, ["celery", "worker", "--queues", self.queue]))
            self.wait_worker_ready(cs[-1])
        return cs

    def wait_worker_done(self, worker, components, timeout=120):
        """A TI is final before its Celery task returns (the supervisor still reports and exits): wait until the
        worker logged `succeeded` for every workload it received, so stopping it kills nothing in flight."""
        def done():
            w = worker_facts(worker)
            return w["received"] > 0 and w["succeeded"] >= w["received"]

        self.wait_for(f"the Celery worker ({worker.log}) to finish every workload it received", done,
                      timeout=timeout, components=components)

    def wait_worker_ready(self, worker, timeout=180):
        """Celery logs '<hostname> ready.' once it consumes; until then queued tasks would just wait."""
        self.wait_for(f"the Celery worker ({worker.log}) to log 'ready.'",
                      lambda: re.search(r"@\S+ ready\.", pathlib.Path(worker.log).read_text(errors="replace")),
                      timeout=timeout, components=[worker])

    def check_alive(self, components=None):
        for c in components or self.components:
            if not c.alive():
                raise E2EError(f"{c.name} exited with code {c.popen.returncode}; log tail ({c.log}):\n{tail(c.log)}")

    def stop_all(self, timeout=30):
        """SIGTERM every component's process group, then SIGKILL anything (incl. escaped children) left."""
        for c in self.components:
            if c.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in self.components:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.popen.wait(max(0.1, deadline - time.monotonic()))
        for c in self.components:
            if c.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.popen.pid, signal.SIGKILL)
                c.popen.wait(10)
        self.components = []
        self.kill_strays()

    def kill_strays(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = _procs_with_marker(self.marker)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            time.sleep(2)

    def wait_port(self, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            self.check_alive()
            time.sleep(0.5)
        raise E2EError(f"api-server not listening on {self.port} after {timeout}s")

    def wait_port_free(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.5)
        raise E2EError(f"port {self.port} still in use {timeout}s after stopping the api-server")

    def open_gate(self, gate):
        (self.gates / gate).write_text(str(time.time()))

    # ---- DB views ------------------------------------------------------------------------------------------
    def ti_states(self) -> dict:
        rows = self.db.query(f"SELECT task_id, state, next_method FROM task_instance WHERE dag_id='{DAG_ID}'")
        return {r[0]: (r[1] or None, (r[2] or None) if len(r) > 2 else None) for r in rows}

    def set_pool(self, slots: int):
        self.db.execute(f"UPDATE slot_pool SET slots={slots} WHERE pool='{POOL}'")
        got = self.db.query(f"SELECT slots FROM slot_pool WHERE pool='{POOL}'")
        if not got or int(got[0][0]) != slots:
            raise E2EError(f"could not set pool {POOL} to {slots} slots (got {got})")

    def wait_for(self, what, predicate, timeout, components=None, poll=1.0):
        """Bounded wait; on timeout raise with the current TI states and the tails of the component logs."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            self.check_alive(components)
            try:
                last = predicate()
            except sqlite3.OperationalError as e:  # locked DB: retry
                last = e
            else:
                if last:
                    return last
            time.sleep(poll)
        logs = "\n".join(f"--- {c.name} ({c.log}):\n{tail(c.log, 25)}" for c in (components or self.components))
        with contextlib.suppress(Exception):
            last = self.ti_states()
        raise E2EError(f"timed out after {timeout}s waiting for {what}; task states: {last}\n{logs}")

    def read_results(self, phase) -> dict:
        d = self.results / phase
        return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))} if d.exists() else {}

    def format_rows(self) -> dict:
        """Classify next_kwargs / trigger.kwargs rows: serde (3.2 format), legacy (3.1 format), plain, encrypted."""
        out = {"task_instance.next_kwargs": {}, "trigger.kwargs": {}}
        for tid, nk in self.db.query(f"SELECT task_id, next_kwargs FROM task_instance WHERE dag_id='{DAG_ID}' "
                                     "AND next_kwargs IS NOT NULL"):
            out["task_instance.next_kwargs"][tid] = classify(nk)
        trigger = "`trigger`" if self.db.kind == "mysql" else '"trigger"'  # reserved word in MySQL
        for tid, cp, kw in self.db.query(f"SELECT id, classpath, kwargs FROM {trigger}"):
            out["trigger.kwargs"][f"{tid}:{cp.rsplit('.', 1)[-1]}"] = classify(kw)
        try:  # 3.1.8 schema only (3.2 moved it to callback_id -> callback table)
            rows = self.db.query("SELECT id, callback FROM deadline")
        except Exception:
            rows = None
        if rows is not None:
            out["deadline.callback"] = {str(i)[:8]: classify(cb) for i, cb in rows}
        out["deadline rows"] = {"count": str(self.db.query("SELECT COUNT(*) FROM deadline")[0][0])}
        return out


def classify(raw) -> str:
    if raw is None or raw == "":
        return "null"
    s = raw if isinstance(raw, str) else str(raw)
    if s.strip() == "null":
        return "null"
    if not s.lstrip().startswith(("{", "[")):
        return "encrypted"
    if "__classname__" in s:
        return "serde envelopes (__classname__; the 3.2 format for next_kwargs/trigger.kwargs)"
    if '"__var"' in s or '"__type"' in s:
        return "legacy envelopes (__type/__var; the 3.1 format)"
    if s.strip() in ("{}", "null"):
        return "empty {} (serde-style; 3.1 writes {\"__var\": {}, \"__type\": \"dict\"})"
    return "plain JSON without legacy envelope (3.2 style; 3.1 always wraps dicts)"


# ----------------------------------------------------------------------------------------------------------------
# the scenario
# ----------------------------------------------------------------------------------------------------------------
class Scenario:
    """One full run: writer `writer` (a venvs.sh NAME) on DB kind `db_kind`.

    writer == reader is the oracle: same choreography, never upgraded, restarted on the plain reader.
    `reader` is the 3.1.x rolled back to (a venvs.sh NAME): the downgrade target and the post-phase install.
    """

    def __init__(self, db_kind: str, writer: str, workroot: pathlib.Path | None = None, fire_after=None,
                 before_delay=None, say=log, check_nobridge=True, bridge=True, reader="318", executor="local"):
        self.db_kind, self.writer, self.say = db_kind, writer, say
        self.executor = executor
        self.reader = reader
        self.oracle = writer == reader
        self.check_nobridge = check_nobridge and not self.oracle
        self.use_bridge = bridge and not self.oracle
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"e2e-{db_kind}-{writer}-", dir=workroot))
        tag = (f"{writer}{'o' if self.oracle else ''}{'' if reader == '318' else 'r' + reader}"
               f"{'c' if executor == 'celery' else ''}")
        self.db = make_db(db_kind, self.workdir, tag)
        self.fire_after = int(fire_after or os.environ.get("E2E_FIRE_AFTER", 110))
        self.before_delay = int(before_delay or os.environ.get("E2E_BEFORE_DELAY", 30))
        self.site = AirflowSite(self.workdir, self.db, self.fire_after, self.before_delay, executor=executor)
        self.timings: dict[str, float] = {}
        self.facts: dict = {"writer": VERSION_OF.get(writer, writer), "db": db_kind, "workdir": str(self.workdir),
                            "reader": VERSION_OF[reader], "executor": executor}
        self.snapshot: Database | None = None
        self.errors: dict[str, str] = {}
        # Extra phases (afterlife.py): while_reader_up(scenario, components) runs against the live reader
        # deployment once every task finished; after_reader(scenario) once it stopped, before cleanup.
        self.while_reader_up: list = []
        self.after_reader: list = []
        # after_downgrade(scenario): right after the downgrade and its snapshot (k8s.py takes its own copies).
        self.after_downgrade: list = []
        if db_kind == "mysql" and not self.oracle:
            # Airflow's downgrade mangles task-instance ids on MariaDB (README); the repair is part of the rollback.
            self.after_downgrade.append(repair_task_instance_ids)

    # -- helpers
    def _vn(self, name):
        """MySQL needs venvs with mysqlclient + aiomysql (venvs.sh 318m / 321m), Celery the provider (318c / 321c)."""
        if self.executor == "celery":
            return f"{name}c"
        return f"{name}m" if self.db_kind == "mysql" else name

    def _phase(self, name):
        scen = self

        class _T:
            def __enter__(self):
                self.t = time.monotonic()
                scen.say(f"[{scen.db_kind}/{scen.facts['writer']}] >> {name}")

            def __exit__(self, *exc):
                scen.timings[name] = round(time.monotonic() - self.t, 1)
                scen.say(f"[{scen.db_kind}/{scen.facts['writer']}] << {name}: {scen.timings[name]}s"
                         + ("" if exc[0] is None else f" (FAILED: {exc[1]!s:.200})"))

        return _T()

    def cleanup(self):
        self.site.stop_all()
        with contextlib.suppress(Exception):
            self.site.wait_port_free(10)
        if self.db_kind != "sqlite":
            for d in (self.db, self.snapshot):
                if d is not None:
                    with contextlib.suppress(Exception):
                        d.drop()

    # -- phases
    def run_pre(self):
        wv = venv(self._vn(self.writer))
        self.writer_venv = wv
        site = self.site
        with self._phase("venv+db migrate (writer)"):
            self.db.create()
            site.cli(wv, "pre", ["db", "migrate"], timeout=900)
            site.cli(wv, "pre", ["pools", "set", POOL, str(POOL_SLOTS), "e2e frozen pool"])
        with self._phase("writer: start components, run DAG until all tasks deferred"):
            cs = site.start_all(wv, "pre")
            site.wait_port()
            must_defer = BEFORE_TASKS + AFTER_TASKS + STAYS_DEFERRED + list(TWINS.values())

            def all_deferred():
                st = site.ti_states()
                bad = [t for t, (s, _) in st.items() if t in ("push_uuid", "pull_uuid_now") and s in ("failed",)]
                if bad:
                    self.facts.setdefault("writer_failed_tasks", bad)
                done_xcom = all(st.get(t, (None,))[0] in TERMINAL for t in ("push_uuid", "pull_uuid_now"))
                watcher = not site.asset or (site.results / "pre" / "trigger.asset_watcher.json").exists()
                return done_xcom and watcher and all(st.get(t, (None,))[0] == "deferred" for t in must_defer) and st

            site.wait_for("every *_before/*_after task DEFERRED, the uuid push/pull finished and the asset "
                          "watcher trigger running", all_deferred,
                          timeout=300, components=cs)
            # Airflow race (seen with 3.2.1): if a trigger fires before the scheduler has processed the
            # executor's "success" event of the deferring worker, the scheduler sees state SCHEDULED, logs
            # "finished with state success, but the task instance's state attribute is scheduled" and marks the
            # TI FAILED. So only open the gate once every deferral's executor event was received.
            sched = next(c for c in cs if c.name == "scheduler")

            # CeleryExecutor also reports "queued" (the message reached the broker): only the event of the
            # finished deferring process counts.
            def events_seen():
                text = pathlib.Path(sched.log).read_text(errors="replace")
                return all(re.search(rf"Received executor event with state (?!queued\b)\w+ for task instance "
                                     rf"TaskInstanceKey\(dag_id='{DAG_ID}', task_id='{t}'", text) for t in must_defer)

            site.wait_for("the scheduler to receive the executor event of every deferral", events_seen, timeout=60,
                          components=cs)
        with self._phase("writer: freeze (pool 0), fire the *_before triggers"):
            site.set_pool(0)
            site.open_gate("before")
            for twin in TWINS.values():
                site.open_gate(twin)

            def before_fired():
                st = site.ti_states()
                if any(st[t][0] in ("queued", "running") or st[t][0] in TERMINAL for t in BEFORE_TASKS):
                    raise E2EError(f"a *_before task was resumed or finished under the writer despite pool 0: {st}")
                if any(st[t][0] != "deferred" for t in AFTER_TASKS + STAYS_DEFERRED):
                    raise E2EError(f"a *_after task fired before the rollback (raise E2E_FIRE_AFTER?): {st}")
                twins = all(st[t][0] in TERMINAL for t in TWINS.values())
                return twins and all(st[t][0] == "scheduled" and st[t][1] for t in BEFORE_TASKS) and st

            st = site.wait_for("every *_before task SCHEDULED with next_method set (trigger fired / failed / timed "
                               "out) while pool e2e_frozen has 0 slots", before_fired,
                               timeout=self.before_delay + 120, components=cs)
            self.facts["pre_states"] = st
            self.facts["pre_ran_under"] = ran_under(site.read_results("pre"), cs)
        with self._phase("writer: stop all components"):
            site.stop_all()
            site.wait_port_free()
        self.facts["rows_after_writer"] = site.format_rows()

    def run_downgrade(self):
        if self.oracle:
            return
        target = VERSION_OF[self.reader]
        with self._phase(f"downgrade: airflow db downgrade -n {target} -y (writer install)"):
            self.site.cli(self.writer_venv, "downgrade", ["db", "downgrade", "-n", target, "-y"], timeout=900)
        with self._phase("snapshot downgraded DB"):
            self.snapshot = self.db.snapshot("nobridge")
        self.facts["rows_after_downgrade"] = self.site.format_rows()
        with self._phase("scan the downgraded DB (airflow-serde-compat scan --verify)"):
            try:
                self.facts["scan_after_downgrade"] = self.site.scan(bridge_venv(self._vn(self.reader)))
            except Exception as e:  # the scan tests say what went wrong; the rollback goes on
                self.facts["scan_after_downgrade"] = {"exit": None, "report": None, "stderr": repr(e)}
        for hook in self.after_downgrade:
            self._hook(hook)

    def run_post(self):
        site = self.site
        if self.use_bridge:
            with self._phase(f"install bridge into v{self._vn(self.reader)}-bridge"):
                rv = bridge_venv(self._vn(self.reader))
        else:
            rv = venv(self._vn(self.reader))
        self.reader_venv = rv
        bridge = self.use_bridge
        label = f"{VERSION_OF[self.reader]} + bridge" if bridge else VERSION_OF[self.reader]
        # The deadline callback can only run if a deadline row survived the downgrade (on SQLite,
        # 3.2.x -> 3.1.8 loses it: see facts["rows_after_downgrade"]["deadline rows"]).
        expect_deadline = site.deadline and int(site.db.query("SELECT COUNT(*) FROM deadline")[0][0]) > 0
        self.facts["deadline_rows_at_reader_start"] = int(site.db.query("SELECT COUNT(*) FROM deadline")[0][0])
        with self._phase(f"reader ({label}): start, resume every task"):
            site.set_pool(POOL_SLOTS)
            cs = site.start_all(rv, "post", bridge=bridge)
            site.open_gate("after")
            site.open_gate("asset_after")
            t0 = time.monotonic()

            def finished():
                st = site.ti_states()
                if any(st[t][0] != "deferred" for t in STAYS_DEFERRED):
                    raise E2EError(f"{STAYS_DEFERRED} must stay deferred under the reader (gate closed): {st}")
                done = all(s in TERMINAL for t, (s, _) in st.items() if t not in STAYS_DEFERRED)
                dl = (site.results / "post" / "deadline_callback.json").exists() or not expect_deadline
                asset = not site.asset or (site.results / "post" / "asset_consumer.json").exists()
                return done and dl and asset and st

            try:
                st = site.wait_for("every task instance finished, the deadline callback and the asset consumer recorded",
                                   finished, timeout=self.fire_after + 240, components=cs)
            finally:
                self.facts["post_states"] = site.ti_states()
            if self.executor == "celery":
                site.wait_worker_done(next(c for c in cs if c.name == WORKER), cs)
            # components must still be up a little after the last task finished
            time.sleep(3)
            site.check_alive(cs)
            self.facts["post_wait_s"] = round(time.monotonic() - t0, 1)
            self.facts["post_ran_under"] = ran_under(site.read_results("post"), cs)
            self.facts["post_component_pids"] = {c.name: c.popen.pid for c in cs}
            if self.executor == "celery":
                self.facts["post_worker"] = worker_facts(next(c for c in cs if c.name == WORKER))
            for hook in self.while_reader_up:
                self._hook(hook, cs)
            self.facts["post_states"] = st
            self.facts["rows_after_reader"] = site.format_rows()
            self.facts["component_logs"] = {c.name: str(c.log) for c in cs}
            self.facts["log_crashes"] = {c.name: len(CRASH_RE.findall(pathlib.Path(c.log).read_text(errors="replace")))
                                         for c in cs}
            self.facts["post_active_line"] = {c.name: "airflow-serde-compat active" in
                                              pathlib.Path(c.log).read_text(errors="replace") for c in cs}
        with self._phase(f"reader ({label}): stop"):
            site.stop_all()
            site.wait_port_free()
        if bridge:
            with self._phase("scan after the bridge run (airflow-serde-compat scan)"):
                try:
                    self.facts["scan_after_reader"] = site.scan(rv)
                except Exception as e:
                    self.facts["scan_after_reader"] = {"exit": None, "report": None, "stderr": repr(e)}

    def run_nobridge(self):
        """3.1.8 scheduler + triggerer without AIRFLOW_SERDE_COMPAT on a snapshot of the downgraded DB."""
        if not self.check_nobridge:
            return
        if self.executor == "celery":
            return self.run_nobridge_worker()
        site = self.site
        try:
            rv = bridge_venv(self._vn(self.reader))
            self.facts["nobridge_venv"] = f"v{self.reader}-bridge (bridge installed, AIRFLOW_SERDE_COMPAT unset)"
        except E2EError as e:
            rv = venv(self._vn(self.reader))
            self.facts["nobridge_venv"] = f"v{self.reader} (bridge not installable: {str(e)[:200]})"
        with self._phase("no bridge: 3.1.8 scheduler+triggerer on the downgraded DB, expect the crash"):
            saved = site.db
            site.db = self.snapshot
            try:
                site.set_pool(POOL_SLOTS)
                cs = [site.start(rv, "nobridge", "scheduler"), site.start(rv, "nobridge", "triggerer")]
                crashed = {}

                def both_crashed():
                    for c in cs:
                        if c.name not in crashed and CRASH_RE.search(pathlib.Path(c.log).read_text(errors="replace")):
                            crashed[c.name] = {"alive_at_detection": c.alive()}
                    return len(crashed) == len(cs)

                end = time.monotonic() + 120
                while time.monotonic() < end and not both_crashed():
                    if not any(c.alive() for c in cs):
                        both_crashed()
                        break
                    time.sleep(1)
                time.sleep(2)
                self.facts["nobridge"] = {
                    c.name: {"keyerror_var": c.name in crashed, "exit_code": c.popen.poll(), "log": str(c.log),
                             "tail": tail(c.log, 15)} for c in cs}
            finally:
                site.stop_all()
                site.db = saved

    def run_nobridge_worker(self):
        """Every 3.1.8 component bridged except the Celery worker (AIRFLOW_SERDE_COMPAT unset in its environment),
        on a snapshot of the downgraded DB: the *_before tasks are resumed on that worker. Task logs go to a base
        log folder of their own (a resumed task keeps its try number, so it would share the post phase's file)."""
        site = self.site
        rv = bridge_venv(self._vn(self.reader))
        phase = "nobridge-worker"
        logs = site.home / "logs-nobridge-worker"
        with self._phase("worker without the switch: bridged 3.1.8 components, unbridged Celery worker, snapshot"):
            saved = site.db
            site.db = self.snapshot
            site.env_overrides = {"AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs)}
            facts = self.facts["nobridge_worker"] = {"venv": f"v{self._vn(self.reader)}-bridge", "task_logs": {}}
            try:
                site.set_pool(POOL_SLOTS)
                cs = site.start_all(rv, phase, bridge=True, worker_bridge=False)
                worker = next(c for c in cs if c.name == WORKER)
                facts["env_switch"] = {c.name: c.env.get("AIRFLOW_SERDE_COMPAT") for c in cs}

                def before_final():
                    st = site.ti_states()
                    return all(st[t][0] in TERMINAL for t in BEFORE_TASKS) and st

                try:
                    facts["states"] = site.wait_for("every *_before task final (resumed on the unbridged worker)",
                                                    before_final, timeout=300, components=cs)
                finally:
                    facts.setdefault("states", site.ti_states())
                site.wait_worker_done(worker, cs)
                time.sleep(3)
                facts["alive"] = {c.name: c.alive() for c in cs}
                # the bridge's one INFO line per activated process (README "Using it in a rollback")
                facts["active_line"] = {c.name: "airflow-serde-compat active" in
                                        pathlib.Path(c.log).read_text(errors="replace") for c in cs}
                facts["worker"] = worker_facts(worker)
                facts["log_crashes"] = {c.name: len(CRASH_RE.findall(pathlib.Path(c.log).read_text(errors="replace")))
                                        for c in cs}
                for t in BEFORE_TASKS:
                    found = sorted(logs.glob(f"dag_id={DAG_ID}/*/task_id={t}/*.log"))
                    facts["task_logs"][t] = {str(f): f.read_text(errors="replace") for f in found}
                facts["results"] = site.read_results(phase)
            finally:
                site.stop_all()
                site.db = saved
                site.env_overrides = {}
            site.wait_port_free()

    def _hook(self, hook, *args):
        """An extra phase fails only the tests that read its facts (errors["hook <name>"]), not the scenario."""
        name = getattr(hook, "__name__", repr(hook))
        with self._phase(name):
            try:
                hook(self, *args)
            except Exception as e:
                self.errors[f"hook {name}"] = f"{type(e).__name__}: {e}"

    def run(self):
        t0 = time.monotonic()
        try:
            self.run_pre()
            self.run_downgrade()
            self.run_nobridge()  # on a snapshot of the downgraded DB, so the order does not matter
            try:
                self.run_post()
            except Exception as e:
                self.errors["post"] = f"{type(e).__name__}: {e}"
            else:
                for hook in self.after_reader:
                    self._hook(hook)
        finally:
            self.facts["results_pre"] = self.site.read_results("pre")
            self.facts["results_post"] = self.site.read_results("post")
            self.timings["total"] = round(time.monotonic() - t0, 1)
        return self


def repair_task_instance_ids(s: "Scenario") -> None:
    """after_downgrade hook (MariaDB): repair the task-instance ids the downgrade mangled, in the downgraded DB and
    in its no-bridge snapshot (that check is about the serde crash, not this one), as an operator would:
    `airflow-serde-compat rewrite --apply --only task_instance.id`, from the bridge venv."""
    rv = bridge_venv(s._vn(s.reader))
    facts = s.facts["ti_id_repair"] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(s.site.home)
    for d in (s.db, s.snapshot):
        if d is None:
            continue
        backup = s.workdir / f"ti-ids-{d.name}.jsonl"
        p = subprocess.run([str(rv / "bin/airflow-serde-compat"), "rewrite", "--apply", "--only", "task_instance.id",
                            "--backup", str(backup), f"--sql-alchemy-conn={d.url()}", f"--fernet-key={s.site.fernet}",
                            "--output", "json"], env=env, capture_output=True, text=True, timeout=600, cwd=s.site.home)
        if p.returncode:
            raise E2EError(f"`rewrite --apply --only task_instance.id` on {d.name} exited {p.returncode}:\n{p.stderr[-3000:]}")
        out = json.loads(p.stdout)["columns"][0]
        again = subprocess.run([str(rv / "bin/airflow-serde-compat"), "rewrite", "--only", "task_instance.id",
                                f"--sql-alchemy-conn={d.url()}", "--fernet-key=", "--output", "json"],
                               env=env, capture_output=True, text=True, timeout=600, cwd=s.site.home)
        facts[d.name] = {"repaired": out["rewritten"], "columns": sorted({r["table"] + "." + r["column"]
                                                                         for r in out["rewritten_rows"]}),
                         "dry_run_after_exit": again.returncode}


def ran_under(results: dict, components) -> dict:
    """For each task record: the component whose process it descends from (e2e_common.record keeps the record's
    process ancestry), e.g. "celery-worker" for a task the Celery worker forked, "scheduler" under LocalExecutor."""
    pids = {c.popen.pid: c.name for c in components}
    out = {}
    for name, doc in results.items():
        chain = [a["pid"] for a in doc.get("ancestors", [])]
        out[name] = next((pids[p] for p in chain if p in pids), None)
    return out


def worker_facts(worker: Component) -> dict:
    text = pathlib.Path(worker.log).read_text(errors="replace")
    return {"log": str(worker.log), "pid": worker.popen.pid, "alive": worker.alive(),
            "received": len(re.findall(r"Task \S*execute_workload\[[0-9a-f-]+\] received", text)),
            "succeeded": len(re.findall(r"Task \S*execute_workload\[[0-9a-f-]+\] succeeded", text)),
            "ready": bool(re.search(r"@\S+ ready\.", text))}


# ----------------------------------------------------------------------------------------------------------------
# comparison
# ----------------------------------------------------------------------------------------------------------------
def deadline_lost_by_downgrade(s: Scenario) -> bool:
    before = s.facts.get("rows_after_writer", {}).get("deadline rows", {}).get("count")
    after = s.facts.get("rows_after_downgrade", {}).get("deadline rows", {}).get("count")
    return before is not None and after is not None and int(before) > 0 and int(after) == 0


def compare_post(candidate: Scenario, oracle: Scenario) -> list[str]:
    """Differences between what the resumed tasks (post phase) received in candidate vs the native 3.1.8 oracle."""
    diffs = []
    a, b = candidate.facts["results_post"], oracle.facts["results_post"]
    skip = set(UUID_TASKS)
    if deadline_lost_by_downgrade(candidate):
        # Airflow's downgrade deleted the pending deadline (test_downgrade_keeps_pending_deadline fails for it);
        # no reader can run a callback whose row is gone, so it is not counted against the bridge here.
        skip.add("deadline_callback")
    for name in sorted((set(a) | set(b)) - skip):
        if name not in a:
            why = ""
            if name == "deadline_callback":
                rw = candidate.facts.get("rows_after_writer", {}).get("deadline rows", {}).get("count")
                rd = candidate.facts.get("rows_after_downgrade", {}).get("deadline rows", {}).get("count")
                why = f" (deadline rows: {rw} before the downgrade, {rd} after it)"
            diffs.append(f"{name}: recorded by the oracle (3.1.8) but not after the rollback{why}")
        elif name not in b:
            diffs.append(f"{name}: recorded after the rollback but not by the oracle (3.1.8)")
        elif a[name]["received"] != b[name]["received"]:
            diffs.append(f"{name}: differs\n  rollback: {json.dumps(a[name]['received'], sort_keys=True)}\n"
                         f"  oracle:   {json.dumps(b[name]['received'], sort_keys=True)}")
    sa = {t: s for t, (s, _) in candidate.facts.get("post_states", {}).items() if t not in UUID_TASKS}
    sb = {t: s for t, (s, _) in oracle.facts.get("post_states", {}).items() if t not in UUID_TASKS}
    if sa != sb:
        diffs.append(f"final task states differ: rollback={sa} oracle={sb}")
    return diffs
