import json
import re
from pathlib import Path

import yaml

from llamaops_sandbox import config
from llamaops_sandbox.layout import Layout
from tests.unit.sandbox_tools import run

PORTS = config.Ports(*range(20001, 20001 + config.Ports.count()))
LAYOUT = Layout(Path("/cache"))


def test_every_component_listens_on_loopback_at_its_own_port():
    comps = config.components(LAYOUT, PORTS)
    assert [c.name for c in comps] == list(config.COMPONENTS)
    for c in comps:
        assert c.health_url.startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
        assert not any("0.0.0.0" in a for a in c.argv)
    assert len({c.health_url.rsplit(":", 1)[1].split("/")[0] for c in comps}) == len(comps)


def test_apiserver_has_tls_service_account_keys_and_rbac():
    argv = next(c.argv for c in config.components(LAYOUT, PORTS) if c.name == "kube-apiserver")
    flags = dict(a.split("=", 1) for a in argv[1:])
    assert flags["--bind-address"] == "127.0.0.1"
    assert flags["--secure-port"] == str(PORTS.apiserver)
    assert flags["--tls-cert-file"].endswith("apiserver.crt")
    assert flags["--service-account-signing-key-file"].endswith("sa.key")
    assert "RBAC" in flags["--authorization-mode"]
    assert flags["--etcd-servers"] == f"http://127.0.0.1:{PORTS.etcd_client}"


def test_kwok_manages_only_annotated_nodes_and_loads_the_crash_and_image_pull_stages():
    argv = next(c.argv for c in config.components(LAYOUT, PORTS) if c.name == "kwok")
    assert "--manage-all-nodes=false" in argv
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in argv
    stages = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    assert [Path(s).name for s in stages[-2:]] == ["kwok-crash-loop.yaml", "kwok-image-pull.yaml"]
    assert any(s.endswith("pod-ready.yaml") for s in stages)


def test_prometheus_scrapes_ksm_operator_and_annotated_pods():
    cfg = config.prometheus_config(LAYOUT, PORTS)
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["kube-state-metrics"]["static_configs"][0]["targets"] == [f"127.0.0.1:{PORTS.kube_state_metrics}"]
    assert jobs["llama-operator"]["static_configs"][0]["targets"] == [f"127.0.0.1:{PORTS.operator_metrics}"]
    sd = jobs["kubernetes-pods"]["kubernetes_sd_configs"][0]
    assert sd["api_server"] == f"https://127.0.0.1:{PORTS.apiserver}"
    keep = jobs["kubernetes-pods"]["relabel_configs"][0]
    assert keep["action"] == "keep"
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]


def test_address_relabel_puts_the_annotated_port_on_the_pod_ip():
    rule = config.prometheus_config(LAYOUT, PORTS)["scrape_configs"][2]["relabel_configs"][2]
    # Prometheus anchors relabel regexes and joins source labels with ";".
    match = re.fullmatch(rule["regex"], "10.0.0.7:80;8000")
    assert match is not None
    assert rule["replacement"].replace("$1", match[1]).replace("$2", match[2]) == "10.0.0.7:8000"


def test_prometheus_reads_loopback_targets_from_file_sd_files(tmp_path):
    layout = Layout(tmp_path)
    cfg = config.prometheus_config(layout, PORTS)
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == config.FILE_SD_JOB)
    (sd,) = job["file_sd_configs"]
    assert sd["files"] == [str(config.file_sd_dir(layout) / "*.json")]
    assert config.file_sd_dir(layout).parent == layout.run
    # A target file as the tests write it, and the job, through Prometheus's own config and SD-file checks.
    config.file_sd_dir(layout).mkdir(parents=True)
    target = {"targets": ["127.0.0.1:8000"], "labels": {"namespace": "ns", "pod": "tiny-5d8f7c9b4-x2k4q"}}
    (config.file_sd_dir(layout) / "vllm.json").write_text(json.dumps([target]))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": [job]}))
    checked = run("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr


def test_env_exports_kubeconfig_prometheus_and_operator_metrics_port():
    lines = config.env_lines(LAYOUT, PORTS)
    assert f"export KUBECONFIG={LAYOUT.kubeconfig}" in lines
    assert f"export LLAMAOPS_PROMETHEUS_URL=http://127.0.0.1:{PORTS.prometheus}" in lines
    assert f"export LLAMAOPS_OPERATOR_METRICS_PORT={PORTS.operator_metrics}" in lines
