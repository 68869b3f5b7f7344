/* DataRow batches in C: the optional fast path of proxy/inference/rowscan.py (scan),
 * rows.py (DataRowBatch parsing and splice), whose numpy/Arrow implementations
 * define the results, and features.py (a model's feature matrix straight from the
 * rows, defined by compiler.preprocess.Preprocessor.transform). Built as the
 * top-level extension `_mlproxy_rows` (setup.py). Every function releases the GIL
 * for its loop: batches are rewritten on worker threads, side by side.
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

/* A C-contiguous view of at least `bytes` bytes (`flags`: PyBUF_WRITABLE or 0). */
static int view_of(PyObject *obj, Py_buffer *view, Py_ssize_t bytes, const char *what, int flags) {
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len < bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, needs %zd", what, view->len, bytes);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int writable(PyObject *obj, Py_buffer *view, Py_ssize_t bytes, const char *what) {
    return view_of(obj, view, bytes, what, PyBUF_WRITABLE);
}

static int readable(PyObject *obj, Py_buffer *view, Py_ssize_t bytes, const char *what) {
    return view_of(obj, view, bytes, what, 0);
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

static void release_all(Py_buffer *views, int count) {
    for (int i = 0; i < count; i++) PyBuffer_Release(&views[i]);
}

static inline double read_f8(const unsigned char *p) {
    uint64_t bits = (uint64_t)read_len(p) << 32 | read_len(p + 4);
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* numeric(buf, field_pos, field_len, n, X, sources, widths, targets, fill, center,
 *         scale, scaled) -> -1, or the position in `sources` of a column whose
 * non-NULL field is not `width` bytes.
 * For each k: X[:, targets[k]] (X float64, feature-major, n rows) gets column
 * sources[k] of the DataRows, binary float8 (width 8) or int4 (width 4); NULL and
 * NaN become fill[k], and then, if `scaled`, (v - center[k]) / scale[k]: the
 * operations of compiler.preprocess.Preprocessor.transform, in the same order. */
static PyObject *numeric(PyObject *self, PyObject *args) {
    PyObject *objs[10];
    Py_ssize_t n;
    int scaled;
    if (!PyArg_ParseTuple(args, "OOOnOOOOOOOp", &objs[0], &objs[1], &objs[2], &n, &objs[3], &objs[4],
                          &objs[5], &objs[6], &objs[7], &objs[8], &objs[9], &scaled))
        return NULL;
    Py_buffer v[10];
    int got = 0;
    if (readable(objs[0], &v[got], 0, "buf") < 0) return NULL;
    got++;
    if (readable(objs[4], &v[got], 0, "sources") < 0) goto fail;
    got++;
    Py_ssize_t k = v[1].len / 8;
    const char *names[] = {"field_pos", "field_len", "X", "widths", "targets", "fill", "center", "scale"};
    PyObject *rest[] = {objs[1], objs[2], objs[3], objs[5], objs[6], objs[7], objs[8], objs[9]};
    for (int i = 0; i < 8; i++, got++) {
        Py_ssize_t need = i >= 3 ? k * 8 : 0; /* widths .. scale: one word per feature */
        int rc = i == 2 ? writable(rest[i], &v[got], 0, names[i]) : readable(rest[i], &v[got], need, names[i]);
        if (rc < 0) goto fail;
    }
    /* v: 0 buf, 1 sources, 2 field_pos, 3 field_len, 4 X, 5 widths, 6 targets, 7 fill, 8 center, 9 scale */
    const int64_t *sources = v[1].buf, *widths = v[5].buf, *targets = v[6].buf;
    Py_ssize_t ncols = n ? v[3].len / 4 / n : 0, nfeat = n ? v[4].len / 8 / n : 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        if (sources[j] < 0 || sources[j] >= ncols || targets[j] < 0 || targets[j] >= nfeat ||
            (widths[j] != 4 && widths[j] != 8)) {
            PyErr_SetString(PyExc_ValueError, "numeric: a source, target or width is out of range");
            goto fail;
        }
    }
    if (n && (v[2].len / 8 < (ncols + 1) * n)) {
        PyErr_SetString(PyExc_ValueError, "numeric: field_pos is too short");
        goto fail;
    }
    const unsigned char *buf = v[0].buf;
    const int64_t *field_pos = v[2].buf;
    const int32_t *field_len = v[3].buf;
    double *X = v[4].buf;
    const double *fill = v[7].buf, *center = v[8].buf, *scale = v[9].buf;
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < k && bad < 0; j++) {
        const int64_t *pos = field_pos + sources[j] * n;
        const int32_t *len = field_len + sources[j] * n;
        double *out = X + targets[j] * n;
        const int32_t width = (int32_t)widths[j];
        const double f = fill[j], c = center[j], s = scale[j];
        for (Py_ssize_t i = 0; i < n; i++) {
            double value;
            if (len[i] < 0) {
                value = f;
            } else if (len[i] != width) {
                bad = j;
                break;
            } else {
                const unsigned char *p = buf + pos[i] + 4;
                value = width == 8 ? read_f8(p) : (double)(int32_t)read_len(p);
                if (value != value) value = f;
            }
            out[i] = scaled ? (value - c) / s : value;
        }
    }
    Py_END_ALLOW_THREADS
    release_all(v, got);
    return PyLong_FromSsize_t(bad);
fail:
    release_all(v, got);
    return NULL;
}

/* keys(buf, field_pos, field_len, n, column, keys, bounds, X, targets, values)
 * For every row, the position k among `keys` (their bytes concatenated, in
 * ascending byte order; key k is keys[bounds[k]:bounds[k + 1]]) of column `column`'s
 * field, or m = len(bounds) - 1 for NULL and for a value that is none of them; then
 * for each j, X[:, targets[j]] (X float64, feature-major, n rows) gets
 * values[j * (m + 1) + k]: every feature made from one text argument, one lookup. */
static PyObject *keys(PyObject *self, PyObject *args) {
    PyObject *objs[8];
    Py_ssize_t n, column;
    if (!PyArg_ParseTuple(args, "OOOnnOOOOO", &objs[0], &objs[1], &objs[2], &n, &column, &objs[3], &objs[4],
                          &objs[5], &objs[6], &objs[7]))
        return NULL;
    Py_buffer v[8];
    int got = 0;
    const char *names[] = {"buf", "field_pos", "field_len", "keys", "bounds", "X", "targets", "values"};
    for (; got < 8; got++) {
        int rc = got == 5 ? writable(objs[got], &v[got], 0, names[got]) : readable(objs[got], &v[got], 0, names[got]);
        if (rc < 0) goto fail;
    }
    Py_ssize_t ncols = n ? v[2].len / 4 / n : 0, nfeat = n ? v[5].len / 8 / n : 0;
    Py_ssize_t m = v[4].len / 8 - 1, k = v[6].len / 8;
    const int64_t *bounds = v[4].buf, *targets = v[6].buf;
    if (m < 0 || v[7].len / 8 < k * (m + 1)) {
        PyErr_SetString(PyExc_ValueError, "keys: bounds or values too short");
        goto fail;
    }
    if (n && (column < 0 || column >= ncols || v[1].len / 8 < (ncols + 1) * n)) {
        PyErr_SetString(PyExc_ValueError, "keys: column out of range");
        goto fail;
    }
    for (Py_ssize_t j = 0; j <= m; j++) {
        if (bounds[j] < 0 || bounds[j] > v[3].len || (j && bounds[j] < bounds[j - 1])) {
            PyErr_SetString(PyExc_ValueError, "keys: bounds out of order");
            goto fail;
        }
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        if (targets[j] < 0 || targets[j] >= nfeat) {
            PyErr_SetString(PyExc_ValueError, "keys: target column out of range");
            goto fail;
        }
    }
    const unsigned char *buf = v[0].buf, *blob = v[3].buf;
    const int64_t *pos = (const int64_t *)v[1].buf + column * n;
    const int32_t *len = (const int32_t *)v[2].buf + column * n;
    double *X = v[5].buf;
    const double *values = v[7].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t code = m;
        if (len[i] >= 0) {
            const unsigned char *value = buf + pos[i] + 4;
            size_t size = (size_t)len[i];
            Py_ssize_t lo = 0, hi = m; /* binary search in [lo, hi) */
            while (lo < hi) {
                Py_ssize_t mid = lo + (hi - lo) / 2;
                size_t key_size = (size_t)(bounds[mid + 1] - bounds[mid]);
                int cmp = memcmp(value, blob + bounds[mid], size < key_size ? size : key_size);
                if (!cmp) cmp = size < key_size ? -1 : size > key_size;
                if (!cmp) {
                    code = mid;
                    break;
                }
                if (cmp < 0) hi = mid;
                else lo = mid + 1;
            }
        }
        for (Py_ssize_t j = 0; j < k; j++) X[targets[j] * n + i] = values[j * (m + 1) + code];
    }
    Py_END_ALLOW_THREADS
    release_all(v, got);
    Py_RETURN_NONE;
fail:
    release_all(v, got);
    return NULL;
}

/* splice(buf, field_pos, n, keep, columns, lengths, payloads) -> bytes
 * DataRowBatch.splice in one pass: each row's first `keep` columns, where
 * columns[j] (ascending, each < keep) gets lengths[j] (int32[n], -1 for NULL) and
 * the next bytes of payloads[j]; message lengths and column counts rewritten. */
static PyObject *splice(PyObject *self, PyObject *args) {
    PyObject *buf_obj, *pos_obj, *cols_obj, *lens_obj, *payload_obj;
    Py_ssize_t n, keep;
    if (!PyArg_ParseTuple(args, "OOnnOOO", &buf_obj, &pos_obj, &n, &keep, &cols_obj, &lens_obj, &payload_obj))
        return NULL;
    if (!PyTuple_Check(lens_obj) || !PyTuple_Check(payload_obj)) {
        PyErr_SetString(PyExc_TypeError, "splice: lengths and payloads must be tuples");
        return NULL;
    }
    enum { FIXED = 3, MAX_PLACEHOLDERS = 64 };
    Py_buffer v[FIXED + 2 * MAX_PLACEHOLDERS];
    int got = 0;
    if (readable(buf_obj, &v[got], 0, "buf") < 0) return NULL;
    got++;
    if (readable(pos_obj, &v[got], 0, "field_pos") < 0) goto fail;
    got++;
    if (readable(cols_obj, &v[got], 0, "columns") < 0) goto fail;
    got++;
    Py_ssize_t k = v[2].len / 8;
    if (k > MAX_PLACEHOLDERS || PyTuple_GET_SIZE(lens_obj) != k || PyTuple_GET_SIZE(payload_obj) != k) {
        PyErr_SetString(PyExc_ValueError, "splice: one length array and one payload per column (at most 64)");
        goto fail;
    }
    for (Py_ssize_t j = 0; j < k; j++, got++)
        if (readable(PyTuple_GET_ITEM(lens_obj, j), &v[got], n * 4, "lengths") < 0) goto fail;
    for (Py_ssize_t j = 0; j < k; j++, got++)
        if (readable(PyTuple_GET_ITEM(payload_obj, j), &v[got], 0, "payload") < 0) goto fail;
    const unsigned char *buf = v[0].buf;
    const int64_t *field_pos = v[1].buf, *cols = v[2].buf;
    if (n && (keep < 0 || (v[1].len / 8) < (keep + 1) * n)) {
        PyErr_SetString(PyExc_ValueError, "splice: keep is out of range");
        goto fail;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        if (cols[j] < 0 || cols[j] >= keep || (j && cols[j] <= cols[j - 1])) {
            PyErr_SetString(PyExc_ValueError, "splice: placeholder columns must be ascending and kept");
            goto fail;
        }
    }
    /* output size, and each payload must be used up exactly */
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < n; i++) size += 7 + (field_pos[keep * n + i] - field_pos[i]);
    for (Py_ssize_t j = 0; j < k; j++) {
        const int32_t *lens = v[FIXED + j].buf;
        const int64_t *pos = field_pos + cols[j] * n, *next = pos + n;
        Py_ssize_t used = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            used += lens[i] > 0 ? lens[i] : 0;
            size += 4 + (lens[i] > 0 ? lens[i] : 0) - (next[i] - pos[i]);
        }
        if (used != v[FIXED + k + j].len) {
            PyErr_Format(PyExc_ValueError, "placeholder %zd: lengths do not match the rows or payload", (Py_ssize_t)cols[j]);
            goto fail;
        }
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (!result) goto fail;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *payload_at[MAX_PLACEHOLDERS];
    for (Py_ssize_t j = 0; j < k; j++) payload_at[j] = v[FIXED + k + j].buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char *row = out;
        out += 7;
        int64_t from = field_pos[i];
        for (Py_ssize_t j = 0; j < k; j++) {
            int64_t cut = field_pos[cols[j] * n + i];
            memcpy(out, buf + from, (size_t)(cut - from));
            out += cut - from;
            int32_t length = ((const int32_t *)v[FIXED + j].buf)[i];
            out[0] = (unsigned char)((uint32_t)length >> 24);
            out[1] = (unsigned char)((uint32_t)length >> 16);
            out[2] = (unsigned char)((uint32_t)length >> 8);
            out[3] = (unsigned char)length;
            out += 4;
            if (length > 0) {
                memcpy(out, payload_at[j], (size_t)length);
                payload_at[j] += length;
                out += length;
            }
            from = field_pos[(cols[j] + 1) * n + i];
        }
        int64_t end = field_pos[keep * n + i];
        memcpy(out, buf + from, (size_t)(end - from));
        out += end - from;
        uint32_t message = (uint32_t)(out - row - 1);
        row[0] = 'D';
        row[1] = (unsigned char)(message >> 24);
        row[2] = (unsigned char)(message >> 16);
        row[3] = (unsigned char)(message >> 8);
        row[4] = (unsigned char)message;
        row[5] = (unsigned char)(keep >> 8);
        row[6] = (unsigned char)keep;
    }
    Py_END_ALLOW_THREADS
    release_all(v, got);
    return result;
fail:
    release_all(v, got);
    return NULL;
}

static PyMethodDef methods[] = {
    {"numeric", numeric, METH_VARARGS,
     "numeric(buf, field_pos, field_len, n, X, sources, widths, targets, fill, center, scale, scaled)"
     " -> -1 or the position of a bad column"},
    {"keys", keys, METH_VARARGS,
     "keys(buf, field_pos, field_len, n, column, keys, bounds, X, targets, values) -> None"},
    {"splice", splice, METH_VARARGS,
     "splice(buf, field_pos, n, keep, columns, lengths, payloads) -> bytes"},
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
