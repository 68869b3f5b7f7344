/* The relay pump: pass-through sessions relayed by one native thread.
 *
 * Contract and the Python side: proxy/pump.py. In short, a session whose two
 * sockets carry nothing the proxy needs to look at is *lent* to the pump: the pump
 * dups both descriptors, polls them with its own epoll set on its own thread
 * (which never takes the GIL), forwards whole and streamed messages both ways and
 * keeps the session's bookkeeping (requests in flight, COPY IN state, transaction
 * status). The moment a chunk holds something the pump does not handle (a
 * statement with an interceptor's trigger, an extended-protocol message left
 * unsynced, an ErrorResponse, Terminate, a header cut by the read...), it forwards
 * what came before it and *hands the session back* with the rest: a record the
 * Python side collects (`take`) after the pump signals its eventfd. `reclaim` takes
 * a session back from Python's side at any time.
 *
 * Concurrency: one mutex. The pump thread holds it while it processes the events
 * one epoll_wait returned; lend/reclaim/take hold it (with the GIL released while
 * they wait for it). A session taken back is marked dead and freed only by the
 * pump thread after its next batch, so a stale event from an epoll_wait that ran
 * concurrently with a reclaim never touches freed memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "_wire_rules.h"

#define READ_SIZE (256 * 1024)
#define MAX_EVENTS 128

enum {  /* why a session came back (record field `reason`) */
    BACK_RECLAIMED = 0,
    BACK_CLIENT_DATA = 1,  /* `data` is client input for the session's framed path */
    BACK_SERVER_DATA = 2,  /* `data` is server input for the session's framed path */
    BACK_CLIENT_CLOSED = 3,  /* end of stream or an error reading/writing the client */
    BACK_SERVER_CLOSED = 4,  /* the same for the server */
    BACK_FAILED = 5,  /* out of memory: bytes were lost, the session cannot go on */
};

enum { CLIENT = 0, SERVER = 1 };

typedef struct {
    char *data;
    size_t len;
} Buf;

typedef struct Record {
    long long key;
    int reason;
    Buf data;
    Buf out[2];
    long long pending;
    int ends_kind, copy_in, ready_seen;
    unsigned char txstatus;
    unsigned long long skip[2], bytes[2], readies;
    struct Record *next;
} Record;

typedef struct Pair Pair;

typedef struct {
    Pair *pair;
    int side;
} Side;

struct Pair {
    long long key;
    Py_ssize_t slot;         /* index in Pump.by_key */
    int fd[2];               /* our dups of the client and server sockets */
    uint32_t interest[2];    /* epoll events registered per fd */
    Side sides[2];
    unsigned char limits[1024];  /* 256 big-endian maxima of frontend message lengths */
    unsigned char **triggers;
    Py_ssize_t *trigger_len;
    Py_ssize_t ntriggers;
    unsigned char starts[256];   /* first bytes of the triggers */
    int any_empty_trigger;
    unsigned char **names;       /* a parked reply rewrite's statement names */
    size_t *name_len;
    Py_ssize_t nnames;
    long long pending;       /* requests upstream whose ReadyForQuery has not come */
    int ends_kind;           /* their kind, all one (REQUEST_QUERY or REQUEST_SYNC) */
    int copy_in;
    int ready_seen;          /* a ReadyForQuery passed (then txstatus is its status) */
    unsigned char txstatus;
    unsigned long long skip[2];   /* bytes of a streamed message still to pass, per source */
    Buf out[2];              /* unsent bytes for fd[i], written when it is writable */
    unsigned long long bytes[2];  /* bytes read and forwarded from each side */
    unsigned long long readies;   /* ReadyForQuery messages forwarded (statements answered) */
    Record *record;          /* allocated at lend: coming back never needs memory */
    int dead;
    Pair *next_dead;
};

typedef struct {
    PyObject_HEAD
    int epfd;
    int wake_fd;    /* eventfd: tells the pump thread to stop */
    int notify_fd;  /* eventfd: tells Python that records wait */
    pthread_t thread;
    int running;
    pthread_mutex_t lock;
    Pair **by_key;  /* the lent sessions (a linear table: lend/reclaim are rare) */
    Py_ssize_t nlent, cap;
    Record *records, *records_tail;
    Pair *graveyard;
    unsigned char *rbuf;
} Pump;

/* -- buffers ----------------------------------------------------------------------- */

static int buf_set(Buf *b, const char *data, size_t len) {
    b->data = NULL;
    b->len = 0;
    if (!len) return 0;
    b->data = malloc(len);
    if (!b->data) return -1;
    memcpy(b->data, data, len);
    b->len = len;
    return 0;
}

static void buf_free(Buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

/* -- the lent sessions --------------------------------------------------------------- */

/* A linear search, for Python's lend/reclaim by key; the pump itself uses slots. */
static Py_ssize_t find(Pump *p, long long key) {
    for (Py_ssize_t i = 0; i < p->nlent; i++)
        if (p->by_key[i]->key == key) return i;
    return -1;
}

static void pair_free(Pair *a) {
    for (Py_ssize_t k = 0; k < a->ntriggers; k++) free(a->triggers[k]);
    free(a->triggers);
    free(a->trigger_len);
    for (Py_ssize_t k = 0; k < a->nnames; k++) free(a->names[k]);
    free(a->names);
    free(a->name_len);
    buf_free(&a->out[0]);
    buf_free(&a->out[1]);
    free(a->record);
    free(a);
}

static void set_interest(Pump *p, Pair *a, int i) {
    /* fd i is read while the other side has nothing unsent (backpressure), and
     * written when its own unsent bytes wait. */
    uint32_t want = 0;
    if (!a->out[1 - i].len) want |= EPOLLIN;
    if (a->out[i].len) want |= EPOLLOUT;
    if (want == a->interest[i]) return;
    struct epoll_event ev = {.events = want, .data.ptr = &a->sides[i]};
    epoll_ctl(p->epfd, EPOLL_CTL_MOD, a->fd[i], &ev);
    a->interest[i] = want;
}

/* Take `a` out of the pump (lock held): a record of its state, with `data` (the
 * input not handled) for the Python side; the pair is freed after the next batch. */
static Record *retire(Pump *p, Pair *a, int reason, const unsigned char *data, size_t len) {
    Record *r = a->record;
    a->record = NULL;
    r->key = a->key;
    r->reason = reason;
    if (buf_set(&r->data, (const char *)data, len) < 0)
        r->reason = BACK_FAILED;  /* out of memory: input lost, the session must end */
    r->out[0] = a->out[0];
    r->out[1] = a->out[1];
    a->out[0].data = a->out[1].data = NULL;
    a->out[0].len = a->out[1].len = 0;
    r->pending = a->pending;
    r->ends_kind = a->pending > 0 ? a->ends_kind : 0;
    r->copy_in = a->copy_in;
    r->ready_seen = a->ready_seen;
    r->txstatus = a->txstatus;
    r->skip[0] = a->skip[0];
    r->skip[1] = a->skip[1];
    r->bytes[0] = a->bytes[0];
    r->bytes[1] = a->bytes[1];
    r->readies = a->readies;
    for (int i = 0; i < 2; i++) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, a->fd[i], NULL);
        close(a->fd[i]);
    }
    a->dead = 1;
    a->next_dead = p->graveyard;
    p->graveyard = a;
    Pair *last = p->by_key[--p->nlent];
    p->by_key[a->slot] = last;
    last->slot = a->slot;
    return r;
}

static void post(Pump *p, Record *r) {
    r->next = NULL;
    if (p->records_tail) p->records_tail->next = r;
    else p->records = r;
    p->records_tail = r;
    uint64_t one = 1;
    ssize_t w = write(p->notify_fd, &one, sizeof one);
    (void)w;
}

/* -- scanning ------------------------------------------------------------------------ */

static int triggered(const Pair *a, const unsigned char *body, size_t n) {
    if (a->any_empty_trigger) return 1;
    if (!a->ntriggers) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = lower(body[i]);
        if (!a->starts[c]) continue;
        for (Py_ssize_t k = 0; k < a->ntriggers; k++) {
            const unsigned char *needle = a->triggers[k];
            size_t m = (size_t)a->trigger_len[k];
            if (needle[0] != c || m > n - i) continue;
            size_t j = 1;
            while (j < m && lower(body[i + j]) == needle[j]) j++;
            if (j == m) return 1;
        }
    }
    return 0;
}

/* Does the message name one of the session's names (or is it malformed there)? */
static int names_hit(const Pair *a, unsigned char type, const unsigned char *body, size_t n) {
    size_t start[2], len[2];
    int count = message_names(type, body, n, start, len);
    if (count < 0) return 1;
    for (int k = 0; k < count; k++)
        for (Py_ssize_t i = 0; i < a->nnames; i++)
            if (a->name_len[i] == len[k] && memcmp(a->names[i], body + start[k], len[k]) == 0)
                return 1;
    return 0;
}

/* Client input: how many leading bytes to forward; *stop when the rest (from a
 * message boundary) goes back to Python. The bookkeeping of the forwarded part is
 * applied to `a`, only at points where no extended-protocol message awaits a Sync
 * (the same rules as wire_scan.client_chunk, message by message). */
static size_t scan_client(Pair *a, const unsigned char *data, size_t n, int *stop) {
    size_t pos = 0, safe = 0;
    *stop = 0;
    if (a->skip[CLIENT]) {  /* the rest of a streamed CopyData */
        size_t take = a->skip[CLIENT] < n ? (size_t)a->skip[CLIENT] : n;
        a->skip[CLIENT] -= take;
        pos = safe = take;
    }
    ClientRules rules = {.copy_in = a->copy_in};
    while (pos < n) {
        if (n - pos < 5) break;
        unsigned char type = data[pos];
        uint32_t length = read_len(data + pos + 1);
        if (length < 4 || length > read_len(a->limits + 4 * type)) break;
        size_t end = pos + 1 + (size_t)length;
        if (end > n) {
            if (type == 'd' && !rules.extended_open) {  /* stream COPY data as it comes */
                a->skip[CLIENT] = end - n;
                return n;
            }
            break;
        }
        if (a->nnames && names_hit(a, type, data + pos + 5, length - 4)) break;
        if ((type == 'Q' || type == 'P') && triggered(a, data + pos + 5, length - 4)) break;
        if (client_rule(&rules, type) < 0) break;  /* Terminate: the session's own path */
        pos = end;
        if (!rules.extended_open) {  /* a safe point: what came so far counts */
            int kinds = (a->pending > 0 ? a->ends_kind : 0) | rules.kinds;
            /* Queries and Syncs in flight together: the session keeps their order
             * (a Sync Postgres reads inside a COPY gets no ReadyForQuery) */
            if (kinds == (REQUEST_QUERY | REQUEST_SYNC)) break;
            a->pending += rules.requests;
            a->ends_kind = kinds;
            rules.requests = 0;
            rules.kinds = 0;
            a->copy_in = rules.copy_in;
            safe = pos;
        }
    }
    if (safe < n) *stop = 1;
    return safe;
}

/* Server input: everything streams but ReadyForQuery (noted; it must be whole),
 * ErrorResponse and CopyInResponse (the session's framed path logs and tracks them). */
static size_t scan_server(Pair *a, const unsigned char *data, size_t n, int *stop) {
    size_t pos = 0;
    *stop = 0;
    if (a->skip[SERVER]) {
        size_t take = a->skip[SERVER] < n ? (size_t)a->skip[SERVER] : n;
        a->skip[SERVER] -= take;
        pos = take;
    }
    while (pos < n) {
        if (n - pos < 5) break;
        unsigned char type = data[pos];
        uint32_t length = read_len(data + pos + 1);
        if (length < 4) break;
        if (type == 'E' || type == 'G') break;
        if (type == 'Z') {
            if (length != 5 || n - pos < 6) break;
            a->ready_seen = 1;
            a->readies++;
            a->txstatus = data[pos + 5];
            a->copy_in = 0;
            if (a->pending > 0) a->pending--;
        }
        size_t end = pos + 1 + (size_t)length;
        if (end > n) {
            a->skip[SERVER] = end - n;
            return n;
        }
        pos = end;
    }
    if (pos < n) *stop = 1;
    return pos;
}

/* -- the pump thread ------------------------------------------------------------------- */

/* Write to fd `to`; what does not fit waits in out[to]. 0; -1 on a write error
 * (the rest waits in out[to] for Python's transport to meet the same error); -2
 * when there was no memory to keep the rest. */
static int send_to(Pump *p, Pair *a, int to, const unsigned char *data, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t w = send(a->fd[to], data + done, len - done, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return buf_set(&a->out[to], (const char *)data + done, len - done) < 0 ? -2 : -1;
        }
    }
    if (done < len) {
        if (buf_set(&a->out[to], (const char *)data + done, len - done) < 0) return -2;
        set_interest(p, a, to);
        set_interest(p, a, 1 - to);
    }
    return 0;
}

static void on_writable(Pump *p, Pair *a, int i) {
    Buf *b = &a->out[i];
    size_t done = 0;
    while (done < b->len) {
        ssize_t w = send(a->fd[i], b->data + done, b->len - done, MSG_NOSIGNAL);
        if (w > 0) done += (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        else {
            memmove(b->data, b->data + done, b->len - done);
            b->len -= done;
            post(p, retire(p, a, i == CLIENT ? BACK_CLIENT_CLOSED : BACK_SERVER_CLOSED, NULL, 0));
            return;
        }
    }
    if (done == b->len) {
        buf_free(b);
    } else if (done) {
        memmove(b->data, b->data + done, b->len - done);
        b->len -= done;
    }
    set_interest(p, a, i);
    set_interest(p, a, 1 - i);
}

static void on_readable(Pump *p, Pair *a, int s) {
    ssize_t n;
    do {
        n = recv(a->fd[s], p->rbuf, READ_SIZE, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
        post(p, retire(p, a, s == CLIENT ? BACK_CLIENT_CLOSED : BACK_SERVER_CLOSED, NULL, 0));
        return;
    }
    int stop;
    size_t fwd = s == CLIENT ? scan_client(a, p->rbuf, (size_t)n, &stop)
                             : scan_server(a, p->rbuf, (size_t)n, &stop);
    a->bytes[s] += fwd;
    int sent = fwd ? send_to(p, a, 1 - s, p->rbuf, fwd) : 0;
    if (sent < 0) {
        /* the peer is gone: Python's transport meets the same error and closes */
        post(p, retire(p, a, sent == -2 ? BACK_FAILED
                             : s == CLIENT ? BACK_SERVER_CLOSED : BACK_CLIENT_CLOSED, NULL, 0));
        return;
    }
    if (stop)
        post(p, retire(p, a, s == CLIENT ? BACK_CLIENT_DATA : BACK_SERVER_DATA,
                       p->rbuf + fwd, (size_t)n - fwd));
}

static void *pump_main(void *arg) {
    Pump *p = arg;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int count = epoll_wait(p->epfd, events, MAX_EVENTS, -1);
        if (count < 0) {
            if (errno == EINTR) continue;
            break;
        }
        pthread_mutex_lock(&p->lock);
        int stopping = 0;
        for (int e = 0; e < count; e++) {
            Side *side = events[e].data.ptr;
            if (!side) {
                stopping = 1;
                continue;
            }
            Pair *a = side->pair;
            if (a->dead) continue;
            uint32_t got = events[e].events;
            if ((got & EPOLLOUT) && a->out[side->side].len) {
                on_writable(p, a, side->side);
                if (a->dead) continue;
            }
            if (got & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (a->interest[side->side] & EPOLLIN) on_readable(p, a, side->side);
                else if (got & (EPOLLHUP | EPOLLERR))  /* cannot write, cannot read */
                    post(p, retire(p, a, side->side == CLIENT ? BACK_CLIENT_CLOSED
                                                             : BACK_SERVER_CLOSED, NULL, 0));
            }
        }
        while (p->graveyard) {
            Pair *a = p->graveyard;
            p->graveyard = a->next_dead;
            pair_free(a);
        }
        pthread_mutex_unlock(&p->lock);
        if (stopping) break;
    }
    return NULL;
}

/* -- Python type ---------------------------------------------------------------------- */

static void lock_nogil(Pump *p) {
    if (pthread_mutex_trylock(&p->lock) == 0) return;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&p->lock);
    Py_END_ALLOW_THREADS
}

static PyObject *record_tuple(Record *r) {
    return Py_BuildValue(
        "(Liy#y#y#LiiiiKKKKK)", r->key, r->reason,
        r->data.data ? r->data.data : "", (Py_ssize_t)r->data.len,
        r->out[CLIENT].data ? r->out[CLIENT].data : "", (Py_ssize_t)r->out[CLIENT].len,
        r->out[SERVER].data ? r->out[SERVER].data : "", (Py_ssize_t)r->out[SERVER].len,
        r->pending, r->ends_kind, r->copy_in, r->ready_seen, (int)r->txstatus,
        r->skip[CLIENT], r->skip[SERVER], r->bytes[CLIENT], r->bytes[SERVER], r->readies);
}

static void record_free(Record *r) {
    buf_free(&r->data);
    buf_free(&r->out[0]);
    buf_free(&r->out[1]);
    free(r);
}

static void stop_thread(Pump *p) {
    if (!p->running) return;
    uint64_t one = 1;
    ssize_t w = write(p->wake_fd, &one, sizeof one);
    (void)w;
    Py_BEGIN_ALLOW_THREADS
    pthread_join(p->thread, NULL);
    Py_END_ALLOW_THREADS
    p->running = 0;
}

static PyObject *Pump_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Pump() takes no arguments");
        return NULL;
    }
    Pump *p = (Pump *)type->tp_alloc(type, 0);
    if (!p) return NULL;
    p->epfd = p->wake_fd = p->notify_fd = -1;
    pthread_mutex_init(&p->lock, NULL);
    p->rbuf = malloc(READ_SIZE);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!p->rbuf || p->epfd < 0 || p->wake_fd < 0 || p->notify_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(p);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wake_fd, &ev) < 0
            || pthread_create(&p->thread, NULL, pump_main, p) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(p);
        return NULL;
    }
    p->running = 1;
    return (PyObject *)p;
}

static void Pump_dealloc(Pump *p) {
    stop_thread(p);
    for (Py_ssize_t i = 0; i < p->nlent; i++) {
        Pair *a = p->by_key[i];
        close(a->fd[0]);
        close(a->fd[1]);
        pair_free(a);
    }
    free(p->by_key);
    while (p->graveyard) {
        Pair *a = p->graveyard;
        p->graveyard = a->next_dead;
        pair_free(a);
    }
    while (p->records) {
        Record *r = p->records;
        p->records = r->next;
        record_free(r);
    }
    if (p->epfd >= 0) close(p->epfd);
    if (p->wake_fd >= 0) close(p->wake_fd);
    if (p->notify_fd >= 0) close(p->notify_fd);
    free(p->rbuf);
    pthread_mutex_destroy(&p->lock);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

/* lend(key, client_fd, server_fd, limits, triggers, pending, ends_kind, copy_in, names=()) */
static PyObject *Pump_lend(Pump *p, PyObject *args) {
    long long key, pending;
    int client_fd, server_fd, ends_kind, copy_in;
    Py_buffer limits;
    PyObject *triggers, *names = NULL;
    if (!PyArg_ParseTuple(args, "Liiy*O!Lip|O!", &key, &client_fd, &server_fd, &limits,
                          &PyTuple_Type, &triggers, &pending, &ends_kind, &copy_in,
                          &PyTuple_Type, &names))
        return NULL;
    Py_ssize_t nnames = names ? PyTuple_GET_SIZE(names) : 0;
    for (Py_ssize_t k = 0; k < nnames; k++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(names, k))) {
            PyBuffer_Release(&limits);
            PyErr_SetString(PyExc_TypeError, "names must be bytes");
            return NULL;
        }
    }
    if (ends_kind != 0 && ends_kind != REQUEST_QUERY && ends_kind != REQUEST_SYNC) {
        PyBuffer_Release(&limits);
        PyErr_SetString(PyExc_ValueError, "ends_kind must be 0, 1 (queries) or 2 (syncs)");
        return NULL;
    }
    if (limits.len != 1024) {
        PyBuffer_Release(&limits);
        PyErr_SetString(PyExc_ValueError, "limits must be 1024 bytes");
        return NULL;
    }
    if (!p->running) {
        PyBuffer_Release(&limits);
        PyErr_SetString(PyExc_RuntimeError, "the pump is closed");
        return NULL;
    }
    Py_ssize_t ntrig = PyTuple_GET_SIZE(triggers);
    for (Py_ssize_t k = 0; k < ntrig; k++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(triggers, k))) {
            PyBuffer_Release(&limits);
            PyErr_SetString(PyExc_TypeError, "triggers must be bytes");
            return NULL;
        }
    }
    Pair *a = calloc(1, sizeof *a);
    if (!a) {
        PyBuffer_Release(&limits);
        return PyErr_NoMemory();
    }
    a->key = key;
    memcpy(a->limits, limits.buf, 1024);
    PyBuffer_Release(&limits);
    a->pending = pending;
    a->ends_kind = ends_kind;
    a->copy_in = copy_in;
    a->fd[0] = a->fd[1] = -1;
    a->ntriggers = ntrig;
    a->triggers = calloc(ntrig ? ntrig : 1, sizeof *a->triggers);
    a->trigger_len = calloc(ntrig ? ntrig : 1, sizeof *a->trigger_len);
    a->record = calloc(1, sizeof *a->record);
    a->names = calloc(nnames ? nnames : 1, sizeof *a->names);
    a->name_len = calloc(nnames ? nnames : 1, sizeof *a->name_len);
    if (!a->triggers || !a->trigger_len || !a->record || !a->names || !a->name_len) {
        pair_free(a);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < nnames; k++) {
        PyObject *t = PyTuple_GET_ITEM(names, k);
        size_t m = (size_t)PyBytes_GET_SIZE(t);
        a->names[k] = malloc(m ? m : 1);
        if (!a->names[k]) {
            pair_free(a);
            return PyErr_NoMemory();
        }
        memcpy(a->names[k], PyBytes_AS_STRING(t), m);
        a->name_len[k] = m;
        a->nnames = k + 1;
    }
    for (Py_ssize_t k = 0; k < ntrig; k++) {
        PyObject *t = PyTuple_GET_ITEM(triggers, k);
        Py_ssize_t m = PyBytes_GET_SIZE(t);
        if (m == 0) {
            a->any_empty_trigger = 1;
            a->trigger_len[k] = 0;
            a->triggers[k] = malloc(1);
            continue;
        }
        a->triggers[k] = malloc((size_t)m);
        if (!a->triggers[k]) {
            pair_free(a);
            return PyErr_NoMemory();
        }
        memcpy(a->triggers[k], PyBytes_AS_STRING(t), (size_t)m);
        a->trigger_len[k] = m;
        a->starts[a->triggers[k][0]] = 1;
    }
    a->fd[CLIENT] = fcntl(client_fd, F_DUPFD_CLOEXEC, 0);
    a->fd[SERVER] = fcntl(server_fd, F_DUPFD_CLOEXEC, 0);
    if (a->fd[CLIENT] < 0 || a->fd[SERVER] < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        if (a->fd[CLIENT] >= 0) close(a->fd[CLIENT]);
        if (a->fd[SERVER] >= 0) close(a->fd[SERVER]);
        pair_free(a);
        return NULL;
    }
    lock_nogil(p);
    if (find(p, key) >= 0) {
        pthread_mutex_unlock(&p->lock);
        close(a->fd[CLIENT]);
        close(a->fd[SERVER]);
        pair_free(a);
        PyErr_Format(PyExc_ValueError, "session %lld is already lent", key);
        return NULL;
    }
    if (p->nlent == p->cap) {
        Py_ssize_t cap = p->cap ? p->cap * 2 : 64;
        Pair **grown = realloc(p->by_key, (size_t)cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&p->lock);
            close(a->fd[CLIENT]);
            close(a->fd[SERVER]);
            pair_free(a);
            return PyErr_NoMemory();
        }
        p->by_key = grown;
        p->cap = cap;
    }
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        a->sides[i].pair = a;
        a->sides[i].side = i;
        a->interest[i] = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &a->sides[i]};
        if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, a->fd[i], &ev) < 0) failed = errno;
    }
    if (failed) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, a->fd[0], NULL);
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, a->fd[1], NULL);
        pthread_mutex_unlock(&p->lock);
        close(a->fd[CLIENT]);
        close(a->fd[SERVER]);
        pair_free(a);
        errno = failed;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    a->slot = p->nlent;
    p->by_key[p->nlent++] = a;
    pthread_mutex_unlock(&p->lock);
    Py_RETURN_NONE;
}

/* reclaim(key) -> record | None: the session back, from the pump or from the
 * records not taken yet (None when it is in neither: not lent). */
static PyObject *Pump_reclaim(Pump *p, PyObject *arg) {
    long long key = PyLong_AsLongLong(arg);
    if (key == -1 && PyErr_Occurred()) return NULL;
    lock_nogil(p);
    Record *r = NULL;
    Py_ssize_t at = find(p, key);
    if (at >= 0) {
        r = retire(p, p->by_key[at], BACK_RECLAIMED, NULL, 0);
    } else {
        Record *prev = NULL;
        for (Record *q = p->records; q; prev = q, q = q->next) {
            if (q->key != key) continue;
            if (prev) prev->next = q->next;
            else p->records = q->next;
            if (p->records_tail == q) p->records_tail = prev;
            r = q;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (!r) Py_RETURN_NONE;
    PyObject *t = record_tuple(r);
    record_free(r);
    return t;
}

/* take() -> list of records handed back since the last take */
static PyObject *Pump_take(Pump *p, PyObject *unused) {
    uint64_t count;
    ssize_t got = read(p->notify_fd, &count, sizeof count);
    (void)got;
    lock_nogil(p);
    Record *r = p->records;
    p->records = p->records_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    PyObject *list = PyList_New(0);
    while (r) {
        Record *next = r->next;
        PyObject *t = list ? record_tuple(r) : NULL;
        if (list && (!t || PyList_Append(list, t) < 0)) Py_CLEAR(list);
        Py_XDECREF(t);
        record_free(r);
        r = next;
    }
    return list;
}

static PyObject *Pump_fileno(Pump *p, PyObject *unused) {
    return PyLong_FromLong(p->notify_fd);
}

static PyObject *Pump_lent(Pump *p, PyObject *unused) {
    lock_nogil(p);
    Py_ssize_t n = p->nlent;
    pthread_mutex_unlock(&p->lock);
    return PyLong_FromSsize_t(n);
}

/* counters() -> [(key, bytes_client, bytes_server, readies, pending)] of the sessions
 * lent now, since their lending, and of those handed back whose records `take` has not
 * collected yet (their counts reach the session only then: without them a reading in
 * between would miss what an earlier one counted). Read under the lock: nothing moves. */
static void counter_row(unsigned long long row[5], long long key, const unsigned long long bytes[2],
                        unsigned long long readies, long long pending) {
    row[0] = (unsigned long long)key;
    row[1] = bytes[CLIENT];
    row[2] = bytes[SERVER];
    row[3] = readies;
    row[4] = (unsigned long long)(pending > 0 ? pending : 0);
}

static PyObject *Pump_counters(Pump *p, PyObject *unused) {
    lock_nogil(p);
    Py_ssize_t n = p->nlent;
    for (Record *r = p->records; r; r = r->next) n++;
    unsigned long long (*rows)[5] = malloc((size_t)(n ? n : 1) * sizeof *rows);
    if (!rows) {
        pthread_mutex_unlock(&p->lock);
        return PyErr_NoMemory();
    }
    Py_ssize_t i = 0;
    for (; i < p->nlent; i++) {
        Pair *a = p->by_key[i];
        counter_row(rows[i], a->key, a->bytes, a->readies, a->pending);
    }
    for (Record *r = p->records; r; r = r->next, i++)
        counter_row(rows[i], r->key, r->bytes, r->readies, r->pending);
    pthread_mutex_unlock(&p->lock);
    PyObject *list = PyList_New(n);
    for (i = 0; list && i < n; i++) {
        PyObject *t = Py_BuildValue("(LKKKK)", (long long)rows[i][0], rows[i][1], rows[i][2],
                                    rows[i][3], rows[i][4]);
        if (!t) Py_CLEAR(list);
        else PyList_SET_ITEM(list, i, t);
    }
    free(rows);
    return list;
}

static PyObject *Pump_close(Pump *p, PyObject *unused) {
    stop_thread(p);
    Py_RETURN_NONE;
}

static PyMethodDef Pump_methods[] = {
    {"lend", (PyCFunction)Pump_lend, METH_VARARGS,
     "lend(key, client_fd, server_fd, limits, triggers, pending, ends_kind, copy_in, names=())"},
    {"reclaim", (PyCFunction)Pump_reclaim, METH_O, "reclaim(key) -> record | None"},
    {"take", (PyCFunction)Pump_take, METH_NOARGS, "take() -> list of handed-back records"},
    {"fileno", (PyCFunction)Pump_fileno, METH_NOARGS, "the eventfd that signals records"},
    {"lent", (PyCFunction)Pump_lent, METH_NOARGS, "how many sessions the pump holds"},
    {"counters", (PyCFunction)Pump_counters, METH_NOARGS,
     "counters() -> [(key, bytes_client, bytes_server, readies, pending)] of the lent sessions "
     "and of those handed back but not taken yet"},
    {"close", (PyCFunction)Pump_close, METH_NOARGS, "stop the pump thread"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_mlproxy_pump.Pump",
    .tp_basicsize = sizeof(Pump),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The relay pump: see proxy/pump.py.",
    .tp_new = Pump_new,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_methods = Pump_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mlproxy_pump", "Native relay of pass-through sessions (see proxy/pump.py).",
    -1, NULL,
};

PyMODINIT_FUNC PyInit__mlproxy_pump(void) {
    if (PyType_Ready(&PumpType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&PumpType);
    if (PyModule_AddObject(m, "Pump", (PyObject *)&PumpType) < 0) {
        Py_DECREF(&PumpType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "RECLAIMED", BACK_RECLAIMED);
    PyModule_AddIntConstant(m, "CLIENT_DATA", BACK_CLIENT_DATA);
    PyModule_AddIntConstant(m, "SERVER_DATA", BACK_SERVER_DATA);
    PyModule_AddIntConstant(m, "CLIENT_CLOSED", BACK_CLIENT_CLOSED);
    PyModule_AddIntConstant(m, "SERVER_CLOSED", BACK_SERVER_CLOSED);
    PyModule_AddIntConstant(m, "FAILED", BACK_FAILED);
    return m;
}
