# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The fast path of ``maglevx predict``: flow CSV scanning and output assembly.

:class:`FlowScanner` reads CSV lines ``proto,saddr,sport,daddr,dport`` from a
byte buffer into arrays. It accepts only lines the slow path in
``maglevx/predict.py`` would accept with the same values (ASCII, five fields,
a known protocol, a client address ``inet_pton()`` takes, a decimal port up to
65535), and stops at the first line it is not sure of, so that the slow path
decides that line - and so names the same line and field in its error.
Service lookup stays in Python: every distinct ``(proto, daddr, dport)`` text
gets a key id, resolved once.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy

cimport maglevx._cmaglev as cm

import numpy as np

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)

cdef extern from "<sys/socket.h>" nogil:
    int AF_INET
    int AF_INET6

# Why scan() stopped.
END = 0  # consumed the buffer
SLOW = 1  # the line at `stop` needs the slow path
FULL = 2  # the output arrays are full

cdef uint8_t _NOTHING[1]  # a valid pointer for empty buffers (NULL + 0 is UB)


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

    def __cinit__(self):
        self.capacity = 64
        self.table = <KeyEntry *>malloc(self.capacity * sizeof(KeyEntry))
        self.blob_cap = 4096
        self.blob = <uint8_t *>malloc(self.blob_cap)
        if self.table == NULL or self.blob == NULL:
            raise MemoryError()
        cdef Py_ssize_t i
        for i in range(self.capacity):
            self.table[i].id = -1
        self.nkeys = 0
        self.blob_len = 0
        self.keys = []

    def __dealloc__(self):
        free(self.table)
        free(self.blob)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = self.capacity * 2, i, j
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

    cdef int32_t _key(self, const uint8_t *k, Py_ssize_t n) except -2:
        cdef uint64_t h = _fnv(k, n)
        cdef Py_ssize_t j = <Py_ssize_t>(h & <uint64_t>(self.capacity - 1))
        cdef KeyEntry *e
        while self.table[j].id >= 0:
            e = &self.table[j]
            if e.hash == h and e.length == n and memcmp(self.blob + e.offset, k, n) == 0:
                return e.id
            j = (j + 1) & (self.capacity - 1)
        if self.blob_len + n > self.blob_cap:
            while self.blob_len + n > self.blob_cap:
                self.blob_cap *= 2
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
        text = (<const char *>k)[:n].decode("ascii")
        proto, rest = text[0], text[1:]
        daddr, dport = rest.split(",", 1)
        self.keys.append((("tcp", "udp", "sctp")[int(proto)], daddr, dport))
        if self.nkeys * 2 > self.capacity:
            self._grow()
        return <int32_t>(self.nkeys - 1)

    def scan(self, const uint8_t[::1] buf, Py_ssize_t pos, Py_ssize_t end,
             bint final, int64_t[::1] starts, int64_t[::1] ends,
             int32_t[::1] key_ids, uint32_t[::1] folds, uint16_t[::1] sports,
             uint8_t[::1] families):
        """Scan complete lines of ``buf[pos:end]`` into the arrays.

        A line ends at ``\\n``, ``\\r`` or ``\\r\\n`` (as Python's universal
        newlines); the last line needs no terminator only when *final*.
        Returns ``(status, n, stop, lines)``: status END, SLOW or FULL; *n*
        flows stored; *stop* the offset of the first line not consumed (for
        SLOW: the line the slow path must decide); *lines* the lines
        consumed (blank ones included, for line numbers).
        """
        cdef Py_ssize_t cap = starts.shape[0]
        cdef Py_ssize_t n = 0, lines = 0, ls, le, nxt, i, f, a, b
        # every output holds `cap` flows, and [pos, end) lies in the buffer:
        # checked here, once, so the loop below can trust them
        if (ends.shape[0] < cap or key_ids.shape[0] < cap
                or folds.shape[0] < cap or sports.shape[0] < cap
                or families.shape[0] < cap):
            raise ValueError("scan: the output arrays differ in length")
        if not 0 <= pos <= end <= buf.shape[0]:
            raise ValueError("scan: pos and end must satisfy 0 <= pos <= end <= len(buf)")
        cdef Py_ssize_t fs[5]
        cdef Py_ssize_t fe[5]
        cdef const uint8_t *p = &buf[0] if buf.shape[0] else NULL
        cdef uint8_t c
        cdef int status = END, proto, nf
        cdef char addr[64]
        cdef uint8_t kbuf[160]
        cdef uint8_t a6[16]
        cdef uint32_t port, fold
        cdef bint slow, v6
        while pos < end:
            # find the line end
            le = pos
            while le < end and p[le] != 10 and p[le] != 13:
                le += 1
            if le == end and not final:
                break  # incomplete line: wait for more input
            nxt = le
            if le < end:
                nxt = le + 1
                if p[le] == 13:
                    if le + 1 < end:
                        if p[le + 1] == 10:
                            nxt = le + 2
                    elif not final:
                        break  # "\r" at the end: "\r\n" may follow
            ls = pos
            # strip the line
            while ls < le and _ws(p[ls]):
                ls += 1
            while le > ls and _ws(p[le - 1]):
                le -= 1
            if ls == le:
                # blank: only when every byte was ASCII whitespace
                lines += 1
                pos = nxt
                continue
            if n == cap:
                status = FULL
                break
            # split into fields, refusing anything but printable ASCII
            slow = False
            nf = 0
            fs[0] = ls
            for i in range(ls, le):
                c = p[i]
                if c == 44:  # ','
                    if nf == 4:
                        slow = True
                        break
                    fe[nf] = i
                    nf += 1
                    fs[nf] = i + 1
                elif c >= 127 or (c < 32 and not _ws(c)):
                    slow = True
                    break
            if slow or nf != 4:
                status = SLOW
                break
            fe[4] = le
            for f in range(5):
                a = fs[f]
                b = fe[f]
                while a < b and _ws(p[a]):
                    a += 1
                while b > a and _ws(p[b - 1]):
                    b -= 1
                fs[f] = a
                fe[f] = b
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
                status = SLOW
                break
            # destination key: proto code, daddr, ',', dport (stripped text)
            a = fe[3] - fs[3]
            b = fe[4] - fs[4]
            if a + b + 2 > 160:
                status = SLOW
                break
            kbuf[0] = 48 + proto
            memcpy(kbuf + 1, p + fs[3], a)
            kbuf[1 + a] = 44
            memcpy(kbuf + 2 + a, p + fs[4], b)
            # client address via inet_pton(), as the slow path's socket.inet_pton()
            a = fs[1]
            b = fe[1]
            if b - a == 0 or b - a > 63:
                status = SLOW
                break
            v6 = False
            for i in range(a, b):
                if p[i] == 58:  # ':'
                    v6 = True
            memcpy(addr, p + a, b - a)
            addr[b - a] = 0
            if v6:
                if inet_pton(AF_INET6, addr, a6) != 1:
                    status = SLOW
                    break
                fold = cm.mx_fold6(cm.mx_be32(a6), cm.mx_be32(a6 + 4),
                                   cm.mx_be32(a6 + 8), cm.mx_be32(a6 + 12))
            else:
                if inet_pton(AF_INET, addr, a6) != 1:
                    status = SLOW
                    break
                fold = cm.mx_be32(a6)
            # client port: ASCII digits, at most 65535
            a = fs[2]
            b = fe[2]
            if a == b:
                status = SLOW
                break
            port = 0
            for i in range(a, b):
                c = p[i]
                if c < 48 or c > 57:
                    slow = True
                    break
                port = port * 10 + (c - 48)
                if port > 65535:
                    slow = True
                    break
            if slow:
                status = SLOW
                break
            key_ids[n] = self._key(kbuf, fe[3] - fs[3] + fe[4] - fs[4] + 2)
            starts[n] = ls
            ends[n] = le
            folds[n] = fold
            sports[n] = <uint16_t>port
            families[n] = 6 if v6 else 4
            n += 1
            lines += 1
            pos = nxt
        return status, n, pos, lines


def line_end(const uint8_t[::1] buf, Py_ssize_t pos, Py_ssize_t end):
    """``(content_end, next_line)`` of the line starting at *pos*."""
    cdef Py_ssize_t le = pos
    if not 0 <= pos <= end <= buf.shape[0]:
        raise ValueError("line_end: pos and end must satisfy 0 <= pos <= end <= len(buf)")
    while le < end and buf[le] != 10 and buf[le] != 13:
        le += 1
    if le < end and buf[le] == 13 and le + 1 < end and buf[le + 1] == 10:
        return le, le + 2
    return le, (le + 1 if le < end else le)


def assemble(const uint8_t[::1] buf, const int64_t[::1] starts,
             const int64_t[::1] ends, const int32_t[::1] ids,
             const uint8_t[::1] blob, const int64_t[::1] offsets):
    """Each line ``buf[starts[i]:ends[i]]`` + suffix *ids[i]* + ``\\n``.

    Suffix *k* is ``blob[offsets[k]:offsets[k + 1]]``.
    """
    cdef Py_ssize_t n = starts.shape[0], i, total = 0, ln, sl, o = 0
    cdef Py_ssize_t nsuffix = offsets.shape[0] - 1
    cdef int32_t k
    # everything the copy loop reads is checked first, with the GIL held
    if ends.shape[0] != n or ids.shape[0] != n:
        raise ValueError("assemble: starts, ends and ids differ in length")
    if nsuffix < 0 or offsets[0] < 0 or offsets[nsuffix] > blob.shape[0]:
        raise ValueError("assemble: offsets do not fit the blob")
    for i in range(nsuffix):
        if offsets[i] > offsets[i + 1]:
            raise ValueError("assemble: offsets are not ascending")
    for i in range(n):
        k = ids[i]
        if not 0 <= k < nsuffix:
            raise ValueError(f"assemble: suffix id {k} out of range")
        if not 0 <= starts[i] <= ends[i] <= buf.shape[0]:
            raise ValueError(f"assemble: line {i} lies outside the buffer")
        total += ends[i] - starts[i] + offsets[k + 1] - offsets[k] + 1
    out = bytearray(total)
    cdef uint8_t[::1] ov = out
    if total == 0:
        return out
    cdef uint8_t *op = &ov[0]
    cdef const uint8_t *bp = &buf[0] if buf.shape[0] else _NOTHING
    cdef const uint8_t *sp = &blob[0] if blob.shape[0] else NULL
    with nogil:
        for i in range(n):
            ln = ends[i] - starts[i]
            memcpy(op + o, bp + starts[i], ln)
            o += ln
            k = ids[i]
            sl = offsets[k + 1] - offsets[k]
            if sl:
                memcpy(op + o, sp + offsets[k], sl)
            o += sl
            op[o] = 10
            o += 1
    return out
