"""Only for the optional C extensions; everything else is in pyproject.toml.

`_mlproxy_wire` is the relay's per-chunk fast path (proxy/_wire_scan.c, contract in
proxy/wire_scan.py); `_mlproxy_pump` relays pass-through sessions on a native thread
(proxy/_relay_pump.c, see proxy/pump.py); `_mlproxy_rows` finds and parses runs of
DataRows for model calls, makes a model's feature matrix from them and splices the
predictions in (proxy/inference/_datarows.c, see rowscan.py, rows.py, features.py).
All are optional: without a working C compiler the install goes on and the proxy
does the same work in Python and numpy, with the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("_mlproxy_wire", ["proxy/_wire_scan.c"], depends=["proxy/_wire_rules.h"],
              optional=True, extra_compile_args=["-O2"]),
    Extension("_mlproxy_pump", ["proxy/_relay_pump.c"], depends=["proxy/_wire_rules.h"],
              optional=True, extra_compile_args=["-O2"]),
    Extension("_mlproxy_rows", ["proxy/inference/_datarows.c"], depends=["proxy/_wire_rules.h"],
              optional=True, extra_compile_args=["-O2"]),
])
