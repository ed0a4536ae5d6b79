# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast path of ``maglevx predict``: flow CSV lines parsed, looked up, written.

:class:`FlowScanner` reads CSV lines ``proto,saddr,sport,daddr,dport`` from a
byte buffer. It accepts only lines the slow path in
``maglevx/predict.py`` would accept with the same values (ASCII, five fields,
a known protocol, a client address ``inet_pton()`` takes, a decimal port up to
65535), and stops at the first line it is not sure of, so that the slow path
decides that line - and so names the same line and field in its error.
Service lookup stays in Python: every distinct ``(proto, daddr, dport)`` text
gets a key id, resolved once.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memset

cimport maglevx._cmaglev as cm

import numpy as np

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)

cdef extern from "_fastcsv_split.h" nogil:
    bint fc_split(const uint8_t *p, Py_ssize_t ls, Py_ssize_t le,
                  Py_ssize_t *fs, Py_ssize_t *fe)

cdef extern from "<sys/socket.h>" nogil:
    int AF_INET
    int AF_INET6

# Why scan() or run() stopped.
cdef enum:
    _END = 0  # consumed the buffer
    _SLOW = 1  # the line at `stop` needs the slow path
    _FULL = 2  # the output arrays (or run()'s output buffer) are full
    _NEWKEY = 3  # run(): the line at `stop` goes to a key with no route yet
    _FTPDATA = 20  # client port of FTP data: never scheduled (decision.FTPDATA)

END = _END
SLOW = _SLOW
FULL = _FULL
NEWKEY = _NEWKEY

cdef uint8_t _NOTHING[1]  # a valid pointer for empty buffers (NULL + 0 is UB)
cdef const uint8_t *_NO_DESTINATION = <const uint8_t *>b",,"


cdef struct KeyEntry:
    uint64_t hash
    int64_t offset
    int32_t length
    int32_t id


cdef inline bint _ws(uint8_t c) nogil:
    # the ASCII characters str.strip() removes
    return c == 32 or (9 <= c <= 13) or (28 <= c <= 31)


cdef inline uint64_t _fnv(const uint8_t *p, Py_ssize_t n) nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    return h


cdef inline bint _next_line(const uint8_t *p, Py_ssize_t pos, Py_ssize_t end,
                            bint final, Py_ssize_t *le, Py_ssize_t *nxt) noexcept nogil:
    """The line at *pos*: its content end (*le*) and the next line's start (*nxt*).

    Lines end at "\\n", "\\r\\n" or "\\r". False: the line may go on in the
    next block (no end yet, or a "\\r" last that a "\\n" may follow), unless
    *final*.
    """
    cdef const uint8_t *hit = <const uint8_t *>memchr(p + pos, 10, end - pos)
    cdef Py_ssize_t e = hit - p if hit != NULL else end
    hit = <const uint8_t *>memchr(p + pos, 13, e - pos)
    if hit != NULL:
        e = hit - p
    if e == end and not final:
        return False
    le[0] = e
    nxt[0] = e
    if e < end:
        nxt[0] = e + 1
        if p[e] == 13:
            if e + 1 < end:
                if p[e + 1] == 10:
                    nxt[0] = e + 2
            elif not final:
                return False
    return True


cdef inline Py_ssize_t _strip(const uint8_t *p, Py_ssize_t ls,
                              Py_ssize_t *le) noexcept nogil:
    """Strip ASCII whitespace from ``p[ls:le]``: the new start (*le* moves in)."""
    while ls < le[0] and _ws(p[ls]):
        ls += 1
    while le[0] > ls and _ws(p[le[0] - 1]):
        le[0] -= 1
    return ls


cdef struct LineInfo:
    int proto  # 0 tcp, 1 udp, 2 sctp
    bint v6
    uint32_t fold
    uint32_t port
    Py_ssize_t klen
    uint8_t key[160]  # destination key: proto code, daddr, ',', dport


cdef inline bint _ipv4(const uint8_t *s, Py_ssize_t n, uint32_t *out) noexcept nogil:
    """Dotted-quad *s* as inet_pton(AF_INET) reads it; 0: ask inet_pton().

    Accepts exactly glibc's inet_pton4() forms: four decimal octets up to
    255, no leading zero. Whatever it refuses goes to inet_pton() itself.
    """
    cdef uint32_t v = 0, octet = 0
    cdef int digits = 0, dots = 0
    cdef Py_ssize_t i
    cdef uint8_t c
    for i in range(n):
        c = s[i]
        if 48 <= c <= 57:
            if digits and octet == 0:
                return 0  # a leading zero
            octet = octet * 10 + (c - 48)
            if octet > 255:
                return 0
            digits += 1
        elif c == 46 and digits and dots < 3:  # '.'
            v = (v << 8) | octet
            octet = 0
            digits = 0
            dots += 1
        else:
            return 0
    if not digits or dots != 3:
        return 0
    out[0] = (v << 8) | octet
    return 1


cdef bint _parse_line(const uint8_t *p, Py_ssize_t ls, Py_ssize_t le,
                      LineInfo *L) noexcept nogil:
    """Parse the stripped, non-blank line ``p[ls:le]``; 0: the slow path decides."""
    cdef Py_ssize_t fs[5]
    cdef Py_ssize_t fe[5]
    cdef Py_ssize_t i, f, a, b
    cdef int proto
    cdef uint8_t c
    cdef char addr[64]
    cdef uint8_t a6[16]
    cdef uint32_t port
    cdef bint v6
    # split into fields, refusing anything but printable ASCII
    if not fc_split(p, ls, le, fs, fe):
        return 0
    v6 = memchr(p + fs[1], 58, fe[1] - fs[1]) != NULL  # ':': an IPv6 client
    for f in range(5):
        fs[f] = _strip(p, fs[f], &fe[f])
    # proto, case-insensitive
    a = fs[0]
    b = fe[0]
    proto = -1
    if b - a == 3:
        if (p[a] | 32) == 116 and (p[a + 1] | 32) == 99 and (p[a + 2] | 32) == 112:
            proto = 0  # tcp
        elif (p[a] | 32) == 117 and (p[a + 1] | 32) == 100 and (p[a + 2] | 32) == 112:
            proto = 1  # udp
    elif b - a == 4:
        if ((p[a] | 32) == 115 and (p[a + 1] | 32) == 99
                and (p[a + 2] | 32) == 116 and (p[a + 3] | 32) == 112):
            proto = 2  # sctp
    if proto < 0:
        return 0
    # destination key: proto code, daddr, ',', dport (stripped text)
    a = fe[3] - fs[3]
    b = fe[4] - fs[4]
    if a + b + 2 > 160:
        return 0
    L.key[0] = 48 + proto
    memcpy(L.key + 1, p + fs[3], a)
    L.key[1 + a] = 44
    memcpy(L.key + 2 + a, p + fs[4], b)
    L.klen = a + b + 2
    # client address via inet_pton(), as the slow path's socket.inet_pton()
    a = fs[1]
    b = fe[1]
    if b - a == 0 or b - a > 63:
        return 0
    if v6 or not _ipv4(p + a, b - a, &L.fold):
        memcpy(addr, p + a, b - a)
        addr[b - a] = 0
        if inet_pton(AF_INET6 if v6 else AF_INET, addr, a6) != 1:
            return 0
        L.fold = cm.mx_be32(a6)
        if v6:
            L.fold = cm.mx_fold6(L.fold, cm.mx_be32(a6 + 4),
                                 cm.mx_be32(a6 + 8), cm.mx_be32(a6 + 12))
    # client port: ASCII digits, at most 65535
    a = fs[2]
    b = fe[2]
    if a == b:
        return 0
    port = 0
    for i in range(a, b):
        c = p[i]
        if c < 48 or c > 57:
            return 0
        port = port * 10 + (c - 48)
        if port > 65535:
            return 0
    L.proto = proto
    L.v6 = v6
    L.port = port
    return 1


cdef struct Route:
    # what a destination key leads to, set by FlowScanner.set_route()
    int kind  # _ROUTE_*
    int family  # of the service: 4 or 6
    bint hash_port
    bint fallback
    cm.mx_params params
    cm.mx_fastmod mod  # % params.m without a division (mx_bulk.h)
    const uint16_t *table
    const uint8_t *avail
    const uint8_t *suffixes  # ",raddr,rport" per real server, concatenated
    const int32_t *offsets  # nservers + 1 offsets into suffixes
    uint32_t nservers


cdef enum:
    _ROUTE_UNSET = 0  # not resolved yet: run() stops with NEWKEY
    _ROUTE_NONE = 1  # no virtual service: ",,", counted
    _ROUTE_MH = 2  # an mh service: looked up
    _ROUTE_SLOW = 3  # the slow path decides (and raises)

ROUTE_NONE = _ROUTE_NONE
ROUTE_MH = _ROUTE_MH
ROUTE_SLOW = _ROUTE_SLOW


cdef class FlowScanner:
    """Scans flow CSV lines into arrays; remembers distinct destinations.

    ``keys`` lists, per key id, ``(proto, daddr, dport)`` as stripped text.
    """

    cdef KeyEntry *table
    cdef Py_ssize_t capacity
    cdef Py_ssize_t nkeys
    cdef uint8_t *blob
    cdef Py_ssize_t blob_len
    cdef Py_ssize_t blob_cap
    cdef public list keys
    cdef Route *routes
    cdef Py_ssize_t nroutes
    cdef list _alive  # what routes point into

    def __cinit__(self):
        # C fields start at 0 and NULL: the first table, blob and routes grow
        self._grow()
        self.keys = []
        self._alive = []

    def __dealloc__(self):
        free(self.table)
        free(self.blob)
        free(self.routes)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = max(64, self.capacity * 2), i, j
        cdef KeyEntry *t = <KeyEntry *>malloc(cap * sizeof(KeyEntry))
        if t == NULL:
            raise MemoryError()
        for i in range(cap):
            t[i].id = -1
        for i in range(self.capacity):
            if self.table[i].id >= 0:
                j = <Py_ssize_t>(self.table[i].hash & <uint64_t>(cap - 1))
                while t[j].id >= 0:
                    j = (j + 1) & (cap - 1)
                t[j] = self.table[i]
        free(self.table)
        self.table = t
        self.capacity = cap
        return 0

    cdef Py_ssize_t _slot(self, const uint8_t *k, Py_ssize_t n, uint64_t h) noexcept nogil:
        # the key's slot in the table: its entry, or the free one it would take
        cdef Py_ssize_t j = <Py_ssize_t>(h & <uint64_t>(self.capacity - 1))
        cdef KeyEntry *e
        while self.table[j].id >= 0:
            e = &self.table[j]
            if e.hash == h and e.length == n and memcmp(self.blob + e.offset, k, n) == 0:
                return j
            j = (j + 1) & (self.capacity - 1)
        return j

    cdef int32_t _key(self, const uint8_t *k, Py_ssize_t n) except -2:
        cdef uint64_t h = _fnv(k, n)
        cdef Py_ssize_t j = self._slot(k, n, h)
        if self.table[j].id >= 0:
            return self.table[j].id
        if self.blob_len + n > self.blob_cap:
            while self.blob_len + n > self.blob_cap:
                self.blob_cap = max(4096, self.blob_cap * 2)
            self.blob = <uint8_t *>realloc(self.blob, self.blob_cap)
            if self.blob == NULL:
                raise MemoryError()
        memcpy(self.blob + self.blob_len, k, n)
        self.table[j].hash = h
        self.table[j].offset = self.blob_len
        self.table[j].length = <int32_t>n
        self.table[j].id = <int32_t>self.nkeys
        self.blob_len += n
        self.nkeys += 1
        daddr, dport = (<const char *>k)[1:n].decode("ascii").split(",", 1)
        self.keys.append((("tcp", "udp", "sctp")[k[0] - 48], daddr, dport))
        if self.nkeys * 2 > self.capacity:
            self._grow()
        return <int32_t>(self.nkeys - 1)

    def scan(self, const uint8_t[::1] buf, Py_ssize_t pos, Py_ssize_t end,
             int32_t[::1] key_ids, uint32_t[::1] folds, uint16_t[::1] sports):
        """Scan the lines of ``buf[pos:end]`` into the arrays: key id, fold, port.

        A line ends at ``\\n``, ``\\r`` or ``\\r\\n`` (as Python's universal
        newlines), or at *end*.
        Returns ``(status, n, stop, lines)``: status END, SLOW or FULL; *n*
        flows stored; *stop* the offset of the first line not consumed (for
        SLOW: the line the slow path must decide); *lines* the lines
        consumed (blank ones included, for line numbers).
        """
        cdef Py_ssize_t cap = key_ids.shape[0]
        cdef Py_ssize_t n = 0, lines = 0, ls, le, nxt
        # every output holds `cap` flows, and [pos, end) lies in the buffer:
        # checked here, once, so the loop below can trust them
        if folds.shape[0] < cap or sports.shape[0] < cap:
            raise ValueError("scan: the output arrays differ in length")
        if not 0 <= pos <= end <= buf.shape[0]:
            raise ValueError("scan: pos and end must satisfy 0 <= pos <= end <= len(buf)")
        cdef const uint8_t *p = &buf[0] if buf.shape[0] else NULL
        cdef int status = END
        cdef LineInfo L
        while pos < end:
            _next_line(p, pos, end, True, &le, &nxt)
            ls = _strip(p, pos, &le)
            if ls == le:
                # blank: only when every byte was ASCII whitespace
                lines += 1
                pos = nxt
                continue
            if n == cap:
                status = FULL
                break
            if not _parse_line(p, ls, le, &L):
                status = SLOW
                break
            key_ids[n] = self._key(L.key, L.klen)
            folds[n] = L.fold
            sports[n] = <uint16_t>L.port
            n += 1
            lines += 1
            pos = nxt
        return status, n, pos, lines

    def set_route(self, Py_ssize_t key_id, int kind, int family=0,
                  bint hash_port=False, scheduler=None, suffixes=()):
        """Say what key *key_id* leads to, for run().

        *kind*: ROUTE_NONE (no virtual service), ROUTE_SLOW (the slow path
        decides), or ROUTE_MH with the service's *family*, whether it hashes
        the client port, its core ``Scheduler`` and the ``,raddr,rport``
        bytes of each of its real servers (in the scheduler's index order).
        """
        cdef Route r
        cdef Route *grown
        cdef Py_ssize_t i, cap
        cdef const uint16_t[::1] tv
        cdef const uint8_t[::1] av
        cdef const uint8_t[::1] sv
        cdef const int32_t[::1] ov
        if not 0 <= key_id < self.nkeys:
            raise ValueError(f"set_route: no key {key_id}")
        memset(&r, 0, sizeof(r))
        r.kind = kind
        r.family = family
        r.hash_port = hash_port
        if kind == _ROUTE_MH:
            if family not in (4, 6):
                raise ValueError("set_route: family must be 4 or 6")
            t = np.ascontiguousarray(scheduler.table, np.uint16)
            a = np.ascontiguousarray(scheduler.avail, np.uint8)
            parts = [bytes(x) for x in suffixes]
            if len(parts) != a.shape[0]:
                raise ValueError("set_route: one suffix per real server")
            if t.ndim != 1 or t.shape[0] != scheduler.m or t.shape[0] == 0:
                raise ValueError("set_route: the table has the wrong size")
            used = t[t != cm.MX_SLOT_EMPTY]
            if used.size and int(used.max()) >= a.shape[0]:
                raise ValueError("set_route: table refers beyond avail")
            blob = np.frombuffer(b"".join(parts) or b"\0", np.uint8)
            offs = np.zeros(len(parts) + 1, np.int32)
            offs[1:] = np.cumsum([len(x) for x in parts], dtype=np.int64)
            if cm.mx_params_init(&r.params, scheduler.m, scheduler.word_size) != 0:
                raise ValueError("set_route: table size / word size not supported")
            cm.mx_fastmod_init(&r.mod, r.params.m)
            if scheduler.byte_order == "big":
                r.params.byte_order = cm.MX_BIG_ENDIAN
            key = scheduler.hash_key
            if key is not None:
                if not isinstance(key, bytes) or len(key) != cm.MX_KEY_SIZE:
                    raise ValueError("set_route: hash_key must be 16 bytes")
                cm.mx_params_set_key(&r.params, key)
            if a.shape[0] == 0:
                a = np.zeros(1, np.uint8)  # a table of empty slots reads none
            tv = t
            av = a
            sv = blob
            ov = offs
            r.table = &tv[0]
            r.avail = &av[0]
            r.suffixes = &sv[0]
            r.offsets = &ov[0]
            r.nservers = <uint32_t>len(parts)
            r.fallback = bool(scheduler.fallback)
            self._alive.append((t, a, blob, offs))
        elif kind not in (_ROUTE_NONE, _ROUTE_SLOW):
            raise ValueError(f"set_route: unknown kind {kind}")
        if key_id >= self.nroutes:
            cap = max(64, self.nroutes)
            while cap <= key_id:
                cap *= 2
            grown = <Route *>realloc(self.routes, cap * sizeof(Route))
            if grown == NULL:
                raise MemoryError()
            self.routes = grown
            for i in range(self.nroutes, cap):
                self.routes[i].kind = _ROUTE_UNSET
            self.nroutes = cap
        self.routes[key_id] = r

    def run(self, const uint8_t[::1] buf, Py_ssize_t pos, Py_ssize_t end,
            bint final, uint8_t[::1] out, Py_ssize_t max_line):
        """Predict the complete lines of ``buf[pos:end]`` into *out*, GIL released.

        A line of more than *max_line* bytes, line end included, is left to
        the slow path (which refuses it).
        Each line the scanner accepts, to a destination with a route, is
        written stripped, with ``,raddr,rport`` and ``\\n``.
        Reads the keys and routes only: safe in several threads at once
        while nobody calls scan() or set_route().
        Returns ``(status, stop, lines, flows, no_service, written)``:
        status END, SLOW (the line at *stop* needs the slow path), FULL
        (*out* has no room for it) or NEWKEY (its destination needs a
        route: scan() it, then set_route()).
        """
        if not 0 <= pos <= end <= buf.shape[0]:
            raise ValueError("run: pos and end must satisfy 0 <= pos <= end <= len(buf)")
        cdef const uint8_t *p = &buf[0] if buf.shape[0] else _NOTHING
        cdef uint8_t *op = &out[0] if out.shape[0] else <uint8_t *>_NOTHING
        cdef Py_ssize_t ocap = out.shape[0], o = 0
        cdef Py_ssize_t lines = 0, flows = 0, none = 0
        cdef Py_ssize_t ls, le, nxt, j, need, sl
        cdef int status = _END
        cdef LineInfo L
        cdef Route *r
        cdef uint32_t d, port
        cdef const uint8_t *suffix
        cdef int32_t kid, last_kid = -1
        cdef uint8_t last_key[160]
        cdef Py_ssize_t last_klen = 0
        with nogil:
            while pos < end:
                if not _next_line(p, pos, end, final, &le, &nxt):
                    break  # incomplete line: wait for more input
                if nxt - pos > max_line:
                    status = _SLOW
                    break
                ls = _strip(p, pos, &le)
                if ls == le:
                    lines += 1
                    pos = nxt
                    continue
                if not _parse_line(p, ls, le, &L):
                    status = _SLOW
                    break
                if L.klen == last_klen and memcmp(L.key, last_key, L.klen) == 0:
                    kid = last_kid  # flows to one service often come in runs
                else:
                    j = self._slot(L.key, L.klen, _fnv(L.key, L.klen))
                    kid = self.table[j].id
                    last_kid = kid
                    last_klen = L.klen
                    memcpy(last_key, L.key, L.klen)
                if kid < 0 or kid >= self.nroutes or self.routes[kid].kind == _ROUTE_UNSET:
                    status = _NEWKEY
                    break
                r = &self.routes[kid]
                if r.kind == _ROUTE_SLOW or (r.kind == _ROUTE_MH
                                            and r.family != (6 if L.v6 else 4)):
                    status = _SLOW
                    break
                d = cm.MX_NONE
                if r.kind == _ROUTE_MH and L.port != _FTPDATA:
                    # mx_lookup() / mx_lookup_fallback(), the first probe's
                    # remainder by multiply (exact: mx_bulk.h)
                    port = L.port if r.hash_port else 0
                    d = r.table[cm.mx_fastmod_mod(&r.mod, cm.mx_hash(
                        &r.params, cm.MX_H1, L.fold, port, 0))]
                    if d == cm.MX_SLOT_EMPTY:
                        d = cm.MX_NONE
                    elif not r.avail[d]:
                        d = cm.MX_NONE
                        if r.fallback:
                            d = cm.mx_lookup_fallback(&r.params, r.table, r.avail,
                                                      L.fold, port)
                if d == cm.MX_NONE or d >= r.nservers:
                    suffix = _NO_DESTINATION
                    sl = 2
                else:
                    suffix = r.suffixes + r.offsets[d]
                    sl = r.offsets[d + 1] - r.offsets[d]
                need = (le - ls) + sl + 1
                if need > ocap - o:
                    status = _FULL
                    break
                memcpy(op + o, p + ls, le - ls)
                o += le - ls
                memcpy(op + o, suffix, sl)
                o += sl
                op[o] = 10
                o += 1
                if r.kind == _ROUTE_NONE:
                    none += 1
                flows += 1
                lines += 1
                pos = nxt
        return status, pos, lines, flows, none, o


def line_end(const uint8_t[::1] buf, Py_ssize_t pos, Py_ssize_t end):
    """``(content_end, next_line)`` of the line starting at *pos*."""
    cdef Py_ssize_t le = pos, nxt = pos
    if not 0 <= pos <= end <= buf.shape[0]:
        raise ValueError("line_end: pos and end must satisfy 0 <= pos <= end <= len(buf)")
    if pos < end:
        _next_line(&buf[0], pos, end, True, &le, &nxt)
    return le, nxt

