"""Only for the optional C extensions; everything else is in pyproject.toml.

`_mlproxy_wire` is the relay's per-chunk fast path (proxy/_wire_scan.c, contract in
proxy/wire_scan.py); `_mlproxy_pump` relays pass-through sessions on a native thread
(proxy/_relay_pump.c, see proxy/pump.py). Both are optional: without a working C
compiler the install goes on and the proxy relays in Python, with the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("_mlproxy_wire", ["proxy/_wire_scan.c"], depends=["proxy/_wire_rules.h"],
              optional=True, extra_compile_args=["-O2"]),
    Extension("_mlproxy_pump", ["proxy/_relay_pump.c"], depends=["proxy/_wire_rules.h"],
              optional=True, extra_compile_args=["-O2"]),
])
