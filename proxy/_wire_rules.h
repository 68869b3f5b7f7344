/* What a frontend message means for the relay's bookkeeping: shared by the per-chunk
 * scan (_wire_scan.c) and the relay pump (_relay_pump.c), so both apply one set of
 * rules, the same as Session._account in Python (see proxy/wire_scan.py).
 */
#ifndef MLPROXY_WIRE_RULES_H
#define MLPROXY_WIRE_RULES_H

#include <stdint.h>

typedef struct {
    long long requests;  /* requests sent that will each get a ReadyForQuery */
    int copy_in;         /* in COPY IN: the server ignores Sync */
    int extended_open;   /* an extended-protocol message since the last Sync/Query */
    int synced;          /* a Sync or Query ended the pipeline */
    int copy_ended;      /* CopyDone/CopyFail seen */
} ClientRules;

static inline uint32_t read_len(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline unsigned char lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Apply one whole frontend message of `type`. Returns 0, or -1 for Terminate and for
 * a CopyDone/CopyFail outside COPY IN, which the session handles on its own path. (Query/Parse are checked for triggers by the
 * caller before this.) */
static inline int client_rule(ClientRules *r, unsigned char type) {
    switch (type) {
    case 'Q':
        r->requests++;
        r->extended_open = 0;
        r->synced = 1;
        break;
    case 'P': case 'B': case 'D': case 'E': case 'C':
        r->extended_open = 1;
        break;
    case 'S':
        if (!r->copy_in) r->requests++;
        r->extended_open = 0;
        r->synced = 1;
        break;
    case 'F':
        r->requests++;
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

#endif
