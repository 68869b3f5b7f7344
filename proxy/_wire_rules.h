/* What a frontend message means for the relay's bookkeeping: shared by the per-chunk
 * scan (_wire_scan.c) and the relay pump (_relay_pump.c), so both apply one set of
 * rules, the same as Session._account in Python (see proxy/wire_scan.py).
 */
#ifndef MLPROXY_WIRE_RULES_H
#define MLPROXY_WIRE_RULES_H

#include <stdint.h>
#include <string.h>

typedef struct {
    long long requests;  /* requests sent that will each get a ReadyForQuery */
    int copy_in;         /* in COPY IN: the server ignores Sync */
    int extended_open;   /* an extended-protocol message since the last Sync/Query */
    int synced;          /* a Sync or Query ended the pipeline */
    int copy_ended;      /* CopyDone/CopyFail seen */
    int kinds;           /* the kinds of the requests counted: REQUEST_QUERY | REQUEST_SYNC */
} ClientRules;

/* The kinds of request (proxy/request_ends.py): a Query or FunctionCall is always
 * answered; a Sync is not when Postgres reads it inside a COPY FROM STDIN, which the
 * session learns later (its CopyInResponse), so the order of the two must be kept:
 * the fast paths count requests of one kind at a time. */
#define REQUEST_QUERY 1
#define REQUEST_SYNC 2

static inline uint32_t read_len(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Apply one whole frontend message of `type`. Returns 0, or -1 for what the session
 * handles on its own path: Terminate; a CopyDone/CopyFail outside COPY IN; a Query or
 * FunctionCall after an extended-protocol message with no Sync between, which Postgres
 * skips, with no ReadyForQuery, when one of those messages fails (Session._query_turn
 * waits for their replies to know). (Query/Parse are checked for triggers by the
 * caller before this.) */
static inline int client_rule(ClientRules *r, unsigned char type) {
    switch (type) {
    case 'Q':
        if (r->extended_open) return -1;
        r->requests++;
        r->kinds |= REQUEST_QUERY;
        r->extended_open = 0;
        r->synced = 1;
        break;
    case 'P': case 'B': case 'D': case 'E': case 'C':
        r->extended_open = 1;
        break;
    case 'S':
        if (r->copy_in) break;  /* Postgres ignores it inside a COPY */
        r->requests++;
        r->kinds |= REQUEST_SYNC;
        r->extended_open = 0;
        r->synced = 1;
        break;
    case 'F':
        if (r->extended_open) return -1;
        r->requests++;
        r->kinds |= REQUEST_QUERY;
        break;
    case 'c': case 'f':
        /* outside COPY IN (the client ended a COPY before the server said it began, or
         * a stray one): the session's own path matches it with its CopyInResponse */
        if (!r->copy_in) return -1;
        r->copy_in = 0;
        r->copy_ended = 1;
        break;
    case 'X':
        return -1;
    default:
        break;
    }
    return 0;
}

/* The statement/portal names a message of `type` refers to (body[0:n], after the
 * header): their offsets and lengths into `start`/`len` (at most 2, a Bind's portal
 * and statement). Returns how many; 0 for a type that names none; -1 when a name is
 * not terminated (the message is malformed: the framed path judges it). A Query
 * names the unnamed statement and portal (it drops them): one empty name. Must match
 * wire_scan.message_names. */
static inline int message_names(unsigned char type, const unsigned char *body, size_t n,
                                size_t start[2], size_t len[2]) {
    size_t at = 0;
    int count;
    switch (type) {
    case 'Q':
        start[0] = 0;
        len[0] = 0;
        return 1;
    case 'P': case 'E':
        count = 1;
        break;
    case 'B':
        count = 2;
        break;
    case 'D': case 'C':
        if (n < 1) return -1;
        at = 1;
        count = 1;
        break;
    default:
        return 0;
    }
    for (int k = 0; k < count; k++) {
        const unsigned char *nul = at < n ? memchr(body + at, 0, n - at) : NULL;
        if (!nul) return -1;
        start[k] = at;
        len[k] = (size_t)(nul - body) - at;
        at += len[k] + 1;
    }
    return count;
}

#endif
