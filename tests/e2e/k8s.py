"""KubernetesExecutor after the rollback, without a cluster (issue 10).

Why a stand-in API server rather than building the workload ourselves: the real 3.1.8 scheduler with the real
KubernetesExecutor (apache-airflow-providers-cncf-kubernetes 10.13.0, venv 318k) then does everything itself:
it builds the workload (its JWT included), turns it into the container args (`workload_to_command_args`), reads
the `pod_template_file`, and builds the pod with `PodGenerator.construct_pod` (the path `run_next` takes), then
POSTs it. `FakeKubeAPI` only records what it receives and answers the list / watch / patch / delete calls the
executor and its watcher make; no pod is built or changed by us.

`Kubelet` then runs each posted pod's `base` container the way a kubelet would, as far as Airflow can tell:
`env -i` + exactly the container's `env` (values, and `secretKeyRef`s resolved from the chart's secrets) + the
image's own ENV (PATH to the bridged venv, HOME, AIRFLOW_HOME, LANG; plus E2E_* for the test DAG's recorder,
which a real image would not have). The container has no `command`, so the image's entrypoint would run `args`;
we run `args` directly (the entrypoint only waits for the DB and execs them). Paths under /opt/airflow (the
image's AIRFLOW_HOME, the chart's mounts) are mapped to a per-pod directory: the `config` mount gets the
deployment's airflow.cfg (what the chart's configmap holds), `logs` is the pod's emptyDir, the DAG files are
"baked into the image" there.
"""
from __future__ import annotations

import contextlib
import copy
import http.server
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid

import harness

NAMESPACE = "airflow"
RELEASE = "airflow"
HELM = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "helm"
CHART_TEMPLATE = HELM / "pod-template-rendered-default.yaml"
CUSTOM_TEMPLATE = HELM / "pod-template-custom-without-env.yaml"
# What the chart's values put in [kubernetes_executor] worker_container_repository / _tag (the user's image).
IMAGE = ("my-registry/airflow", "3.1.8-serde-compat")
POD_HOME = "/opt/airflow"


def _selector_match(labels: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if str(labels.get(k)) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if str(labels.get(k.rstrip("="))) != v:
                return False
        elif labels.get(term) is None:
            return False
    return True


class FakeKubeAPI:
    """The cluster's API server, as far as the KubernetesExecutor uses it: pods in one namespace."""

    def __init__(self):
        self.pods: dict[str, dict] = {}
        self.created: list[dict] = []  # the exact bodies the executor POSTed
        self.requests: list[str] = []
        self.rv = 0
        self.lock = threading.Condition()
        self.stopping = False
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def _route(self):
                u = urllib.parse.urlsplit(self.path)
                q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}
                m = re.fullmatch(r"/api/v1/(?:namespaces/([^/]+)/)?pods(?:/([^/]+))?", u.path)
                api.requests.append(f"{self.command} {u.path}?{u.query}")
                return m, q

            def do_GET(self):
                m, q = self._route()
                if not m:
                    return self._send(404, {"kind": "Status", "code": 404, "status": "Failure", "reason": "NotFound"})
                if m.group(2):
                    pod = api.pods.get(m.group(2))
                    return self._send(200, pod) if pod else self._send(404, {"kind": "Status", "code": 404})
                if q.get("watch") in ("true", "True", "1"):
                    return self._watch(q)
                with api.lock:
                    items = [p for p in api.pods.values() if _selector_match(p["metadata"].get("labels", {}),
                                                                            q.get("labelSelector"))]
                    self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(api.rv)},
                                     "items": items})

            def _watch(self, q):
                since = int(q.get("resourceVersion") or 0)
                end = time.monotonic() + min(int(q.get("timeoutSeconds") or 20), 20)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                sent: dict[str, int] = {}
                with contextlib.suppress(OSError):
                    while time.monotonic() < end and not api.stopping:
                        with api.lock:
                            events = [p for p in api.pods.values()
                                      if int(p["metadata"]["resourceVersion"]) > max(since, sent.get(p["metadata"]["name"], 0))
                                      and _selector_match(p["metadata"].get("labels", {}), q.get("labelSelector"))]
                            for p in events:
                                sent[p["metadata"]["name"]] = int(p["metadata"]["resourceVersion"])
                            events = [copy.deepcopy(p) for p in events]
                            if not events:
                                api.lock.wait(0.5)
                        for p in events:
                            self.wfile.write((json.dumps({"type": "MODIFIED", "object": p}) + "\n").encode())
                            self.wfile.flush()

            def do_POST(self):
                m, _ = self._route()
                body = self._body()
                if not m or m.group(2):
                    return self._send(404, {"kind": "Status", "code": 404})
                api.created.append(copy.deepcopy(body))
                with api.lock:
                    api.rv += 1
                    body.setdefault("metadata", {}).update(
                        uid=str(uuid.uuid4()), resourceVersion=str(api.rv), namespace=m.group(1) or NAMESPACE,
                        creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                    body["status"] = {"phase": "Pending"}
                    api.pods[body["metadata"]["name"]] = body
                    api.lock.notify_all()
                self._send(201, body)

            def do_PATCH(self):
                m, _ = self._route()
                patch = self._body()
                with api.lock:
                    pod = api.pods.get(m.group(2)) if m and m.group(2) else None
                    if pod is None:
                        return self._send(404, {"kind": "Status", "code": 404})
                    for k, v in (patch.get("metadata", {}).get("labels") or {}).items():
                        pod["metadata"].setdefault("labels", {})[k] = v
                    api.rv += 1
                    pod["metadata"]["resourceVersion"] = str(api.rv)
                    api.lock.notify_all()
                    self._send(200, pod)

            def do_DELETE(self):
                m, _ = self._route()
                with api.lock:
                    pod = api.pods.pop(m.group(2), None) if m and m.group(2) else None
                self._send(200 if pod else 404, {"kind": "Status", "code": 200 if pod else 404,
                                                 "status": "Success" if pod else "Failure"})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        with self.lock:
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def set_phase(self, name, phase, exit_code=None):
        with self.lock:
            pod = self.pods.get(name)
            if pod is None:
                return
            pod["status"] = {"phase": phase}
            if exit_code is not None:
                pod["status"]["containerStatuses"] = [{
                    "name": "base", "image": pod["spec"]["containers"][0].get("image") or "", "imageID": "",
                    "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": exit_code}}}]
            self.rv += 1
            pod["metadata"]["resourceVersion"] = str(self.rv)
            self.lock.notify_all()

    def kubeconfig(self, path: pathlib.Path) -> pathlib.Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "stand-in", "user": {"token": "stand-in"}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in",
                                                          "namespace": NAMESPACE}}],
        }))
        return path


class Kubelet:
    """Runs every pod the executor creates: `env -i` + the container's env + the image's ENV, then its args."""

    def __init__(self, api: FakeKubeAPI, root: pathlib.Path, venv: pathlib.Path, site: harness.AirflowSite,
                 phase: str, secrets: dict, airflow_cfg: str):
        self.api, self.root, self.venv, self.site, self.phase = api, root, venv, site, phase
        self.secrets, self.airflow_cfg = secrets, airflow_cfg
        self.runs: dict[str, dict] = {}
        self.errors: list[str] = []
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self.thread.join(10)
        for r in self.runs.values():
            if r["proc"].poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(r["proc"].pid, 9)

    def image_env(self, home: pathlib.Path) -> dict:
        """The image's ENV (apache/airflow: PATH to its Python, HOME, AIRFLOW_HOME, LANG) and the test DAG's E2E_*."""
        s = self.site
        return {
            "PATH": f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home / "home/airflow"),
            "AIRFLOW_HOME": POD_HOME,
            "AIRFLOW_USER_HOME_DIR": "/home/airflow",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "E2E_RUN_MARKER": s.marker,
            "E2E_RESULTS_DIR": str(s.results),
            "E2E_GATES_DIR": str(s.gates),
            "E2E_PHASE": self.phase,
            "E2E_FIRE_AFTER": str(s.fire_after),
            "E2E_BEFORE_DELAY": str(s.before_delay),
            "E2E_FIXED_OFFSET_TZ": os.environ.get("E2E_FIXED_OFFSET_TZ", "0"),
            "E2E_DEADLINE": "1" if s.deadline else "0",
            "E2E_ASSET": "1" if s.asset else "0",
        }

    def container_env(self, pod: dict) -> dict:
        base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
        if base.get("envFrom"):
            raise harness.E2EError(f"envFrom is not modelled: {base['envFrom']}")
        env = {}
        for e in base.get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"] if e["value"] is not None else ""
            elif "valueFrom" in e and "secretKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = self.secrets[(ref["name"], ref["key"])]
            else:
                raise harness.E2EError(f"env entry not modelled: {e}")
        return env

    def _start(self, pod: dict):
        name = pod["metadata"]["name"]
        home = self.root / name
        mapped = home / POD_HOME.lstrip("/")
        (mapped / "logs").mkdir(parents=True)  # the `logs` emptyDir
        (home / "home/airflow").mkdir(parents=True)
        shutil.copytree(self.site.dags, mapped / "dags", ignore=shutil.ignore_patterns("__pycache__"))
        base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
        for vm in base.get("volumeMounts") or []:
            if vm["name"] == "config" and vm.get("subPath") == "airflow.cfg":
                pathlib.Path(str(home) + vm["mountPath"]).write_text(self.airflow_cfg.replace(POD_HOME, str(mapped)))
        cenv = self.container_env(pod)
        env = {**self.image_env(home), **cenv}
        env = {k: v.replace(POD_HOME, str(mapped)) for k, v in env.items()}
        args = list(base.get("args") or [])
        if base.get("command"):
            raise harness.E2EError(f"the pod sets a command: {base['command']}")
        out = open(self.root / f"{name}.stdout", "w")
        proc = subprocess.Popen(["env", "-i", *[f"{k}={v}" for k, v in sorted(env.items())], *args], stdout=out,
                                stderr=subprocess.STDOUT, cwd=mapped, start_new_session=True)
        out.close()
        ann = pod["metadata"].get("annotations") or {}
        self.runs[name] = {"proc": proc, "task_id": ann.get("task_id"), "try_number": ann.get("try_number"),
                           "env": env, "container_env": cenv, "args": args, "home": str(mapped),
                           "stdout": str(self.root / f"{name}.stdout"), "exit": None,
                           "image": base.get("image")}
        self.api.set_phase(name, "Running")

    def _loop(self):
        while not self._stop:
            with self.api.lock:
                new = [copy.deepcopy(p) for n, p in self.api.pods.items() if n not in self.runs]
            for pod in new:
                try:
                    self._start(pod)
                except Exception as e:  # a pod we cannot run is reported, never silently skipped
                    self.errors.append(f"{pod['metadata']['name']}: {type(e).__name__}: {e}")
                    self.runs[pod["metadata"]["name"]] = {"proc": subprocess.Popen(["true"]), "exit": -1,
                                                          "task_id": None, "error": str(e)}
            for name, r in self.runs.items():
                if r["exit"] is None and r["proc"].poll() is not None:
                    r["exit"] = r["proc"].returncode
                    self.api.set_phase(name, "Succeeded" if r["exit"] == 0 else "Failed", r["exit"])
            time.sleep(0.3)

    def summary(self) -> dict:
        return {n: {k: v for k, v in r.items() if k != "proc"} for n, r in self.runs.items()}


def _airflow_cfg(env: dict) -> str:
    """The deployment's airflow.cfg (the chart's configmap): every AIRFLOW__S__K setting the components have,
    but the ones the chart passes as secrets, with the deployment's AIRFLOW_HOME mapped to the pod's."""
    secret = {"AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__API_AUTH__JWT_SECRET"}
    sections: dict[str, list[str]] = {}
    for k, v in sorted(env.items()):
        m = re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", k)
        if not m or k in secret or m.group(1) == "KUBERNETES_EXECUTOR":
            continue
        v = v.replace(env["AIRFLOW_HOME"], POD_HOME)
        sections.setdefault(m.group(1).lower(), []).append(f"{m.group(2).lower()} = {v}")
    return "".join(f"[{s}]\n" + "\n".join(lines) + "\n\n" for s, lines in sections.items())


def executor_env(site: harness.AirflowSite, kubeconfig: pathlib.Path, template: pathlib.Path) -> dict:
    return {
        "AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor",
        "AIRFLOW__KUBERNETES_EXECUTOR__POD_TEMPLATE_FILE": str(template),
        "AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE": NAMESPACE,
        "AIRFLOW__KUBERNETES_EXECUTOR__IN_CLUSTER": "False",
        "AIRFLOW__KUBERNETES_EXECUTOR__CONFIG_FILE": str(kubeconfig),
        "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY": IMAGE[0],
        "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG": IMAGE[1],
        "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_PODS_CREATION_BATCH_SIZE": "16",
        "AIRFLOW__KUBERNETES_EXECUTOR__DELETE_WORKER_PODS": "False",
    }


def run_phase(s: harness.Scenario, name: str, db: harness.Database, template: pathlib.Path, full: bool) -> dict:
    """Bridged 3.1.8 components (switch on) + the KubernetesExecutor scheduler on `db`; pods from `template`.

    full: api-server, dag-processor, triggerer, scheduler; wait for everything the LocalExecutor reader finishes.
    Otherwise api-server + scheduler only: the *_before tasks (their trigger fired under 3.2.1) resume, or fail.
    """
    site = s.site
    phase = f"k8s-{name}"
    root = s.workdir / phase
    root.mkdir()
    rv = harness.bridge_venv("318k")
    saved_db, saved_env = site.db, site.extra_env
    facts: dict = {"template": str(template)}
    with FakeKubeAPI() as api:
        site.extra_env = executor_env(site, api.kubeconfig(root / "kubeconfig"), template)
        base_env = site.env(rv, phase, True)  # the deployment's config, as the components get it
        secrets = {
            (f"{RELEASE}-fernet-key", "fernet-key"): site.fernet,
            (f"{RELEASE}-airflow-metadata", "connection"): db.url(),
            (f"{RELEASE}-webserver-secret-key", "webserver-secret-key"): uuid.uuid4().hex,
        }
        kubelet = Kubelet(api, root / "pods", rv, site, phase, secrets, _airflow_cfg(base_env))
        (root / "pods").mkdir()
        site.db = db
        try:
            with kubelet:
                site.set_pool(harness.POOL_SLOTS)
                cs = [site.start(rv, phase, "api-server", True, ["api-server", "--port", str(site.port)])]
                site.wait_port()
                cs.append(site.start(rv, phase, "scheduler", True))
                if full:
                    cs += [site.start(rv, phase, "dag-processor", True), site.start(rv, phase, "triggerer", True)]
                    site.open_gate("after")  # already open when the LocalExecutor reader ran first
                    site.open_gate("asset_after")
                expect_deadline = full and site.deadline and int(db.query("SELECT COUNT(*) FROM deadline")[0][0]) > 0

                def finished():
                    st = site.ti_states()
                    pods_done = kubelet.runs and all(r["exit"] is not None for r in kubelet.runs.values())
                    if not full:
                        return pods_done and all(st[t][0] in harness.TERMINAL | {"up_for_retry"}
                                                 for t in harness.BEFORE_TASKS) and st
                    done = all(v in harness.TERMINAL for t, (v, _) in st.items() if t not in harness.STAYS_DEFERRED)
                    dl = (site.results / phase / "deadline_callback.json").exists() or not expect_deadline
                    asset = not site.asset or (site.results / phase / "asset_consumer.json").exists()
                    return done and dl and asset and pods_done and st

                try:
                    site.wait_for(f"every task of the {phase} phase finished in its pod", finished,
                                  timeout=s.fire_after + 240, components=cs)
                    time.sleep(3)
                    site.check_alive(cs)
                    facts["alive"] = {c.name: c.alive() for c in cs}
                finally:
                    facts["states"] = site.ti_states()
                    facts["logs"] = {c.name: str(c.log) for c in cs}
                    facts["log_crashes"] = {c.name: len(harness.CRASH_RE.findall(
                        pathlib.Path(c.log).read_text(errors="replace"))) for c in cs}
                    site.stop_all()
                    site.wait_port_free()
        finally:
            site.db, site.extra_env = saved_db, saved_env
            facts["created"] = api.created
            facts["requests"] = sorted({re.sub(r"\?.*", "", r) for r in api.requests})
            facts["kubelet_errors"] = kubelet.errors
            facts["runs"] = kubelet.summary()
            facts["results"] = site.read_results(phase)
    return facts


def task_log(run: dict) -> str:
    """The task's log as the pod's supervisor wrote it (under the pod's logs emptyDir)."""
    logs = sorted(pathlib.Path(run["home"], "logs").rglob(f"task_id={run['task_id']}/**/*.log")) + sorted(
        pathlib.Path(run["home"], "logs").rglob(f"task_id={run['task_id']}/*.log"))
    return "\n".join(p.read_text(errors="replace") for p in dict.fromkeys(logs))


def snapshots(s: harness.Scenario):
    s.k8s_dbs = {"chart": s.db.snapshot("k8schart"), "custom": s.db.snapshot("k8scustom")}


def k8s_chart_template(s: harness.Scenario):
    t = time.monotonic()
    s.facts["k8s_chart"] = run_phase(s, "chart", s.k8s_dbs["chart"], CHART_TEMPLATE, full=True)
    s.timings["k8s: chart pod template, every task in a pod"] = round(time.monotonic() - t, 1)


def k8s_custom_template(s: harness.Scenario):
    t = time.monotonic()
    try:
        s.facts["k8s_custom"] = run_phase(s, "custom", s.k8s_dbs["custom"], CUSTOM_TEMPLATE, full=False)
    finally:
        s.timings["k8s: custom pod template without the switch"] = round(time.monotonic() - t, 1)
        if s.db_kind != "sqlite":
            for d in s.k8s_dbs.values():
                with contextlib.suppress(Exception):
                    d.drop()


def attach(s: harness.Scenario) -> None:
    """PostgreSQL + writer 3.2.1, the reporter's setup (apache/airflow#68317): the k8s phases run on copies of
    the downgraded DB after the LocalExecutor reader stopped and before the afterlife phases reopen gates."""
    if s.db_kind == "postgres" and s.writer == "321" and not s.oracle and s.reader == "318":
        s.after_downgrade.append(snapshots)
        s.after_reader[0:0] = [k8s_chart_template, k8s_custom_template]
