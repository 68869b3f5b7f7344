"""Remote models: rows scored by an HTTP inference endpoint (CREATE MODEL ... SAGEMAKER).

A remote model's predictor speaks SageMaker's invocation format: POST /invocations
with `Content-Type: text/csv`, one row a line (NULL an empty field, text quoted as CSV
quotes it), and one value a line back. MLflow's scoring server answers JSON instead
(`{"predictions": [...]}`, or a bare list): read too, as is a single line of
comma-separated numbers (SageMaker's built-in XGBoost). A batch is cut into requests
of at most MAX_BATCH_ROWS rows (and about `PAYLOAD_LIMIT` bytes); the requests of a
batch go out at once over a small connection pool.

Which hosts: a client names an endpoint; the operator maps names to URLs
(`--endpoint name=url`). A URL given in the statement is used only if the operator
allows it (`--allow-endpoint-urls`), so a client cannot make the proxy call an
arbitrary host. Names are resolved at every call: a SIGHUP that changes the map
applies to the next statement.

Threads: the HTTP client lives on the event loop (aiohttp). A batch of more than a
few rows is evaluated where big batches are, on a worker thread (workers.py gives
remote models a pool of their own; the general path uses asyncio.to_thread): its
`predict` hands the requests to the loop and waits on its own thread. A few rows (a
one-row query) are evaluated on the loop itself (`call_on_loop`): `predict` there
asks for the predictions, which are awaited, and the evaluation runs again with
them. Neither the loop nor another session ever waits for an endpoint.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from ..errors import PgError
from .pgvalues import canonical_type

log = logging.getLogger("mlproxy.inference")

# SQLSTATEs of an endpoint's failures: it could not be reached (08001), the
# connection failed or timed out (08006), it answered with an error or with
# something that is not one value per row (38000, external routine exception), or a
# value that is not of the function's type (22P02, as a cast of that text would be).
UNREACHABLE, CONNECTION_FAILURE, EXTERNAL_ROUTINE = "08001", "08006", "38000"
INVALID_TEXT = "22P02"
UNDEFINED_ENDPOINT = "42704"
NOT_ALLOWED = "42501"

# SageMaker's limit on an invocation's payload is 6 MB: requests stay below it.
PAYLOAD_LIMIT = 5 << 20
# MAX_BATCH_ROWS when a model's SETTINGS leave it out (Redshift's default, INT_MAX:
# the payload limit decides).
DEFAULT_MAX_BATCH_ROWS = 2**31 - 1
# The longest error text of an endpoint quoted in a message.
_QUOTED = 300

_URL = re.compile(r"^(mlflow\+)?https?://", re.IGNORECASE)
# An MLflow scoring server reads text/csv with pandas.read_csv: the first line is
# the header. `mlflow+http://...` marks such an endpoint: each request starts with a
# header naming the columns as the model function's arguments (arg1, arg2, ...).
MLFLOW_PREFIX = "mlflow+"
_RETURN_TYPES = ("boolean", "smallint", "integer", "bigint", "real", "double precision", "numeric",
                 "text", "jsonb")


class EndpointError(Exception):
    """A failed call of an inference endpoint: the statement's error (tracker's
    statement_error reads sqlstate, message and hint)."""

    def __init__(self, sqlstate: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate, self.message, self.hint = sqlstate, message, hint


@dataclass
class EndpointSettings:
    urls: dict[str, str] = field(default_factory=dict)  # name -> base URL
    allow_urls: bool = False
    timeout: float = 30.0  # seconds, per request
    connections: int = 4  # concurrent requests of one statement (and per endpoint host)


def masked(url: str) -> str:
    """A URL as messages and SHOW MODEL show it: no user or password."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


def is_url(endpoint: str) -> bool:
    return bool(_URL.match(endpoint))


def return_type_of(declared: str) -> str:
    """The stub's return type for a declared RETURNS type: SUPER is jsonb; the rest
    must be a type the proxy encodes (22023 otherwise, at CREATE MODEL)."""
    if " ".join(declared.lower().split()) == "super":
        return "jsonb"
    try:
        family = canonical_type(declared)
    except ValueError:
        family = None
    if family not in _RETURN_TYPES:
        raise PgError("22023", f"a remote model cannot return {declared}",
                      hint="RETURNS one of BOOLEAN, SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, "
                           "NUMERIC, VARCHAR/TEXT, or SUPER (jsonb).")
    return declared


class Endpoints:
    """The operator's endpoints and the one HTTP client of the proxy."""

    def __init__(self, settings: EndpointSettings | None = None) -> None:
        self.settings = settings or EndpointSettings()
        self._import_client()
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def configure(self, settings: EndpointSettings) -> None:
        """New settings (SIGHUP): names resolve by the new map from the next call on;
        a new timeout or pool size takes a new client (requests in flight finish)."""
        old, self.settings = self.settings, settings
        self._import_client()
        if (old.timeout, old.connections) != (settings.timeout, settings.connections) \
                and self._session is not None:
            session, self._session = self._session, None
            asyncio.ensure_future(_close_later(session, old.timeout))

    def _import_client(self) -> None:
        """Import aiohttp now if endpoints may be called (at startup or reload): its
        import takes a few hundred ms, which the first call would spend on the loop."""
        if self.settings.urls or self.settings.allow_urls:
            import aiohttp  # noqa: F401

    def resolve(self, endpoint: str) -> tuple[str, bool]:
        """The URL to POST to for `endpoint` (a name, or a URL if allowed), and
        whether the CSV needs a header line (an MLflow server)."""
        if is_url(endpoint):
            if not self.settings.allow_urls:
                raise EndpointError(NOT_ALLOWED, f"inference endpoint URL {masked(endpoint)} is not allowed",
                                    hint="Name an endpoint the operator configured (mlproxy serve "
                                         "--endpoint name=url); URLs need --allow-endpoint-urls.")
            base = endpoint
        else:
            base = self.settings.urls.get(endpoint)
            if base is None:
                known = ", ".join(sorted(self.settings.urls)) or "none"
                raise EndpointError(UNDEFINED_ENDPOINT, f'inference endpoint "{endpoint}" is not configured',
                                    hint=f"The operator maps names to URLs with mlproxy serve --endpoint "
                                         f"name=url; configured: {known}.")
        header = base.lower().startswith(MLFLOW_PREFIX)
        base = base[len(MLFLOW_PREFIX):] if header else base
        base = base.rstrip("/")
        return (base if base.endswith("/invocations") else base + "/invocations"), header

    def bind_loop(self) -> None:
        """Remember the event loop the HTTP client runs on (called on it)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    async def _client(self) -> Any:
        if self._session is None:
            import aiohttp

            s = self.settings
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=max(4, 4 * s.connections), limit_per_host=s.connections),
                timeout=aiohttp.ClientTimeout(total=s.timeout), raise_for_status=False)
        return self._session

    async def post(self, label: str, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[bytes, str]:
        """POST one request: (body, content type) of a 200 answer, else EndpointError."""
        import aiohttp

        session = await self._client()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                data = await response.read()
                if response.status != 200:
                    text = _error_text(data)
                    raise EndpointError(EXTERNAL_ROUTINE,
                                        f'inference endpoint "{label}" answered HTTP {response.status}: {text}')
                return data, response.headers.get("Content-Type", "")
        except asyncio.TimeoutError:
            raise EndpointError(CONNECTION_FAILURE, f'inference endpoint "{label}" did not answer within '
                                f"{self.settings.timeout:g} s",
                                hint="The operator sets the limit with --endpoint-timeout.") from None
        # (the messages name the endpoint, never its URL: that is the operator's)
        except aiohttp.ClientConnectorError as exc:
            code = getattr(exc.os_error, "errno", None)
            reason = ("its host name does not resolve" if code is not None and code < 0  # (socket.gaierror)
                      else os.strerror(code) if code else type(exc.os_error or exc).__name__)
            raise EndpointError(UNREACHABLE, f'could not connect to inference endpoint "{label}": {reason}') from None
        except aiohttp.ClientError as exc:
            raise EndpointError(CONNECTION_FAILURE, f'inference endpoint "{label}" failed: {type(exc).__name__}') from None

    def run(self, coroutine: Any, rounds: int = 1) -> Any:
        """Run `coroutine` on the event loop and wait for it on this (worker) thread,
        at most `rounds` request timeouts (and a little): a loop that stopped meanwhile
        (shutdown) leaves no thread waiting forever."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            raise EndpointError(CONNECTION_FAILURE, "the proxy is shutting down")
        if threading.get_ident() == self._loop_thread:
            coroutine.close()  # waiting here would wait forever: a bug, said so
            raise RuntimeError("a remote model was evaluated on the event loop")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(self.settings.timeout * max(1, rounds) + 5.0)
        except TimeoutError:
            future.cancel()
            raise EndpointError(CONNECTION_FAILURE, "the inference endpoint's requests did not finish") from None

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _error_text(data: bytes) -> str:
    """What an endpoint said with its error status: the "message" of a JSON error
    (MLflow's, SageMaker's), else the start of the body."""
    text = data.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        text = doc["message"]
    return text[:_QUOTED] + ("..." if len(text) > _QUOTED else "")


async def _close_later(session: Any, after: float) -> None:
    await asyncio.sleep(after)
    await session.close()


# A few rows (a one-row query) are rewritten on the event loop, their endpoint's
# answer awaited there (`rewrite_on_loop`): handing them to a thread, which hands
# the requests back to the loop, costs four thread switches.
_prefetched: contextvars.ContextVar[list[np.ndarray] | None] = contextvars.ContextVar(
    "mlproxy_remote_prefetched", default=None)


class _NeedPredictions(Exception):
    """`rewrite_on_loop`'s signal: a remote model's predictions are not fetched yet."""

    def __init__(self, predictor: RemotePredictor, columns: Mapping[str, np.ndarray]) -> None:
        super().__init__("predictions needed")
        self.predictor, self.columns = predictor, columns


async def rewrite_on_loop(rewriter: Any, rows: bytes, count: int, starts: Any = None) -> bytes:
    """`rewriter.data_rows(...)` for a few rows on the event loop (call_on_loop)."""
    return await call_on_loop(lambda: rewriter.data_rows(rows, count, starts))


async def call_on_loop(work: Callable[[], Any]) -> Any:
    """`work()` (an evaluation of a few rows) on the event loop: each remote model's
    predictions are awaited, then the work runs again with them (it calls its models
    in the same order every time; a few rows are cheap to decode again)."""
    fetched: list[np.ndarray] = []
    while True:
        token = _prefetched.set(list(fetched))
        try:
            return work()
        except _NeedPredictions as need:
            fetched.append(await need.predictor.predict_async(need.columns))
        finally:
            _prefetched.reset(token)


class RemotePredictor:
    """The predictor of a remote model (the interface evaluate.predict calls)."""

    remote = True
    preprocessor = None  # no feature matrix: rows go out as CSV

    def __init__(self, endpoints: Endpoints, endpoint: str, target_model: str | None,
                 arg_names: Sequence[str], return_type: str, max_batch_rows: int | None) -> None:
        self.endpoints = endpoints
        self.endpoint = endpoint
        self.target_model = target_model
        self.arg_names = tuple(arg_names)
        self.return_type = return_type
        self.family = canonical_type(return_type)
        self.max_batch_rows = max(1, int(max_batch_rows or DEFAULT_MAX_BATCH_ROWS))
        self.label = masked(endpoint)
        self.info = {"endpoint": self.label, "max_batch_rows": self.max_batch_rows}

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        prefetched = _prefetched.get()
        if prefetched is not None:  # in rewrite_on_loop
            if prefetched:
                return prefetched.pop(0)
            raise _NeedPredictions(self, columns)
        requests, url = self._requests(columns)
        if not requests:
            return np.empty(0, dtype=object)
        rounds = -(-len(requests) // self.endpoints.settings.connections)
        return self._values(requests, self.endpoints.run(self._invoke(url, requests), rounds))

    async def predict_async(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """`predict` on the event loop (a few rows: the work besides the requests is small)."""
        requests, url = self._requests(columns)
        if not requests:
            return np.empty(0, dtype=object)
        return self._values(requests, await self._invoke(url, requests))

    def _requests(self, columns: Mapping[str, np.ndarray]) -> tuple[list[tuple[int, int, bytes]], str]:
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return [], ""
        url, header = self.endpoints.resolve(self.endpoint)
        requests = csv_requests([columns[name] for name in self.arg_names], n, self.max_batch_rows)
        if header:
            head = (",".join(self.arg_names) + "\n").encode()
            requests = [(start, stop, head + body) for start, stop, body in requests]
        return requests, url

    def _values(self, requests: list[tuple[int, int, bytes]], answers: list[tuple[bytes, str]]) -> np.ndarray:
        parts = [parse_response(body, content_type, stop - start, self.family, self.label)
                 for (start, stop, _), (body, content_type) in zip(requests, answers)]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    async def _invoke(self, url: str, requests: list[tuple[int, int, bytes]]) -> list[tuple[bytes, str]]:
        headers = {"Content-Type": "text/csv", "Accept": "text/csv, application/json"}
        if self.target_model:
            headers["X-Amzn-SageMaker-Target-Model"] = self.target_model
        limit = asyncio.Semaphore(self.endpoints.settings.connections)

        async def one(body: bytes) -> tuple[bytes, str]:
            async with limit:
                return await self.endpoints.post(self.label, url, body, headers)

        tasks = [asyncio.ensure_future(one(body)) for _, _, body in requests]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:  # the first failure is the statement's: the rest is not awaited
                task.cancel()


def csv_requests(columns: Sequence[np.ndarray], n: int, max_rows: int) -> list[tuple[int, int, bytes]]:
    """(first row, end row, CSV body) of each request for the argument columns: at
    most `max_rows` rows and about PAYLOAD_LIMIT bytes each. Written by Arrow's CSV
    writer (C++: strings quoted, NULL an empty field, floats in their shortest
    exact form, booleans 1/0, dates ISO 8601); Python's csv module for what Arrow
    cannot take."""
    if n <= _SMALL:  # Arrow's fixed cost (~0.4 ms) is most of a one-row query's
        return list(_requests(csv_lines(columns, n), max_rows))
    try:
        table = _arrow_table(columns, n)
    except (ValueError, TypeError, ArithmeticError):  # (pyarrow's errors derive from these)
        return list(_requests(csv_lines(columns, n), max_rows))
    out: list[tuple[int, int, bytes]] = []
    start = 0
    while start < n:
        stop = min(n, start + max_rows)
        body = _arrow_csv(table.slice(start, stop - start))
        while len(body) > PAYLOAD_LIMIT and stop - start > 1:  # fewer rows, until it fits
            stop = start + (stop - start) // 2
            body = _arrow_csv(table.slice(start, stop - start))
        out.append((start, stop, body))
        start = stop
    return out


def _arrow_table(columns: Sequence[np.ndarray], n: int) -> Any:
    import pyarrow as pa

    arrays = []
    for column in columns:
        kind = column.dtype.kind
        if kind == "b":
            column = column.astype(np.int8)
        elif kind == "O" and any(isinstance(v, bool) for v in column[:1].tolist()):
            column = np.array([None if v is None else int(v) for v in column.tolist()], dtype=object)
        arrays.append(pa.array(column, from_pandas=True))  # NaN, None, NaT: null
    if not arrays:
        return pa.table({"_": pa.nulls(n)}).drop(["_"])
    return pa.table({f"c{i}": a for i, a in enumerate(arrays)})


def _arrow_csv(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False))
    return sink.getvalue().to_pybytes()


# Up to this many rows, requests are written in Python, as Arrow writes them (floats
# may take an exponent where Arrow's do not, or the other way: both exact).
_SMALL = 256


def csv_lines(columns: Sequence[np.ndarray], n: int) -> list[bytes]:
    """One CSV line (with its newline) per row of the argument columns, as Arrow's
    writer makes them (see csv_requests)."""
    texts = [_column_texts(column) for column in columns]
    return [(",".join(row) + "\n").encode() for row in zip(*texts)] if texts else [b"\n"] * n


def _float_text(v: float) -> str:
    """repr as Arrow writes it: no ".0", no zeros leading an exponent (1e-07: 1e-7)."""
    text = repr(v)
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        sign = exponent[0] if exponent[0] in "+-" else ""
        return f"{mantissa[:-2] if mantissa.endswith('.0') else mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text[:-2] if text.endswith(".0") else text


def _quoted(v: Any) -> str:
    return '"' + str(v).replace('"', '""') + '"'


def _column_texts(column: np.ndarray) -> list[str]:
    """A column's fields: NULL (None, NaN, NaT) empty; booleans 1/0 (the endpoints'
    algorithms read numbers); floats in their shortest exact form; text quoted;
    timestamps as Arrow writes them."""
    kind = column.dtype.kind
    if kind == "f":
        return ["" if v != v else _float_text(v) for v in column.tolist()]
    if kind == "b":
        return ["1" if v else "0" for v in column.tolist()]
    if kind in "iu":
        return [str(v) for v in column.tolist()]
    if kind == "M":
        return ["" if np.isnat(v) else str(v.astype("datetime64[us]")).replace("T", " ") for v in column]
    out = []
    for v in column.tolist():
        if v is None or (isinstance(v, float) and v != v):
            out.append("")
        elif isinstance(v, bool):
            out.append("1" if v else "0")
        elif isinstance(v, int):
            out.append(str(v))
        elif isinstance(v, float):
            out.append(_float_text(v))
        else:
            out.append(_quoted(v))
    return out


def _requests(lines: list[bytes], max_rows: int):
    """(first row, end row, body) of each request: at most max_rows rows, and about
    PAYLOAD_LIMIT bytes (a single longer row still goes, alone)."""
    start, size = 0, 0
    for i, line in enumerate(lines):
        if i > start and (i - start >= max_rows or size + len(line) > PAYLOAD_LIMIT):
            yield start, i, b"".join(lines[start:i])
            start, size = i, 0
        size += len(line)
    if start < len(lines):
        yield start, len(lines), b"".join(lines[start:])


_NUMBERS = ("smallint", "integer", "bigint", "real", "double precision", "numeric")


def parse_response(body: bytes, content_type: str, n: int, family: str, label: str) -> np.ndarray:
    """The `n` values of one answer for `family`, as `to_array` makes them."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise EndpointError(EXTERNAL_ROUTINE, f'inference endpoint "{label}" answered with bytes that are not UTF-8')
    items = _json_items(text, content_type, n, label)
    if items is None:
        items = _line_items(text, n, family)
    if len(items) != n:
        raise EndpointError(EXTERNAL_ROUTINE,
                            f'inference endpoint "{label}" returned {len(items)} values for {n} rows',
                            hint="An endpoint answers one value per line, one line per row it was sent.")
    if family in _NUMBERS and n > 8:
        fast = _numbers(items)
        if fast is not None:
            return fast
    return to_array([_convert(item, family, label) for item in items], family)


def _numbers(items: list[Any]) -> np.ndarray | None:
    """Numbers parsed by numpy in one call (None: something that needs a closer look,
    a NULL or a value that is not a number, which `_convert` reports)."""
    try:
        if isinstance(items[0], _Json):
            values = [item.value for item in items]
            if not all(type(v) in (int, Decimal) for v in values):
                return None
            return np.array([float(v) for v in values], dtype=np.float64)
        return np.array(items, dtype=np.float64)  # strings: strtod, as float()
    except (ValueError, TypeError):
        return None


class _Json:
    """A value of a JSON answer (not text to parse)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _json_items(text: str, content_type: str, n: int, label: str) -> list[Any] | None:
    """The values of an answer that is one JSON document (MLflow's {"predictions":
    [...]}, a list of values), or None if it is not one."""
    stripped = text.strip()
    strict = content_type.split(";")[0].strip().lower() == "application/json"
    if not (strict or stripped[:1] in ("{", "[")):
        return None
    try:
        doc = json.loads(stripped, parse_float=Decimal)
    except ValueError:
        if strict:
            raise EndpointError(EXTERNAL_ROUTINE, f'inference endpoint "{label}" answered invalid JSON') from None
        return None  # lines of JSON documents (RETURNS SUPER; application/jsonlines)
    if isinstance(doc, dict) and "predictions" in doc:
        doc = doc["predictions"]
        if isinstance(doc, dict):  # MLflow's columns form: one column, or the first
            doc = next(iter(doc.values()), [])
    if isinstance(doc, list) and (len(doc) == n or n != 1):
        return [_Json(v) for v in doc]
    return [_Json(doc)]


def _line_items(text: str, n: int, family: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if len(lines) == 1 and n > 1 and family not in ("text", "jsonb") and "," in lines[0]:
        lines = lines[0].split(",")  # SageMaker XGBoost's single line of values
    return lines


def _convert(item: Any, family: str, label: str) -> Any:
    if isinstance(item, _Json):
        value = item.value
        if family == "jsonb":
            return jsonb_text(value)
        if value is None:
            return None
        if isinstance(value, list) and len(value) == 1:  # [[0.3], [0.7]]: a column
            value = value[0]
        if isinstance(value, (dict, list)):
            raise EndpointError(EXTERNAL_ROUTINE,
                                f'inference endpoint "{label}" returned {json.dumps(value, default=str)[:80]}, '
                                f"not a single {family} value", hint="RETURNS SUPER takes a JSON value per row.")
        if isinstance(value, bool):
            value = "true" if value else "false"
        item = str(value)
    if item == "":
        return None
    if family == "text":
        return item
    if family == "jsonb":
        try:
            return jsonb_text(json.loads(item, parse_float=Decimal))
        except ValueError:
            return jsonb_text(item)  # a bare word is a JSON string
    if family == "boolean":
        word = item.strip().lower()
        if word in ("t", "true", "1", "1.0", "yes", "y", "on"):
            return True
        if word in ("f", "false", "0", "0.0", "no", "n", "off"):
            return False
        raise _invalid(item, "boolean", label)
    try:
        return float(item)
    except ValueError:
        raise _invalid(item, family, label) from None


def _invalid(item: str, family: str, label: str) -> EndpointError:
    return EndpointError(INVALID_TEXT, f'invalid input syntax for type {family}: "{item[:80]}"',
                         hint=f'returned by inference endpoint "{label}"')


def to_array(values: list[Any], family: str) -> np.ndarray:
    """Values as encode_values takes them (NULL: NaN for numbers, None otherwise)."""
    if family in ("smallint", "integer", "bigint", "real", "double precision", "numeric"):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def jsonb_text(value: Any) -> str:
    """A JSON value as Postgres prints it as jsonb: keys in jsonb's order (shorter
    first, then bytewise), ", " and ": " between items, numbers as numeric prints
    them (1E+3 is 1000)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return _numeric_text(value)
    if isinstance(value, (int, float)):
        return _numeric_text(Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(json.dumps(k, ensure_ascii=False) + ": " + jsonb_text(value[k]) for k in keys) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _numeric_text(value: Decimal) -> str:
    try:
        if not value.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        return json.dumps(str(value))
    text = format(value, "f")
    return text[1:] if value == 0 and text.startswith("-") else text  # numeric has no -0
