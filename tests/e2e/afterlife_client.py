"""REST calls of a rolled-back deployment through the official client (`apache-airflow-client`, venvs.sh `api`).

Run by afterlife.py under the `api` venv: ``python afterlife_client.py CONFIG.json OUT.json``. Records, per call,
whether it succeeded (status, or the error the client raised) and a small summary of what it returned; every raw
response body goes to OUT.json too, so the caller can search them. It judges nothing: the tests compare the
summaries with what the DB and the scheduler recorded.
"""
from __future__ import annotations

import json
import sys
import traceback
import urllib.request

import airflow_client.client as ac
from airflow_client.client.api import dag_api, dag_run_api, dag_version_api, task_instance_api, x_com_api


def token(base: str, username: str, password: str) -> str:
    req = urllib.request.Request(f"{base}/auth/token", data=json.dumps({"username": username, "password": password})
                                 .encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["access_token"]


class RecordingClient(ac.ApiClient):
    """Keeps every response body, including the error bodies the client turns into exceptions."""

    bodies: list

    def response_deserialize(self, response_data, response_types_map=None):
        self.bodies.append({"status": response_data.status, "body": response_data.data.decode("utf-8", "replace")})
        return super().response_deserialize(response_data, response_types_map)


def ti_view(ti) -> dict:
    return {
        "task_id": ti.task_id, "state": ti.state.value if ti.state else None, "try_number": ti.try_number,
        "trigger_id": ti.trigger.id if ti.trigger else None,
        "trigger_classpath": ti.trigger.classpath if ti.trigger else None,
        "triggerer_job_id": ti.triggerer_job.id if ti.triggerer_job else None,
        "dag_version_number": ti.dag_version.version_number if ti.dag_version else None,
    }


def main(cfg_path: str, out_path: str) -> None:
    cfg = json.load(open(cfg_path))
    base, dag_id = cfg["base_url"], cfg["dag_id"]
    out: dict = {"calls": {}, "bodies": []}
    client = RecordingClient(ac.Configuration(host=base, access_token=token(base, cfg["username"], cfg["password"])))
    client.bodies = []
    dags, runs = dag_api.DAGApi(client), dag_run_api.DagRunApi(client)
    tis, xcoms, versions = task_instance_api.TaskInstanceApi(client), x_com_api.XComApi(client), \
        dag_version_api.DagVersionApi(client)

    def call(name, fn, summarize):
        n = len(client.bodies)
        try:
            result = fn()
            rec = {"ok": True, "status": client.bodies[-1]["status"] if len(client.bodies) > n else None,
                   "value": summarize(result)}
        except ac.ApiException as e:
            rec = {"ok": False, "status": e.status, "error": f"{type(e).__name__}: {e.status} {e.reason}",
                   "body": (e.body or "")[:1500] if isinstance(e.body, str) else repr(e.body)[:1500]}
        except Exception as e:  # the client could not parse a 2xx answer: a failure as well
            rec = {"ok": False, "status": client.bodies[-1]["status"] if len(client.bodies) > n else None,
                   "error": f"{type(e).__name__}: {e}"[:1500], "traceback": traceback.format_exc()[-1500:]}
        for b in client.bodies[n:]:
            out["bodies"].append({"call": name, **b})
        out["calls"][name] = rec
        return rec

    run_id = cfg["run_id"]
    call("get_dag_runs", lambda: runs.get_dag_runs(dag_id),
         lambda r: {"total": r.total_entries, "runs": [{"run_id": x.dag_run_id, "state": x.state.value,
                                                        "dag_versions": [v.version_number for v in x.dag_versions]}
                                                       for x in r.dag_runs]})
    call("get_dag_run", lambda: runs.get_dag_run(dag_id, run_id), lambda x: {"run_id": x.dag_run_id,
                                                                            "state": x.state.value})
    call("get_task_instances", lambda: tis.get_task_instances(dag_id, run_id, limit=100),
         lambda r: {"total": r.total_entries, "tis": sorted((ti_view(t) for t in r.task_instances),
                                                             key=lambda d: d["task_id"])})
    call("get_task_instances(state=deferred)", lambda: tis.get_task_instances(dag_id, run_id, state=["deferred"]),
         lambda r: {"total": r.total_entries, "tis": sorted((ti_view(t) for t in r.task_instances),
                                                             key=lambda d: d["task_id"])})
    for task_id in cfg["task_ids"]:
        call(f"get_task_instance({task_id})", lambda t=task_id: tis.get_task_instance(dag_id, run_id, t), ti_view)
        call(f"get_task_instance_tries({task_id})", lambda t=task_id: tis.get_task_instance_tries(dag_id, run_id, t),
             lambda r: {"total": r.total_entries, "tries": [{"try_number": x.try_number,
                                                             "state": x.state.value if x.state else None}
                                                            for x in r.task_instances]})
    xt = cfg["xcom_task"]
    call(f"get_xcom_entries({xt})", lambda: xcoms.get_xcom_entries(dag_id, run_id, xt),
         lambda r: {"total": r.total_entries, "keys": sorted(x.key for x in r.xcom_entries)})
    for label, kw in (("stored", {}), ("deserialize", {"deserialize": True}),
                      ("deserialize+stringify", {"deserialize": True, "stringify": True})):
        call(f"get_xcom_entry({xt}, {label})", lambda kw=kw: xcoms.get_xcom_entry(dag_id, xt, run_id, "return_value",
                                                                                   **kw),
             lambda r: {"value": r.actual_instance.value if hasattr(r, "actual_instance") else r.value,
                        "kind": type(r.actual_instance if hasattr(r, "actual_instance") else r).__name__})
    call("get_dag_details", lambda: dags.get_dag_details(dag_id),
         lambda d: {"dag_id": d.dag_id, "latest_version": d.latest_dag_version.version_number
                    if d.latest_dag_version else None, "is_paused": d.is_paused})
    call("get_dag_versions", lambda: versions.get_dag_versions(dag_id),
         lambda r: {"total": r.total_entries, "versions": sorted(v.version_number for v in r.dag_versions)})
    v = cfg["writer_version_number"]
    call(f"get_dag_version({v})", lambda: versions.get_dag_version(dag_id, v),
         lambda d: {"version_number": d.version_number, "dag_id": d.dag_id})
    # What the UI asks for the graph/grid of that version: the whole serialized DAG of the 3.2 writer, deserialized
    # (deadline alert included). Not part of the public client, so a plain authenticated GET.
    n = len(client.bodies)
    try:
        body = client.call_api("GET", f"{base}/ui/structure/structure_data?dag_id={dag_id}&version_number={v}",
                               header_params={"Authorization": f"Bearer {client.configuration.access_token}"})
        body.read()
        client.bodies.append({"status": body.status, "body": body.data.decode("utf-8", "replace")})
        ok = body.status == 200
        value = sorted(x["id"] for x in json.loads(body.data)["nodes"]) if ok else None
        out["calls"][f"ui structure_data(version {v})"] = {"ok": ok, "status": body.status, "value": value,
                                                          **({} if ok else {"body": body.data.decode()[:1500]})}
    except Exception as e:
        out["calls"][f"ui structure_data(version {v})"] = {"ok": False, "status": None, "error": repr(e)[:1500]}
    for b in client.bodies[n:]:
        out["bodies"].append({"call": f"ui structure_data(version {v})", **b})
    json.dump(out, open(out_path, "w"), indent=1, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:3])
