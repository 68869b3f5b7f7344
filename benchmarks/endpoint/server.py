"""The benchmark's inference endpoint: SageMaker's format, as cheap as it gets.

POST /invocations, text/csv rows in, one value a line out (each row's sum), on
aiohttp in a process of its own: what the figures measure is mlproxy's part, not a
model's.

    python -m benchmarks.endpoint.server PORT
"""

from __future__ import annotations

import sys

from aiohttp import web


async def invocations(request: web.Request) -> web.Response:
    body = await request.read()
    out = []
    for line in body.split(b"\n"):
        if line:
            out.append(repr(sum(float(f) for f in line.split(b",") if f)))
    return web.Response(text="\n".join(out) + "\n", content_type="text/csv")


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/invocations", invocations)
    app.router.add_get("/ping", ping)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
