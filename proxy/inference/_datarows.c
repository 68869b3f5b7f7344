/* DataRow batches in C: the optional fast path of proxy/inference/rowscan.py (scan),
 * rows.py (DataRowBatch parsing and splice), whose numpy/Arrow implementations
 * define the results, and features.py (a model's feature matrix straight from the
 * rows, defined by compiler.preprocess.Preprocessor.transform). Built as the
 * top-level extension `_mlproxy_rows` (setup.py). Every function releases the GIL
 * for its loop: batches are rewritten on worker threads, side by side.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
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
    PARSE_FEW_COLUMNS = 7,  /* (walk_rows) a row without the columns asked for */
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

/* walk_rows(buf, len, n, upto, pos, lens) -> 0 or a PARSE_ code
 * The parse of the `n` DataRows that fill buf[0:len] exactly, one after another
 * (what a small batch is), for their first `upto` columns: pos[c * n + i] is the
 * position of row i's column c length word (c <= upto: pos[upto * n + i] is where
 * column `upto` starts, the row's end if it has no more), lens[c * n + i] that word
 * (lens may be NULL). Every field of every row is checked, as parse checks them. */
static int walk_rows(const unsigned char *buf, int64_t len, Py_ssize_t n, Py_ssize_t upto, int64_t *pos,
                     int32_t *lens) {
    int64_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (at + 7 > len) return PARSE_PAST_END;
        if (buf[at] != 'D') return PARSE_NOT_DATAROW;
        int64_t end = at + 1 + (int64_t)read_len(buf + at + 1);
        Py_ssize_t ncols = (Py_ssize_t)buf[at + 5] << 8 | buf[at + 6];
        if (ncols < upto) return PARSE_FEW_COLUMNS;
        int64_t field = at + 7;
        for (Py_ssize_t c = 0; c < ncols; c++) {
            if (c <= upto) pos[c * n + i] = field;
            if (field + 4 > len) return PARSE_PAST_END;
            int32_t word = (int32_t)read_len(buf + field);
            if (word < -1) return PARSE_NEGATIVE;
            if (lens && c < upto) lens[c * n + i] = word;
            field += 4 + (word > 0 ? word : 0);
        }
        if (ncols == upto) pos[upto * n + i] = field;
        if (field != end) return PARSE_UNFILLED;
        if (end > len) return PARSE_OVERLAP;
        at = end;
    }
    return at == len ? PARSE_OK : PARSE_UNFILLED;
}

/* One argument's categories, as MatrixPlan keeps them (see fill_all): a text
 * argument's fields are looked up as they are; a number's (width 8: a binary float8
 * field) by its text as Python prints the float, which for the integral values below
 * 1e16 that integer codes hold is "%.0f" plus ".0" (features.py keeps a table of
 * any other categories off this route, so a value outside that band is no category). */
typedef struct {
    Py_ssize_t column, m, k; /* DataRow column; categories; features set from it */
    int width;               /* 0: text; 8: float8, looked up by its text */
    unsigned char *blob;     /* the categories' bytes, concatenated in ascending byte order */
    int64_t *bounds;         /* m + 1: category j is blob[bounds[j]:bounds[j + 1]] */
    int64_t *targets;        /* k matrix columns */
    double *values;          /* k * (m + 1): feature j's value per category, the default last */
} KeyTable;

/* MatrixPlan(n_features, sources, widths, targets, fill, center, scale, scaled, tables)
 * How to fill a model's feature matrix from DataRows (features.FeaturePlan), checked
 * and copied once per statement. Numeric feature j: X[:, targets[j]] gets column
 * sources[j], binary float8 (width 8) or int4 (width 4), NULL and NaN as fill[j], then
 * if `scaled` (v - center[j]) / scale[j]: Preprocessor.transform's operations in its
 * order. tables: (column, categories, bounds, targets, values) per text argument: its
 * field is looked up among the categories (NULL and the unseen are the default) and
 * sets every feature made from it. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t n_features, n_numeric, n_tables;
    Py_ssize_t n_columns; /* the columns read are all below this */
    int scaled;
    int64_t *sources, *widths, *targets;
    double *fill, *center, *scale;
    KeyTable *tables;
} MatrixPlan;

/* A copy of obj's buffer of *count items of `item` bytes; *count < 0: of all the
 * items it holds, and *count is set to how many. */
static void *copy_words(PyObject *obj, Py_ssize_t *count_io, Py_ssize_t item, const char *what) {
    Py_buffer view;
    if (readable(obj, &view, 0, what) < 0) return NULL;
    if (*count_io < 0) *count_io = view.len / item;
    Py_ssize_t count = *count_io;
    if (view.len != count * item) {
        PyErr_Format(PyExc_ValueError, "MatrixPlan: %s has %zd bytes, expected %zd", what, view.len, count * item);
        PyBuffer_Release(&view);
        return NULL;
    }
    void *copy = PyMem_Malloc(count * item > 0 ? (size_t)(count * item) : 1);
    if (copy) memcpy(copy, view.buf, (size_t)(count * item));
    else PyErr_NoMemory();
    PyBuffer_Release(&view);
    return copy;
}

static void plan_dealloc(MatrixPlan *self) {
    PyMem_Free(self->sources);
    PyMem_Free(self->widths);
    PyMem_Free(self->targets);
    PyMem_Free(self->fill);
    PyMem_Free(self->center);
    PyMem_Free(self->scale);
    for (Py_ssize_t t = 0; self->tables && t < self->n_tables; t++) {
        KeyTable *table = &self->tables[t];
        PyMem_Free(table->blob);
        PyMem_Free(table->bounds);
        PyMem_Free(table->targets);
        PyMem_Free(table->values);
    }
    PyMem_Free(self->tables);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int plan_init(MatrixPlan *self, PyObject *args, PyObject *kwds) {
    PyObject *objs[6], *tables;
    Py_ssize_t n_features;
    int scaled;
    if (self->sources) {
        PyErr_SetString(PyExc_TypeError, "MatrixPlan is made once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "nOOOOOOpO!", &n_features, &objs[0], &objs[1], &objs[2], &objs[3], &objs[4],
                          &objs[5], &scaled, &PyTuple_Type, &tables))
        return -1;
    if (n_features < 0) {
        PyErr_SetString(PyExc_ValueError, "MatrixPlan: n_features < 0");
        return -1;
    }
    self->n_features = n_features;
    self->scaled = scaled;
    Py_ssize_t k = -1;
    if (!(self->sources = copy_words(objs[0], &k, 8, "sources"))) return -1;
    self->n_numeric = k;
    if (!(self->widths = copy_words(objs[1], &k, 8, "widths")) || !(self->targets = copy_words(objs[2], &k, 8, "targets")) ||
        !(self->fill = copy_words(objs[3], &k, 8, "fill")) || !(self->center = copy_words(objs[4], &k, 8, "center")) ||
        !(self->scale = copy_words(objs[5], &k, 8, "scale")))
        return -1;
    Py_ssize_t n_columns = 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        if (self->sources[j] < 0 || self->sources[j] > 0xFFFF || self->targets[j] < 0 ||
            self->targets[j] >= n_features || (self->widths[j] != 4 && self->widths[j] != 8)) {
            PyErr_SetString(PyExc_ValueError, "MatrixPlan: a source, target or width is out of range");
            return -1;
        }
        if (self->sources[j] >= n_columns) n_columns = self->sources[j] + 1;
    }
    Py_ssize_t n_tables = PyTuple_GET_SIZE(tables);
    self->tables = PyMem_Calloc(n_tables ? (size_t)n_tables : 1, sizeof(KeyTable));
    if (!self->tables) {
        PyErr_NoMemory();
        return -1;
    }
    self->n_tables = n_tables;
    for (Py_ssize_t t = 0; t < n_tables; t++) {
        KeyTable *table = &self->tables[t];
        PyObject *blob, *bounds, *targets, *values;
        table->width = 0;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(tables, t),
                              "nOOOO|i;a key table is (column, keys, bounds, targets, values[, width])",
                              &table->column, &blob, &bounds, &targets, &values, &table->width))
            return -1;
        if (table->width != 0 && table->width != 8) {
            PyErr_SetString(PyExc_ValueError, "MatrixPlan: a key table's width is 0 (text) or 8 (float8)");
            return -1;
        }
        Py_ssize_t blob_len = -1, n_bounds = -1, n_values;
        table->k = -1;
        if (!(table->blob = copy_words(blob, &blob_len, 1, "keys")) ||
            !(table->bounds = copy_words(bounds, &n_bounds, 8, "bounds")) ||
            !(table->targets = copy_words(targets, &table->k, 8, "targets")))
            return -1;
        if (n_bounds < 1) {
            PyErr_SetString(PyExc_ValueError, "MatrixPlan: bounds needs at least one word");
            return -1;
        }
        table->m = n_bounds - 1;
        n_values = table->k * n_bounds;
        if (!(table->values = copy_words(values, &n_values, 8, "values"))) return -1;
        for (Py_ssize_t j = 0; j <= table->m; j++) {
            if (table->bounds[j] < 0 || table->bounds[j] > blob_len || (j && table->bounds[j] < table->bounds[j - 1])) {
                PyErr_SetString(PyExc_ValueError, "MatrixPlan: key bounds out of order");
                return -1;
            }
        }
        for (Py_ssize_t j = 0; j < table->k; j++) {
            if (table->targets[j] < 0 || table->targets[j] >= n_features) {
                PyErr_SetString(PyExc_ValueError, "MatrixPlan: a key's target column is out of range");
                return -1;
            }
        }
        if (table->column < 0 || table->column > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "MatrixPlan: a key column is out of range");
            return -1;
        }
        if (table->column >= n_columns) n_columns = table->column + 1;
    }
    self->n_columns = n_columns;
    return 0;
}

/* The position among the table's categories of a field (`size` bytes at `value`;
 * size < 0: NULL), or m, the default's, for NULL and for no category. */
static inline Py_ssize_t key_code(const KeyTable *table, const unsigned char *value, int32_t size) {
    if (size < 0) return table->m;
    Py_ssize_t lo = 0, hi = table->m; /* binary search in [lo, hi) */
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        size_t key_size = (size_t)(table->bounds[mid + 1] - table->bounds[mid]);
        int cmp = memcmp(value, table->blob + table->bounds[mid], (size_t)size < key_size ? (size_t)size : key_size);
        if (!cmp) cmp = (size_t)size < key_size ? -1 : (size_t)size > key_size;
        if (!cmp) return mid;
        if (cmp < 0) hi = mid;
        else lo = mid + 1;
    }
    return table->m;
}

/* Is s[0:n] well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF)? Text arguments are matched as UTF-8; a field that is not came in
 * another client_encoding, and its lookup would be meaningless. */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) extra = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) extra = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) extra = 3, cp = c & 0x07;
        else return 0;
        if (n - i <= extra) return 0; /* cut short */
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((extra == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += extra + 1;
    }
    return 1;
}

/* The position among a number table's categories of a binary float8 field (NULL,
 * NaN and values of 1e16 or more in magnitude: the default's). The argument is an
 * integer (the transport casts it so); a fraction is cut toward zero, as the
 * general route's int64 cast does. */
static inline Py_ssize_t number_code(const KeyTable *table, const unsigned char *word, int32_t size) {
    if (size < 0) return table->m;
    double value = read_f8(word);
    if (!(fabs(value) < 1e16)) return table->m;
    value = trunc(value) + 0.0; /* + 0.0: no "-0" */
    char text[32];
    int n = snprintf(text, sizeof text, "%.0f.0", value);
    if (n <= 0 || n >= (int)sizeof text) return table->m;
    return key_code(table, (const unsigned char *)text, n);
}

/* The n rows into X (float64, feature-major), a feature at a time: column c of row
 * i is the field whose length word is at buf + field_pos[c * n + i] and reads
 * field_len[c * n + i]. Returns -1, or the position in `sources` of a numeric
 * column whose non-NULL field is not `width` bytes, or n_numeric + t when a field
 * of table t's column is none of its categories and not UTF-8, or n_numeric +
 * n_tables + t when table t reads numbers and a field is not 8 bytes. */
static Py_ssize_t fill_all(const MatrixPlan *p, const unsigned char *buf, const int64_t *field_pos,
                           const int32_t *field_len, double *X, Py_ssize_t n) {
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < p->n_numeric && bad < 0; j++) {
        const int64_t *pos = field_pos + p->sources[j] * n;
        const int32_t *len = field_len + p->sources[j] * n;
        double *out = X + p->targets[j] * n;
        const int32_t width = (int32_t)p->widths[j];
        const double fill = p->fill[j], center = p->center[j], scale = p->scale[j];
        const int scaled = p->scaled; /* locals: X's stores could alias the plan's fields */
        for (Py_ssize_t i = 0; i < n; i++) {
            double value;
            if (len[i] < 0) {
                value = fill;
            } else if (len[i] != width) {
                bad = j;
                break;
            } else {
                const unsigned char *word = buf + pos[i] + 4;
                value = width == 8 ? read_f8(word) : (double)(int32_t)read_len(word);
                if (value != value) value = fill;
            }
            out[i] = scaled ? (value - center) / scale : value;
        }
    }
    for (Py_ssize_t t = 0; t < p->n_tables && bad < 0; t++) {
        const KeyTable *table = &p->tables[t];
        const int64_t *pos = field_pos + table->column * n;
        const int32_t *len = field_len + table->column * n;
        const Py_ssize_t k = table->k, stride = table->m + 1;
        const int64_t *targets = table->targets;
        const double *values = table->values;
        const int numbers = table->width == 8;
        for (Py_ssize_t i = 0; i < n; i++) {
            const unsigned char *field = buf + pos[i] + 4;
            Py_ssize_t code;
            if (numbers) {
                if (len[i] >= 0 && len[i] != 8) {
                    bad = p->n_numeric + p->n_tables + t;
                    break;
                }
                code = number_code(table, field, len[i]);
            } else {
                code = key_code(table, field, len[i]);
                if (code == table->m && len[i] > 0 && !valid_utf8(field, (size_t)len[i])) {
                    bad = p->n_numeric + t;
                    break;
                }
            }
            for (Py_ssize_t j = 0; j < k; j++) X[targets[j] * n + i] = values[j * stride + code];
        }
    }
    Py_END_ALLOW_THREADS
    return bad;
}

/* plan.fill(buf, field_pos, field_len, n, X) -> -1, or the position in `sources` of
 * a column with a binary field of the wrong width. The rows as DataRowBatch parsed
 * them (field_pos, field_len: its arrays, n rows). */
static PyObject *plan_fill(MatrixPlan *self, PyObject *args) {
    PyObject *objs[4];
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OOOnO", &objs[0], &objs[1], &objs[2], &n, &objs[3])) return NULL;
    Py_buffer v[4];
    int got = 0;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "fill: n < 0");
        return NULL;
    }
    if (readable(objs[0], &v[got++], 0, "buf") < 0) return NULL;
    if (readable(objs[1], &v[got++], 0, "field_pos") < 0) goto fail;
    if (readable(objs[2], &v[got++], self->n_columns * n * 4, "field_len") < 0) goto fail;
    if (writable(objs[3], &v[got++], self->n_features * n * 8, "X") < 0) goto fail;
    Py_ssize_t ncols = n ? v[2].len / 4 / n : 0;
    if (v[1].len / 8 < (ncols + 1) * n) {
        PyErr_SetString(PyExc_ValueError, "fill: field_pos is too short");
        goto fail;
    }
    Py_ssize_t bad = fill_all(self, v[0].buf, v[1].buf, v[2].buf, v[3].buf, n);
    release_all(v, got);
    return PyLong_FromSsize_t(bad);
fail:
    release_all(v, got);
    return NULL;
}

/* plan.fill_rows(buf, n, X) -> -1, a column's position in `sources` (as fill), or
 * -1 - a PARSE_ code: the same for the `n` DataRows that fill `buf` (a small batch,
 * parsed here: no arrays of positions to make). */
static PyObject *plan_fill_rows(MatrixPlan *self, PyObject *args) {
    PyObject *buf_obj, *x_obj;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OnO", &buf_obj, &n, &x_obj)) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "fill_rows: n < 0");
        return NULL;
    }
    Py_buffer v[2];
    if (readable(buf_obj, &v[0], 0, "buf") < 0) return NULL;
    if (writable(x_obj, &v[1], self->n_features * n * 8, "X") < 0) {
        PyBuffer_Release(&v[0]);
        return NULL;
    }
    Py_ssize_t upto = self->n_columns;
    int64_t *pos = PyMem_Malloc((size_t)((upto + 1) * n + 1) * 8);
    int32_t *lens = PyMem_Malloc((size_t)(upto * n + 1) * 4);
    if (!pos || !lens) {
        PyMem_Free(pos);
        PyMem_Free(lens);
        release_all(v, 2);
        return PyErr_NoMemory();
    }
    int code = walk_rows(v[0].buf, v[0].len, n, upto, pos, lens);
    Py_ssize_t result = code ? -1 - code : fill_all(self, v[0].buf, pos, lens, v[1].buf, n);
    PyMem_Free(pos);
    PyMem_Free(lens);
    release_all(v, 2);
    return PyLong_FromSsize_t(result);
}

/* The model library's batch entry point (compiler/driver_source.py). */
typedef int32_t (*margins_fn)(const double *X, int64_t nrow, int64_t ncol, int64_t rs, int64_t cs,
                              int32_t round32, int32_t nthread, double *out);

/* plan.predict_rows(buf, n, fn, round32, outputs, out) -> fill_rows' result, or PREDICT_GENERAL:
 * fill_rows into a matrix of its own, then the library function at address `fn`
 * (mlpx_predict_margins of a library of n_features features) writes the n rows'
 * margins into `out` (float64, n x outputs), on this thread: a few rows' lookup
 * without numpy arrays or a ctypes call. PREDICT_GENERAL, nothing written, when a
 * feature is not finite (Preprocessor.check_finite's to judge) or the library refuses
 * the batch: the caller takes the general route, which says why. */
#define PREDICT_GENERAL (-1000)
static PyObject *plan_predict_rows(MatrixPlan *self, PyObject *args) {
    PyObject *buf_obj, *out_obj;
    Py_ssize_t n;
    Py_ssize_t outputs;
    unsigned long long address;
    int round32;
    if (!PyArg_ParseTuple(args, "OnKpnO", &buf_obj, &n, &address, &round32, &outputs, &out_obj)) return NULL;
    if (n < 0 || outputs < 1 || !address) {
        PyErr_SetString(PyExc_ValueError, "predict_rows: n < 0, no outputs or no function");
        return NULL;
    }
    Py_buffer v[2];
    if (readable(buf_obj, &v[0], 0, "buf") < 0) return NULL;
    if (writable(out_obj, &v[1], 8 * n * outputs, "out") < 0) {
        PyBuffer_Release(&v[0]);
        return NULL;
    }
    Py_ssize_t upto = self->n_columns, nf = self->n_features;
    int64_t *pos = PyMem_Malloc((size_t)((upto + 1) * n + 1) * 8);
    int32_t *lens = PyMem_Malloc((size_t)(upto * n + 1) * 4);
    double *X = PyMem_Malloc((size_t)(nf * n + 1) * 8);
    Py_ssize_t result;
    if (!pos || !lens || !X) {
        PyMem_Free(pos);
        PyMem_Free(lens);
        PyMem_Free(X);
        release_all(v, 2);
        return PyErr_NoMemory();
    }
    int code = walk_rows(v[0].buf, v[0].len, n, upto, pos, lens);
    result = code ? -1 - code : fill_all(self, v[0].buf, pos, lens, X, n);
    if (result == -1) {
        for (Py_ssize_t i = 0; i < nf * n; i++) {
            if (!isfinite(X[i])) {
                result = PREDICT_GENERAL;
                break;
            }
        }
    }
    if (result == -1) {
        /* X is feature-major: row i's feature f at X[f * n + i] */
        margins_fn fn = (margins_fn)(uintptr_t)address;
        if (fn(X, n, nf, 1, n, (int32_t)round32, 1, v[1].buf) != 0)
            result = PREDICT_GENERAL;
    }
    PyMem_Free(pos);
    PyMem_Free(lens);
    PyMem_Free(X);
    release_all(v, 2);
    return PyLong_FromSsize_t(result);
}

static PyMethodDef plan_methods[] = {
    {"fill", (PyCFunction)plan_fill, METH_VARARGS,
     "fill(buf, field_pos, field_len, n, X) -> -1, or the position of a numeric column with a bad width"},
    {"fill_rows", (PyCFunction)plan_fill_rows, METH_VARARGS,
     "fill_rows(buf, n, X) -> -1, the position of a bad numeric column, or -1 - a parse error code"},
    {"predict_rows", (PyCFunction)plan_predict_rows, METH_VARARGS,
     "predict_rows(buf, n, fn, round32, outputs, out) -> fill_rows' result, or -1000: take the general route"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MatrixPlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_mlproxy_rows.MatrixPlan",
    .tp_basicsize = sizeof(MatrixPlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "MatrixPlan(n_features, sources, widths, targets, fill, center, scale, scaled, tables)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)plan_init,
    .tp_dealloc = (destructor)plan_dealloc,
    .tp_methods = plan_methods,
};

/* splice(buf, field_pos, n, keep, columns, lengths, payloads) -> bytes
 * DataRowBatch.splice in one pass: each row's first `keep` columns, where
 * columns[j] (ascending, each < keep) gets lengths[j] (int32[n], -1 for NULL) and
 * the next bytes of payloads[j]; message lengths and column counts rewritten.
 * field_pos None: the n rows fill `buf` and are parsed here (a small batch; a
 * malformed one raises ValueError). */
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
    int64_t *walked = NULL; /* the positions, when parsed here */
    if (pos_obj == Py_None) {
        if (n < 0 || keep < 0 || keep > 0xFFFF) {
            PyErr_SetString(PyExc_ValueError, "splice: n or keep is out of range");
            goto fail;
        }
        walked = PyMem_Malloc((size_t)((keep + 1) * n + 1) * 8);
        int code = walked ? walk_rows(v[0].buf, v[0].len, n, keep, walked, NULL) : -1;
        if (code) {
            if (code < 0) PyErr_NoMemory();
            else PyErr_Format(PyExc_ValueError, "splice: the rows do not parse (code %d)", code);
            goto fail;
        }
        v[got].buf = walked;
        v[got].len = (keep + 1) * n * 8;
        v[got].obj = NULL; /* PyBuffer_Release of a view without an object does nothing */
    } else if (readable(pos_obj, &v[got], 0, "field_pos") < 0) {
        goto fail;
    }
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
    PyMem_Free(walked);
    return result;
fail:
    release_all(v, got);
    PyMem_Free(walked);
    return NULL;
}

static PyMethodDef methods[] = {
    {"splice", splice, METH_VARARGS,
     "splice(buf, field_pos or None, n, keep, columns, lengths, payloads) -> bytes"},
    {"scan", scan, METH_VARARGS, "scan(buf, start, end) -> (offsets: bytearray of int64, stop)"},
    {"parse", parse, METH_VARARGS,
     "parse(buf, starts, n_columns, field_pos, field_len, ends) -> error code"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mlproxy_rows",
    "C fast path of proxy.inference.rowscan/rows (see there).", -1, methods,
};

PyMODINIT_FUNC PyInit__mlproxy_rows(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddType(m, &MatrixPlanType) < 0) Py_CLEAR(m); /* readies the type too */
    return m;
}
