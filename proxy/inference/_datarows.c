/* DataRow runs found and parsed in C: the optional fast path of
 * proxy/inference/rowscan.py (scan) and rows.py (DataRowBatch parsing), which hold
 * the numpy implementations that define the results. Built as the top-level
 * extension `_mlproxy_rows` (setup.py). Both functions release the GIL: batches are
 * parsed on worker threads, side by side.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../_wire_rules.h"

/* scan(buf, start, end) -> (offsets: bytearray of native int64, stop: int)
 * The offsets of the consecutive complete DataRow messages from `start`, and where
 * the run stops (another message type, an incomplete message, or `end`). */
static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &start, &end)) return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t stop = end < view.len ? end : view.len;
    if (start < 0) start = 0;
    Py_ssize_t cap = 1024, count = 0, pos = start;
    int64_t *out = PyMem_RawMalloc((size_t)cap * sizeof *out);
    if (!out) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    while (pos + 5 <= stop && buf[pos] == 'D') {
        Py_ssize_t next = pos + 1 + (Py_ssize_t)read_len(buf + pos + 1);
        if (next > stop) break;
        if (count == cap) {
            int64_t *grown = PyMem_RawRealloc(out, (size_t)cap * 2 * sizeof *out);
            if (!grown) {
                failed = 1;
                break;
            }
            out = grown;
            cap *= 2;
        }
        out[count++] = pos;
        pos = next;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (failed) {
        PyMem_RawFree(out);
        return PyErr_NoMemory();
    }
    PyObject *offsets = PyByteArray_FromStringAndSize((const char *)out, count * (Py_ssize_t)sizeof *out);
    PyMem_RawFree(out);
    if (!offsets) return NULL;
    return Py_BuildValue("(Nn)", offsets, pos);
}

enum {
    PARSE_OK = 0,
    PARSE_PAST_END = 1,     /* a field runs past the end of the buffer */
    PARSE_NOT_DATAROW = 2,
    PARSE_COLUMN_COUNT = 3, /* rows of one batch with different column counts */
    PARSE_NEGATIVE = 4,     /* a field length below -1 */
    PARSE_UNFILLED = 5,     /* the fields do not fill the message */
    PARSE_OVERLAP = 6,      /* rows overlap or run past the buffer */
};

static int writable(PyObject *obj, Py_buffer *view, Py_ssize_t bytes, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len < bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, needs %zd", what, view->len, bytes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* parse(buf, starts, n_columns, field_pos, field_len, ends) -> error code (0: parsed)
 * starts: int64[n]; field_pos: int64[(n_columns + 1) * n], column-major like
 * DataRowBatch.field_pos; field_len: int32[n_columns * n]; ends: int64[n]. The error
 * codes are those of the first check the numpy parser would fail (rows.py). */
static PyObject *parse(PyObject *self, PyObject *args) {
    PyObject *starts_obj, *pos_obj, *len_obj, *ends_obj;
    Py_buffer view, sv, pv, lv, ev;
    Py_ssize_t ncols;
    if (!PyArg_ParseTuple(args, "y*OnOOO", &view, &starts_obj, &ncols, &pos_obj, &len_obj, &ends_obj))
        return NULL;
    if (PyObject_GetBuffer(starts_obj, &sv, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t n = sv.len / (Py_ssize_t)sizeof(int64_t);
    if (ncols < 0 || writable(pos_obj, &pv, (ncols + 1) * n * 8, "field_pos") < 0) {
        if (ncols < 0) PyErr_SetString(PyExc_ValueError, "n_columns < 0");
        PyBuffer_Release(&sv);
        PyBuffer_Release(&view);
        return NULL;
    }
    if (writable(len_obj, &lv, ncols * n * 4, "field_len") < 0) {
        PyBuffer_Release(&pv);
        PyBuffer_Release(&sv);
        PyBuffer_Release(&view);
        return NULL;
    }
    if (writable(ends_obj, &ev, n * 8, "ends") < 0) {
        PyBuffer_Release(&lv);
        PyBuffer_Release(&pv);
        PyBuffer_Release(&sv);
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *buf = view.buf;
    const int64_t len = view.len;
    const int64_t *starts = sv.buf;
    int64_t *field_pos = pv.buf, *ends = ev.buf;
    int32_t *field_len = lv.buf;
    int code = PARSE_OK;
    Py_BEGIN_ALLOW_THREADS
    /* the numpy parser's order: every row's type byte, then each header, ... */
    for (Py_ssize_t i = 0; i < n && !code; i++)
        if (starts[i] < 0 || starts[i] >= len) code = PARSE_PAST_END;
    for (Py_ssize_t i = 0; i < n && !code; i++)
        if (buf[starts[i]] != 'D') code = PARSE_NOT_DATAROW;
    for (Py_ssize_t i = 0; i < n && !code; i++)
        if (starts[i] + 6 >= len) code = PARSE_PAST_END;
    for (Py_ssize_t i = 0; i < n && !code; i++) {
        ends[i] = starts[i] + 1 + (int64_t)read_len(buf + starts[i] + 1);
        if (((Py_ssize_t)buf[starts[i] + 5] << 8 | buf[starts[i] + 6]) != ncols) code = PARSE_COLUMN_COUNT;
    }
    int negative = 0;
    for (Py_ssize_t i = 0; i < n && !code; i++) {
        int64_t at = starts[i] + 7;
        for (Py_ssize_t c = 0; c < ncols; c++) {
            field_pos[c * n + i] = at;
            if (at + 3 >= len) {
                code = PARSE_PAST_END;
                break;
            }
            int32_t word = (int32_t)read_len(buf + at);
            field_len[c * n + i] = word;
            if (word < -1) negative = 1;
            at += 4 + (word > 0 ? word : 0);
        }
        field_pos[ncols * n + i] = at;
    }
    if (!code && negative) code = PARSE_NEGATIVE;
    for (Py_ssize_t i = 0; i < n && !code; i++)
        if (field_pos[ncols * n + i] != ends[i]) code = PARSE_UNFILLED;
    for (Py_ssize_t i = 0; i < n && !code; i++)
        if (ends[i] > len || (i + 1 < n && ends[i] > starts[i + 1])) code = PARSE_OVERLAP;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ev);
    PyBuffer_Release(&lv);
    PyBuffer_Release(&pv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&view);
    return PyLong_FromLong(code);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "scan(buf, start, end) -> (offsets: bytearray of int64, stop)"},
    {"parse", parse, METH_VARARGS,
     "parse(buf, starts, n_columns, field_pos, field_len, ends) -> error code"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mlproxy_rows",
    "C fast path of proxy.inference.rowscan/rows (see there).", -1, methods,
};

PyMODINIT_FUNC PyInit__mlproxy_rows(void) { return PyModule_Create(&module); }
