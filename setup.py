"""Only for the optional C extension; everything else is in pyproject.toml.

`_mlproxy_wire` is the relay's per-chunk fast path (proxy/_wire_scan.c, contract in
proxy/wire_scan.py). It is optional: without a working C compiler the install goes
on and the proxy uses the pure-Python implementation of the same functions.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("_mlproxy_wire", ["proxy/_wire_scan.c"], optional=True,
                             extra_compile_args=["-O2"])])
