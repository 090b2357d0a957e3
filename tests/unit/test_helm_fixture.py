"""The hand-rendered chart pod template (tests/fixtures/helm, see PROVENANCE.md) against the chart sources it
was rendered from, and the real KubernetesExecutor's pod construction from it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

HELM = Path(__file__).resolve().parents[1] / "fixtures" / "helm"
TEMPLATE = (HELM / "pod-template-file.kubernetes-helm-yaml").read_text()
HELPERS = (HELM / "helpers-env-excerpt.yaml").read_text()
RELEASE = "airflow"
ENABLED = {"AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__CORE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
           "AIRFLOW_CONN_AIRFLOW_DB", "AIRFLOW__WEBSERVER__SECRET_KEY"}
USER_ENV = [("AIRFLOW_SERDE_COMPAT", "1")]


def _pod(name):
    return yaml.safe_load((HELM / name).read_text())


def _base(pod):
    (base,) = [c for c in pod["spec"]["containers"] if c["name"] == "base"]
    return base


def _define(name):
    m = re.search(r'\{\{- define "%s" -?\}\}(.*?)\n\{\{- end \}\}' % re.escape(name), HELPERS, re.S)
    assert m, name
    return m.group(1)


def _expected_env():
    """What the chart's env: block renders, step by step from the source text."""
    env_block = re.search(r"\n      env:\n(.*?)\n      image:", TEMPLATE, re.S).group(1)
    steps = re.findall(r'- name: (\w+)\n\s+value: (\w+)|include "(\w+)"', env_block)
    out = []
    for name, value, include in steps:
        if name:
            out.append((name, value))
        elif include == "standard_airflow_environment":
            body = _define(include)
            # only the plain `if .Values.enableBuiltInSecretEnvVars.X` entries at the top level of the define
            for flag, var, secret, key in re.findall(
                r"\{\{- if \.Values\.enableBuiltInSecretEnvVars\.(\w+) \}\}\n  - name: (\w+)\n    valueFrom:\n"
                r"      secretKeyRef:\n        name: \{\{ template \"(\w+)\" \. \}\}\n        key: ([\w-]+)", body):
                if flag in ENABLED:
                    assert flag == var
                    out.append((var, (_secret_name(secret), key)))
        elif include == "custom_airflow_environment":
            body = _define(include)
            assert "AIRFLOW__KUBERNETES_ENVIRONMENT_VARIABLES__{{ $config.name }}" in body
            for n, v in USER_ENV:
                out += [(n, v), (f"AIRFLOW__KUBERNETES_ENVIRONMENT_VARIABLES__{n}", v)]
        elif include == "container_extra_envs":
            pass  # workers.env is empty in the rendered values
        else:
            raise AssertionError(include)
    return out


def _secret_name(define):
    body = _define(define)
    return re.search(r'printf "%s-([\w-]+)" \.Release\.Name', body).expand(rf"{RELEASE}-\1")


def _env(base):
    return [(e["name"], e["value"] if "value" in e else (e["valueFrom"]["secretKeyRef"]["name"],
                                                         e["valueFrom"]["secretKeyRef"]["key"])) for e in base["env"]]


def test_the_template_writes_env_in_this_order():
    env_block = re.search(r"\n      env:\n(.*?)\n      image:", TEMPLATE, re.S).group(1)
    assert re.findall(r'include "(\w+)"', env_block) == [
        "standard_airflow_environment", "custom_airflow_environment", "container_extra_envs"]
    assert "(list . .Values.workers.env)" in env_block


def test_rendered_env_is_what_the_chart_source_renders():
    assert _env(_base(_pod("pod-template-rendered-default.yaml"))) == _expected_env()


def test_rendered_container_structure_follows_the_source():
    pod = _pod("pod-template-rendered-default.yaml")
    base = _base(pod)
    assert len(pod["spec"]["containers"]) == 1 and "command" not in base and "args" not in base
    assert base["image"] == "apache/airflow:3.1.8"  # pod_template_image: images.pod_template or the defaults
    assert 'printf "%s:%s" (.Values.images.pod_template.repository' in _define("pod_template_image")
    assert base["volumeMounts"] == [
        {"mountPath": "/opt/airflow/logs", "name": "logs"},
        {"name": "config", "mountPath": "/opt/airflow/airflow.cfg", "subPath": "airflow.cfg", "readOnly": True}]
    assert {"configMap": {"name": f"{RELEASE}-airflow-config"}, "name": "config"} in pod["spec"]["volumes"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-worker"
    assert pod["metadata"]["labels"] == {"tier": "airflow", "component": "worker", "release": RELEASE}


def test_the_custom_template_is_the_default_without_the_charts_env():
    default, custom = _pod("pod-template-rendered-default.yaml"), _pod("pod-template-custom-without-env.yaml")
    names = [n for n, _ in _env(_base(custom))]
    assert "AIRFLOW_SERDE_COMPAT" not in names
    _base(default)["env"] = [e for e in _base(default)["env"] if "SERDE_COMPAT" not in e["name"]]
    assert default == custom


@pytest.mark.airflow
@pytest.mark.parametrize("fixture,switch", [("pod-template-rendered-default.yaml", "1"),
                                            ("pod-template-custom-without-env.yaml", None)])
def test_the_executors_pod_construction_keeps_the_template_env(fixture, switch):
    # The provider's own path (KubernetesScheduler.run_next): template -> base pod -> PodGenerator.construct_pod.
    from airflow.providers.cncf.kubernetes.kube_config import KubeConfig
    from airflow.providers.cncf.kubernetes.executors.kubernetes_executor_utils import get_base_pod_from_template
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    base_pod = get_base_pod_from_template(str(HELM / fixture), KubeConfig())
    pod = PodGenerator.construct_pod(
        namespace="airflow", scheduler_job_id="1", pod_id="p", dag_id="d", task_id="t", kube_image="img:tag",
        try_number=1, map_index=-1, date=None, run_id="r", args=["python", "-m", "x"], pod_override_object=None,
        base_worker_pod=base_pod, with_mutation_hook=False)
    (base,) = [c for c in pod.spec.containers if c.name == "base"]
    env = {e.name: e.value for e in base.env}
    assert env.get("AIRFLOW_SERDE_COMPAT") == switch
    assert base.image == "img:tag" and base.args == ["python", "-m", "x"]
