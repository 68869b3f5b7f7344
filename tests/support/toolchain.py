"""External client programs the driver tests need, installed when missing.

Java and pgjdbc come from Debian packages. A fresh CI machine may lack them, so the
first test that needs them installs them (when running as root) instead of quietly
skipping: a skipped driver is a driver nobody tested. When installing is impossible
the reason is recorded in `NOT_RUN`, which the driver suite's conftest prints loudly
at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

JDBC_JAR = Path("/usr/share/java/postgresql.jar")
JDBC_PACKAGES = ("default-jre-headless", "libpostgresql-jdbc-java")

# Human-readable reasons why parts of the driver suite did not run.
NOT_RUN: list[str] = []


class ToolMissing(RuntimeError):
    """A client program is absent and could not be installed."""


@dataclass(frozen=True)
class Jdbc:
    java: str
    jar: Path


def _jdbc_present() -> Jdbc | None:
    java = shutil.which("java")
    if java and JDBC_JAR.is_file():
        return Jdbc(java, JDBC_JAR)
    return None


def _apt_install(packages: tuple[str, ...], timeout: float) -> str:
    """Install Debian packages; returns '' on success, else what went wrong."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root or no apt-get, cannot install " + " ".join(packages)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    try:
        if subprocess.run(install, env=env, capture_output=True, timeout=timeout).returncode:
            # The package lists may be missing or stale on a fresh machine.
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                           timeout=timeout)
            done = subprocess.run(install, env=env, capture_output=True, text=True,
                                  timeout=timeout)
            if done.returncode:
                return f"apt-get install failed: {done.stderr.strip()[-500:]}"
    except subprocess.TimeoutExpired:
        return f"apt-get took longer than {timeout:.0f}s"
    return ""


def jdbc(install_timeout: float = 240) -> Jdbc:
    """java and the pgjdbc jar, installing Debian's packages if needed."""
    found = _jdbc_present()
    if found:
        return found
    problem = _apt_install(JDBC_PACKAGES, install_timeout)
    found = _jdbc_present()
    if found:
        return found
    raise ToolMissing(problem or f"java or {JDBC_JAR} still missing after apt-get install")


CHROMIUM_PACKAGES = ("chromium",)


def chromium(install_timeout: float = 600) -> str:
    """A headless-capable Chromium (Debian's package), installed if needed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    problem = _apt_install(CHROMIUM_PACKAGES, install_timeout)
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    raise ToolMissing(problem or "chromium still missing after apt-get install")
