"""deploy/: the Dockerfile builds (where a docker daemon is), and what can be checked
without one is: the files it copies make an installable package with the C
extensions built, its health check command opens a connection through a real proxy,
the compose file's settings are mlproxy's, the systemd unit passes
`systemd-analyze verify` and its config file passes `mlproxy check-config`."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import build_parser
from proxy.embedded import bin_dir
from proxy.settings import BY_NAME, ENV_PREFIX

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
EXTENSIONS = ("_mlproxy_wire", "_mlproxy_pump", "_mlproxy_rows")


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def copied_sources() -> list[str]:
    sources = []
    for word, rest in dockerfile():
        if word == "COPY":
            sources += [s for s in shlex.split(rest)[:-1] if not s.startswith("--")]
    return sources


def ignored(path: str) -> bool:
    """Whether deploy/Dockerfile.dockerignore leaves `path` (relative to the root)
    out of the build context (the last matching pattern decides, as in Docker)."""
    result = False
    for pattern in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [pattern, pattern + "/**"]
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, c) or (c.startswith("**/") and fnmatch.fnmatch(p, c[3:]))
               for p in prefixes for c in candidates) or pattern == "**":
            result = not negate
    return result


def docker_daemon() -> str | None:
    """Why there is no usable docker daemon here, or None."""
    if shutil.which("docker") is None:
        return "no docker command"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return "no docker daemon: " + (info.stderr.strip().splitlines() or ["?"])[-1]
    return None


def test_dockerfile_builds_and_runs():
    reason = docker_daemon()
    if reason is not None:
        pytest.skip(f"docker build of deploy/Dockerfile not checked: {reason}")
    tag = "mlproxy-test:deploy"
    built = subprocess.run(["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag,
                            str(ROOT)], capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-4000:]
    version = subprocess.run(["docker", "run", "--rm", tag, "--version"], capture_output=True,
                             text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("mlproxy "), version
    user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
                          capture_output=True, text=True, timeout=120)
    assert user.stdout.strip() not in ("", "0"), user


def test_dockerfile_is_slim_non_root_with_a_health_check():
    steps = dockerfile()
    words = [w for w, _ in steps]
    assert re.fullmatch(r"python:3\.1\d-slim", steps[0][1]), steps[0]
    user_at = words.index("USER")
    assert dict(steps)["USER"] not in ("root", "0")
    assert all(w != "RUN" for w in words[user_at + 1:]), "nothing runs as root after USER"
    install = " ".join(rest for w, rest in steps[:user_at] if w == "RUN")
    assert "pip install" in install
    assert all(name in install for name in EXTENSIONS), "the image checks they are built"
    health = dict(steps)["HEALTHCHECK"]
    assert "pg_isready" in health and "6543" in health
    env = dict(steps)["ENV"]
    assert f"{ENV_PREFIX}LISTEN=0.0.0.0:6543" in env
    assert dict(steps)["EXPOSE"] == "6543"


def test_dockerfile_copies_existing_files_the_context_keeps():
    sources = copied_sources()
    assert {"pyproject.toml", "setup.py", "proxy", "compiler", "automl"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), f"{source} is copied but .dockerignore leaves it out"
    assert ignored("build/lib/x.py") and ignored("tests/test_smoke.py")
    assert ignored("_mlproxy_pump.cpython-311-x86_64-linux-gnu.so")
    assert ignored("proxy/__pycache__/cli.cpython-311.pyc")
    assert not ignored("proxy/demo/customers.py")


@pytest.mark.slow
def test_the_copied_files_build_a_package_with_its_extensions(tmp_path):
    """What `pip install /src` builds in the image, from the same files (those the
    Dockerfile copies, minus what the context leaves out), without a daemon."""
    src = tmp_path / "src"
    src.mkdir()
    for source in copied_sources():
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, src / source, ignore=lambda d, names: [
                n for n in names if ignored(os.path.relpath(Path(d) / n, ROOT))])
        else:
            shutil.copy(path, src / source)
    # `setup.py build` is what pip's wheel build runs (the venv has no `wheel` and
    # may have no network for an isolated build).
    built = subprocess.run([sys.executable, "setup.py", "-q", "build"], cwd=src,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-4000:]
    lib, = (src / "build").glob("lib*")
    names = [str(p.relative_to(lib)) for p in lib.rglob("*")]
    assert "proxy/demo/customers.py" in names and "proxy/settings.py" in names
    for extension in EXTENSIONS:
        assert any(n.startswith(extension) and n.endswith(".so") for n in names), extension


def test_health_check_command_opens_a_connection(proxy):
    health = dict(dockerfile())["HEALTHCHECK"]
    command = shlex.split(health.split("CMD", 1)[1].strip().replace("[", "").replace("]", "")
                          .replace(",", " "))
    assert command[0] == "pg_isready"
    program = str(bin_dir() / "pg_isready")  # the image links the same pgserver program

    def check(port: int) -> int:
        args = [a.replace("6543", str(port)) for a in command[1:]]
        return subprocess.run([program, *args], capture_output=True, timeout=30).returncode

    assert check(proxy.port) == 0
    assert check(1) != 0  # nothing listens there: unhealthy


def test_compose_file_puts_mlproxy_in_front_of_postgres():
    yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extras")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"].split(":")[0] == "postgres"
    proxy = services["mlproxy"]
    context = (DEPLOY / proxy["build"]["context"]).resolve()
    assert context == ROOT and (context / proxy["build"]["dockerfile"]).is_file()
    assert proxy["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert any(str(p).endswith(":6543") for p in proxy["ports"])
    for name, value in proxy["environment"].items():
        assert name.startswith(ENV_PREFIX)
        setting = BY_NAME[name[len(ENV_PREFIX):].lower()]
        setting.convert(value)  # raises if mlproxy would refuse it
    upstream = proxy["environment"]["MLPROXY_UPSTREAM"]
    assert "@postgres:5432/" in upstream
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert f":{password}@" in upstream
    for volume in [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])]:
        assert volume in compose["volumes"]


def test_systemd_unit_verifies(tmp_path):
    unit = (DEPLOY / "mlproxy.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M)
    args = build_parser().parse_args(shlex.split(exec_start.group(2)))
    assert args.command == "serve" and args.config == Path("/etc/mlproxy/mlproxy.toml")
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.M)
    assert re.search(r"^User=mlproxy$", unit, re.M)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd unit not verified: no systemd-analyze here")
    # Verified as written, but for the program's path: the example installs it in
    # /opt/mlproxy, here it is this environment's.
    program = shutil.which("mlproxy") or str(Path(sys.executable).parent / "mlproxy")
    copy = tmp_path / "mlproxy.service"
    copy.write_text(unit.replace(exec_start.group(1), program))
    verified = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                              text=True, timeout=120)
    assert verified.returncode == 0 and not verified.stderr.strip() \
        and not verified.stdout.strip(), verified


def test_example_config_file_checks():
    checked = subprocess.run([sys.executable, "-m", "proxy", "check-config",
                              str(DEPLOY / "mlproxy.toml")], capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
    assert checked.returncode == 0, checked.stderr
    assert "data_dir = /var/lib/mlproxy" in checked.stdout
