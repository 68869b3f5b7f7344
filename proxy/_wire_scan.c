/* The relay's per-chunk fast path, in C: see proxy/wire_scan.py, which holds the
 * reference implementation in Python (used when this module is not built) and the
 * contract of both functions. Keep the two in step: tests/proxy/test_wire_scan.py
 * runs them side by side on random streams.
 *
 * Built as the top-level extension `_mlproxy_wire` (setup.py), so that a source
 * checkout imports it from site-packages next to the pure-Python package.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_wire_rules.h"

#define UNSYNCED_CLEARED 1
#define COPY_IN_CLEARED 2
#define SYNC_ENDS 4
#define REQUEST_SHIFT 3

/* Does `body[0:n]`, lower-cased, contain any of `triggers` (lower-case bytes)?
 * One pass over the body: a position is compared only where some trigger starts
 * with its (lower-cased) byte. */
static int triggered(const unsigned char *body, Py_ssize_t n, PyObject *triggers) {
    Py_ssize_t count = PyTuple_GET_SIZE(triggers);
    unsigned char starts[256];
    memset(starts, 0, sizeof starts);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *t = PyTuple_GET_ITEM(triggers, k);
        if (PyBytes_GET_SIZE(t) == 0) return 1;
        starts[(unsigned char)PyBytes_AS_STRING(t)[0]] = 1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = lower(body[i]);
        if (!starts[c]) continue;
        for (Py_ssize_t k = 0; k < count; k++) {
            PyObject *t = PyTuple_GET_ITEM(triggers, k);
            const unsigned char *needle = (const unsigned char *)PyBytes_AS_STRING(t);
            Py_ssize_t m = PyBytes_GET_SIZE(t);
            if (needle[0] != c || m > n - i) continue;
            Py_ssize_t j = 1;
            while (j < m && lower(body[i + j]) == needle[j]) j++;
            if (j == m) return 1;
        }
    }
    return 0;
}

/* Does the message name one of `names` (a tuple of bytes), or is it malformed
 * there? (wire_scan.names_message) */
static int names_hit(unsigned char type, const unsigned char *body, size_t n, PyObject *names) {
    size_t start[2], len[2];
    int count = message_names(type, body, n, start, len);
    if (count < 0) return 1;
    Py_ssize_t total = PyTuple_GET_SIZE(names);
    for (int k = 0; k < count; k++) {
        for (Py_ssize_t i = 0; i < total; i++) {
            PyObject *name = PyTuple_GET_ITEM(names, i);
            if ((size_t)PyBytes_GET_SIZE(name) == len[k]
                    && memcmp(PyBytes_AS_STRING(name), body + start[k], len[k]) == 0)
                return 1;
        }
    }
    return 0;
}

/* client_chunk(data, limits, triggers, copy_in, names=()) -> int | None */
static PyObject *client_chunk(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 4 || nargs > 5 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])
            || PyBytes_GET_SIZE(args[1]) != 256 * 4 || !PyTuple_Check(args[2])
            || (nargs == 5 && !PyTuple_Check(args[4]))) {
        PyErr_SetString(PyExc_TypeError,
                        "client_chunk(data: bytes, limits: bytes[1024], triggers: tuple, copy_in, "
                        "names: tuple = ())");
        return NULL;
    }
    PyObject *names = nargs == 5 && PyTuple_GET_SIZE(args[4]) ? args[4] : NULL;
    if (names) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(names); k++) {
            if (!PyBytes_Check(PyTuple_GET_ITEM(names, k))) {
                PyErr_SetString(PyExc_TypeError, "names must be bytes");
                return NULL;
            }
        }
    }
    Py_ssize_t ntrig = PyTuple_GET_SIZE(args[2]);
    for (Py_ssize_t k = 0; k < ntrig; k++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(args[2], k))) {
            PyErr_SetString(PyExc_TypeError, "triggers must be bytes");
            return NULL;
        }
    }
    int copy_in = PyObject_IsTrue(args[3]);
    if (copy_in < 0) return NULL;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *limits = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t pos = 0;
    ClientRules rules = {.copy_in = copy_in};
    if (n == 0) Py_RETURN_NONE;
    while (pos < n) {
        if (n - pos < 5) Py_RETURN_NONE;
        unsigned char type = data[pos];
        uint32_t length = read_len(data + pos + 1);
        uint32_t limit = read_len(limits + 4 * type);
        if (length < 4 || length > limit) Py_RETURN_NONE;
        Py_ssize_t end = pos + 1 + (Py_ssize_t)length;
        if (end > n) Py_RETURN_NONE;
        if (names && names_hit(type, data + pos + 5, (size_t)(end - pos - 5), names))
            Py_RETURN_NONE;
        if ((type == 'Q' || type == 'P') && triggered(data + pos + 5, end - pos - 5, args[2]))
            Py_RETURN_NONE;
        if (client_rule(&rules, type) < 0) Py_RETURN_NONE;  /* Terminate: the session's path */
        pos = end;
    }
    if (rules.extended_open) Py_RETURN_NONE;  /* their replies await a Sync: the framed path */
    if (rules.kinds == (REQUEST_QUERY | REQUEST_SYNC)) Py_RETURN_NONE;  /* their order: the framed path */
    return PyLong_FromLongLong((rules.requests << REQUEST_SHIFT)
                               | (rules.kinds == REQUEST_SYNC ? SYNC_ENDS : 0)
                               | (rules.synced ? UNSYNCED_CLEARED : 0)
                               | (rules.copy_ended ? COPY_IN_CLEARED : 0));
}

/* server_chunk(data) -> int | None */
static PyObject *server_chunk(PyObject *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "server_chunk(data: bytes)");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t n = PyBytes_GET_SIZE(arg);
    Py_ssize_t pos = 0;
    long ready = 0, ends_ready = 0;
    unsigned char status = 0;
    if (n == 0) Py_RETURN_NONE;
    while (pos < n) {
        if (n - pos < 5) Py_RETURN_NONE;
        unsigned char type = data[pos];
        uint32_t length = read_len(data + pos + 1);
        if (length < 4) Py_RETURN_NONE;
        if ((uint64_t)length + 1 > (uint64_t)(n - pos)) Py_RETURN_NONE;
        Py_ssize_t end = pos + 1 + (Py_ssize_t)length;
        ends_ready = type == 'Z';
        switch (type) {
        case 'Z':
            if (length != 5) Py_RETURN_NONE;
            ready++;
            status = data[pos + 5];
            break;
        case 'E': case 'G':
            Py_RETURN_NONE;  /* errors are logged, COPY IN is tracked: the framed path */
        default:
            break;
        }
        pos = end;
    }
    return PyLong_FromLong((ready << 9) | (ends_ready << 8) | status);
}

static PyMethodDef methods[] = {
    {"client_chunk", (PyCFunction)(void (*)(void))client_chunk, METH_FASTCALL,
     "client_chunk(data, limits, triggers, copy_in, names=()) -> int | None"},
    {"server_chunk", (PyCFunction)server_chunk, METH_O, "server_chunk(data) -> int | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mlproxy_wire",
    "C fast path of proxy.wire_scan (see there).", -1, methods,
};

PyMODINIT_FUNC PyInit__mlproxy_wire(void) { return PyModule_Create(&module); }
