"""The proxy's settings, defined once: flags, environment, config file, listing.

Every setting is a row of SETTINGS. From it derive the `serve` flags (`--data-dir`),
the environment variables (`MLPROXY_DATA_DIR`), the TOML keys of `--config`
(`data_dir`), `--help`, and the listing of the settings in force with where each came
from. Precedence: flag > environment > file > default.

A config file is flat TOML (`workers = 2`, `log_level = "debug"`). An unknown key or a
bad value is a ConfigError naming the file, the line and the key; tomllib gives no
line numbers for keys, so `_key_line` finds them in the text.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "MLPROXY_"


class ConfigError(Exception):
    """A setting that stops startup (and makes check-config exit 1)."""


# -- value parsers: each takes a string (flag, environment) or a TOML value ---------------

def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_toml_type(value)}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected an integer, got {_toml_type(value)}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {_toml_type(value)}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def _path(value: Any) -> Path:
    text = _text(value)
    if not text:
        raise ValueError("expected a path, got an empty string")
    return Path(text).expanduser()


def _listen(value: Any) -> tuple[str, int]:
    host, sep, port = _text(value).rpartition(":")
    if not sep:
        host = "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"expected HOST:PORT, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range (0..65535)")
    return host.strip("[]") or "127.0.0.1", number


def _upstream(value: Any) -> str:
    from .config import Upstream
    text = _text(value)
    Upstream.from_url(text)  # ValueError names what is wrong
    return text


def _names(value: Any) -> tuple[str, ...]:
    """Role names: a comma-separated string (flag, environment, file) or a TOML array."""
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ValueError("expected an array of strings")
        names = value
    else:
        names = _text(value).split(",")
    return tuple(n.strip() for n in names if n.strip())


def _masked_url(url: str) -> str:
    """The URL with its password (in the authority or as ?password=) hidden."""
    url = re.sub(r"(://[^/@:]*:)[^/]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def _endpoints(value: Any) -> tuple[tuple[str, str], ...]:
    """Inference endpoints, `name=url` each: a flag (repeatable), a list in TOML, or
    space- or comma-separated in the environment. A later name replaces an earlier."""
    items: list[Any] = []
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, tuple):  # (name, url) pairs a flag already parsed
            items.extend([item] if len(item) == 2 and isinstance(item[0], str) else list(item))
        else:
            items.extend(part for part in re.split(r"[\s,]+", _text(item)) if part)
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, tuple):
            out[item[0]] = item[1]
            continue
        name, sep, url = item.partition("=")
        if not sep or not name or not re.match(r"^(mlflow\+)?https?://[^/\s]+", url, re.IGNORECASE):
            raise ValueError(f"expected NAME=[mlflow+]http(s)://host[:port][/path], got {item!r}")
        out[name] = url
    return tuple(out.items())


def _show_endpoints(value: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{name}={_masked_url(url)}" for name, url in value)


def _snapshot_store(value: Any) -> str:
    text = _text(value).strip()
    if not re.match(r"^(file:///.|s3://[^/]+)", text):
        raise ValueError(f"expected file:///shared/path or s3://bucket/prefix, got {value!r}")
    return text


def _existing_dir(value: Any) -> Path:
    path = _path(value)
    if not path.is_dir():
        raise ValueError(f"no such directory: {str(path)!r}")
    return path


def _url_prefixes(value: Any) -> tuple[str, ...]:
    prefixes = tuple(part.strip() for part in _text(value).split(",") if part.strip())
    for prefix in prefixes:
        if not prefix.lower().startswith("s3://") or len(prefix) <= len("s3://"):
            raise ValueError(f"expected s3://bucket/prefix, got {prefix!r}")
    return prefixes


def _cluster(value: Any) -> str:
    """A Dask scheduler address: tcp://host:port, tls://host:port, or host:port."""
    text = _text(value).strip()
    if "://" not in text:
        text = "tcp://" + text
    scheme, _, rest = text.partition("://")
    if scheme not in ("tcp", "tls", "ucx", "ws", "wss"):
        raise ValueError(f"expected tcp://HOST:PORT (or tls://, ucx://, ws://, wss://), got {value!r}")
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"expected {scheme}://HOST:PORT, got {value!r}")
    return text.rstrip("/")


def _existing_file(value: Any) -> Path:
    path = _path(value)
    if not path.is_file():
        raise ValueError(f"no such file: {str(path)!r}")
    return path


def _toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Setting:
    name: str                      # TOML key; the flag is --name-with-dashes
    parse: Callable[[Any], Any]    # str or TOML value -> value (ValueError: why not)
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    # How the running proxy applies a new value on SIGHUP: "reload" if it can (a hook
    # in proxy/reload.py is registered for it), "restart" if it needs a restart.
    on_change: str = "restart"
    default_help: str | None = None  # --help's words for a default that is not a value
    repeat: bool = False  # a flag that may be given several times (its values add up)
    display: Callable[[Any], str] | None = None  # how logs and listings show the value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def toml_types(self) -> tuple[type, ...]:
        """The TOML value types the file may give (a flag or variable is a string)."""
        return {_int: (int,), _float: (int, float), _bool: (bool,), _endpoints: (str, list),
                _names: (str, list)}.get(self.parse, (str,))

    def convert(self, value: Any) -> Any:
        parsed = self.parse(value)
        if self.choices is not None:
            parsed = parsed.lower()
            if parsed not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")
        if self.minimum is not None and parsed < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}, got {value!r}")
        return parsed

    def show(self, value: Any) -> str:
        if value is None:
            return ""
        if self.display is not None:
            return self.display(value)
        if self.parse is _listen:
            return f"{value[0]}:{value[1]}"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


SETTINGS: tuple[Setting, ...] = (
    Setting("listen", _listen, ("127.0.0.1", 6543), "address to accept clients on",
            metavar="HOST:PORT"),
    Setting("upstream", _upstream, None,
            "upstream server, e.g. postgresql://mlproxy:secret@db.example:5432 or "
            "postgresql:///?host=/var/run/postgresql; clients log in as themselves, the "
            "URL's user and password are the proxy's own identity for the model catalog",
            metavar="URL", default_help="the embedded Postgres", display=_masked_url),
    Setting("data_dir", _path, None,
            "state directory: embedded Postgres data, training snapshots, compiled model "
            "cache", metavar="DIR",
            default_help="the user data directory, e.g. ~/.local/share/mlproxy"),
    Setting("tls_cert", _existing_file, None,
            "PEM certificate: terminate TLS at the proxy (a reload applies to new "
            "connections)", metavar="PEM", on_change="reload"),
    Setting("tls_key", _existing_file, None, "PEM private key for tls_cert",
            metavar="PEM", on_change="reload"),
    Setting("tls_required", _bool, False,
            "refuse clients that do not use TLS (FATAL 28000, as Postgres' hostssl-only "
            "pg_hba.conf); needs tls_cert"),
    Setting("shutdown_grace", _float, 10.0,
            "on SIGINT/SIGTERM, how long in-flight queries may run", metavar="SECONDS",
            minimum=0, on_change="reload"),
    Setting("workers", _int, 1, "training jobs that run at once, each in its own process",
            metavar="N", minimum=1, on_change="reload"),
    Setting("training_cluster", _cluster, None,
            "Dask scheduler to train on (dask.distributed, e.g. tcp://scheduler:8786): the "
            "AutoML search's trials run as tasks on its workers, which read the snapshot's "
            "partitions from the snapshot store, and an XGBoost winner trains with "
            "xgboost.dask on all of them; only plain data (scores, XGBoost JSON) comes back; "
            "needs `pip install 'mlproxy[cluster]'`", metavar="URL",
            default_help="none: train in local worker processes"),
    Setting("training_cluster_fallback", _bool, False,
            "when the training cluster does not answer at startup, or is lost during a "
            "job, train on the local workers instead (without it: serve does not start, "
            "and the job is FAILED with the reason)"),
    Setting("job_sweep", _float, 30.0,
            "how often to look for interrupted training jobs to resume or fail (a failed "
            "look is retried sooner)", metavar="SECONDS", minimum=0.1),
    Setting("snapshot_store", _snapshot_store, None,
            "where training snapshots (Parquet) go, for every proxy of a fleet to train "
            "from: file:///shared/path or s3://bucket/prefix (needs s3fs; S3_BUCKET in "
            "CREATE MODEL's SETTINGS picks the bucket)", metavar="URL",
            default_help="the data directory (one machine)"),
    Setting("job_lease", _float, 30.0,
            "a claimed training job's lease, renewed while it trains: a job whose proxy "
            "died is taken over by another once it expires", metavar="SECONDS", minimum=0.5),
    Setting("relay", _text, "native",
            "who relays sessions with nothing to intercept: a native thread (when the "
            "extension is built) or the event loop", choices=("native", "python")),
    Setting("relend_after", _int, 8,
            "a session holding prepared model statements goes back to the native relay "
            "this many requests after its last model call (0: at once)", metavar="N",
            minimum=0),
    Setting("endpoint", _endpoints, (),
            "an inference endpoint that CREATE MODEL ... SAGEMAKER 'NAME' may use: rows are "
            "POSTed to URL/invocations as SageMaker's text/csv; mlflow+http://... for an MLflow "
            "scoring server, which needs a CSV header (repeatable; in a file a list of strings)",
            metavar="NAME=URL", on_change="reload", default_help="none", display=_show_endpoints,
            repeat=True),
    Setting("allow_endpoint_urls", _bool, False,
            "let CREATE MODEL ... SAGEMAKER name any http(s) URL, not only a configured endpoint "
            "(a client then chooses which host the proxy calls)", on_change="reload"),
    Setting("endpoint_timeout", _float, 30.0,
            "how long one request to an inference endpoint may take; then the statement "
            "fails with 08006", metavar="SECONDS", minimum=0.001, on_change="reload"),
    Setting("endpoint_connections", _int, 4,
            "requests one statement sends to an inference endpoint at once (and connections "
            "per endpoint host)", metavar="N", minimum=1, on_change="reload"),
    Setting("log_level", _text, "info", "log verbosity",
            choices=("debug", "info", "warning", "error"), on_change="reload"),
    Setting("import_dir", _existing_dir, None,
            "directory CREATE MODEL ... FROM 'path' may import model files from (bring your "
            "own model); paths resolve inside it, symlinks and .. included", metavar="DIR",
            default_help="none: importing from a path is refused"),
    Setting("import_urls", _url_prefixes, (),
            "object-store URL prefixes CREATE MODEL ... FROM 's3://...' may import from, comma "
            "separated (s3://bucket/models/); read with the proxy's AWS credential chain",
            metavar="PREFIXES", default_help="none: importing from URLs is refused",
            display=lambda v: ",".join(v)),
    Setting("import_max_bytes", _int, 256 << 20,
            "largest model file CREATE MODEL imports (a path, an s3:// URL, a query's bytea; "
            "a model.tar.gz once decompressed)", metavar="BYTES", minimum=1),
    Setting("admin_users", _names, (),
            "roles that may use the admin console (connect to the virtual database mlproxy "
            "and log in as one of them, authenticated by the upstream), comma-separated",
            metavar="ROLE,...", on_change="reload", default_help="none: the console refuses "
            "every role", display=", ".join),
    Setting("admin_database", _text, "postgres",
            "upstream database that authenticates admin console logins", metavar="DB",
            on_change="reload"),
    Setting("metrics_listen", _listen, None,
            "serve Prometheus metrics at http://HOST:PORT/metrics", metavar="HOST:PORT",
            default_help="off"),
    Setting("demo", _bool, False,
            "load the demo table `customers` (see `mlproxy demo`) before serving"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Value:
    value: Any
    source: str  # "default", "file mlproxy.toml:3", "env MLPROXY_WORKERS", "flag --workers"


class Resolved(dict[str, Value]):
    """Every setting's value and where it came from."""

    def plain(self) -> dict[str, Any]:
        return {name: v.value for name, v in self.items()}

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(setting, value, source, reload|restart): for logs and a SHOW CONFIG."""
        return [(s.name, s.show(self[s.name].value), self[s.name].source, s.on_change)
                for s in SETTINGS]


# -- the command line ----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One flag per setting (or per setting in `only`), default None (so the
    environment or the file decides when the flag is absent), and --config; the
    --help text is built from the table."""
    parser.add_argument("--config", type=Path, metavar="FILE", default=None,
                        help=f"TOML file of settings, keyed as each says below "
                             f"(data_dir = \"/srv/mlproxy\"; env {ENV_PREFIX}CONFIG); flags and "
                             f"the environment override it")
    for s in SETTINGS:
        if only is not None and s.name not in only:
            continue
        default = s.default_help or s.show(s.default) or "none"
        extra = f" (default {default}; env {s.env}; file key {s.name}"
        extra += "; reloaded on SIGHUP)" if s.on_change == "reload" else ")"
        if s.parse is _bool:
            parser.add_argument(s.flag, dest=s.name, default=None,
                                action=argparse.BooleanOptionalAction, help=s.help + extra)
        elif s.repeat:
            parser.add_argument(s.flag, dest=s.name, default=None, metavar=s.metavar,
                                action="append", type=_flag_type(s), help=s.help + extra)
        else:
            parser.add_argument(s.flag, dest=s.name, default=None, metavar=s.metavar,
                                choices=s.choices, type=_flag_type(s), help=s.help + extra)


def _flag_type(setting: Setting) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return setting.convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = setting.name  # argparse names the type in its messages
    return convert


# -- the config file -------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def load_file(path: Path) -> dict[str, Value]:
    """The settings a TOML file gives, checked: ConfigError names the file, the
    line and the key of the first problem."""
    try:
        raw_text = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        text = raw_text.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw_text[:exc.start]
        line, column = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(f"{path}:{line}: cannot read config file: not UTF-8 (byte "
                          f"0x{raw_text[exc.start]:02x} at column {column})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        if where is None and "(at end of document)" in message:
            message = message.replace("(at end of document)", "").strip()
            raise ConfigError(f"{path}:{max(1, len(text.splitlines()))}: TOML syntax error: "
                              f"{message} (at end of file)") from None
        if where:
            message = _TOML_POSITION.sub("", message).strip()
            raise ConfigError(f"{path}:{where.group(1)}: TOML syntax error: {message} "
                              f"(column {where.group(2)})") from None
        raise ConfigError(f"{path}: TOML syntax error: {message}") from None
    found: dict[str, Value] = {}
    for key, raw in data.items():
        line = _key_line(text, key)
        where = f"{path}:{line}" if line else str(path)
        setting = BY_NAME.get(key)
        if setting is None:
            known = ", ".join(s.name for s in SETTINGS)
            hint = f" (did you mean {_closest(key)}?)" if _closest(key) else ""
            raise ConfigError(f"{where}: unknown setting {key!r}{hint}; known settings: {known}")
        if isinstance(raw, bool) and bool not in setting.toml_types or \
                not isinstance(raw, setting.toml_types):
            wanted = {_int: "an integer", _float: "a number", _bool: "a boolean"}.get(
                setting.parse, "a string")
            raise ConfigError(f"{where}: bad type for {key!r}: expected {wanted}, got "
                              f"{_toml_type(raw)} ({tomllib_repr(raw)})")
        try:
            value = setting.convert(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: bad value for {key!r}: {exc}") from None
        found[key] = Value(value, f"file {where}")
    return found


def tomllib_repr(value: Any) -> str:
    """A TOML value as it would be written (for messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _closest(key: str) -> str | None:
    import difflib
    match = difflib.get_close_matches(key.replace("-", "_").lower(), BY_NAME, n=1)
    return match[0] if match else None


def _key_line(text: str, key: str) -> int | None:
    """The 1-based line where top-level `key` is defined in the TOML `text`.

    The shortest prefix of the text that parses and defines the key ends where its
    value ends (so a multi-line value, or a string that merely contains `key =`, is
    no false match); the key itself is the last line up to there that starts with
    it (bare, quoted, dotted, or as a [table] header).
    """
    lines = text.splitlines()
    pattern = re.compile(
        r"^\s*(?:\[\[?\s*)?(?:%s|\"%s\"|'%s')\s*[=.\]]" % ((re.escape(key),) * 3))
    for end in range(1, len(lines) + 1):
        try:
            if key not in tomllib.loads("\n".join(lines[:end])):
                continue
        except tomllib.TOMLDecodeError:
            continue
        for number in range(end, 0, -1):
            if pattern.match(lines[number - 1]):
                return number
        return end
    return None


# -- resolution ------------------------------------------------------------------------------

def resolve(flags: Mapping[str, Any], environ: Mapping[str, str],
            config_file: Path | None) -> Resolved:
    """Every setting's value: flag > environment > file > default. `flags` holds the
    parsed flag values (None: not given). Raises ConfigError."""
    from_file = load_file(config_file) if config_file is not None else {}
    resolved = Resolved()
    for s in SETTINGS:
        if flags.get(s.name) is not None:
            value = s.convert(flags[s.name]) if s.repeat else flags[s.name]  # the flags' values together
            resolved[s.name] = Value(value, f"flag {s.flag}")
        elif environ.get(s.env, "") != "":
            try:
                resolved[s.name] = Value(s.convert(environ[s.env]), f"env {s.env}")
            except ValueError as exc:
                raise ConfigError(f"environment {s.env}: bad value for {s.name!r}: {exc}") from None
        elif s.name in from_file:
            resolved[s.name] = from_file[s.name]
        else:
            resolved[s.name] = Value(s.default, "default")
    check_together(resolved)
    return resolved


def check_together(resolved: Resolved) -> None:
    """Rules that involve more than one setting."""
    def where(name: str) -> str:
        return resolved[name].source
    if resolved["tls_key"].value and not resolved["tls_cert"].value:
        raise ConfigError(f"tls_key ({where('tls_key')}) needs tls_cert")
    if resolved["training_cluster_fallback"].value and not resolved["training_cluster"].value:
        raise ConfigError(f"training_cluster_fallback ({where('training_cluster_fallback')}) "
                          f"needs training_cluster")
    if resolved["tls_required"].value and not resolved["tls_cert"].value:
        raise ConfigError(f"tls_required ({where('tls_required')}) needs tls_cert "
                          f"(and tls_key, unless the certificate file holds the key)")


def config_path(flag: Path | None, environ: Mapping[str, str]) -> Path | None:
    if flag is not None:
        return flag
    env = environ.get(ENV_PREFIX + "CONFIG")
    return Path(env) if env else None


def check_file(path: Path) -> Resolved:
    """What `mlproxy check-config FILE` checks: the file's keys and values, and the
    rules between settings, with defaults for what the file leaves out."""
    return resolve({}, {}, path)
