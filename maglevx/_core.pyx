# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrappers over the C core in csrc/ (see _twin.py for the same in Python)."""

from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport strlen
from cpython.unicode cimport PyUnicode_AsUTF8AndSize


cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)
    int AF_INET
    int AF_INET6

cimport maglevx._cmaglev as c

import numpy as np

PRIMES = tuple(c.mx_primes[i] for i in range(c.MX_NR_PRIMES))
HASH1_KEY = c.MX_HASH1_KEY
HASH2_KEY = c.MX_HASH2_KEY
SLOT_EMPTY = c.MX_SLOT_EMPTY
NONE = c.MX_NONE
MAX_DESTS = c.MX_MAX_DESTS
KERNEL_REFERENCE = c.MX_KERNEL_REFERENCE.decode()


cdef c.mx_params _params(uint32_t m, uint32_t word_size) except *:
    cdef c.mx_params p
    if c.mx_params_init(&p, m, word_size) != 0:
        raise ValueError(f"table size {m} / word size {word_size} not supported")
    return p


def hsiphash(int word_size, const uint8_t[::1] data, uint64_t k0, uint64_t k1):
    """The kernel's hsiphash() for a kernel of *word_size* bits (64 or 32)."""
    cdef const uint8_t *ptr = &data[0] if data.shape[0] else NULL
    if word_size == 32:
        return c.mx_hsiphash32(ptr, data.shape[0], <uint32_t>k0, <uint32_t>k1)
    return c.mx_hsiphash64(ptr, data.shape[0], k0, k1)


def tab_bits(uint32_t m):
    """IP_VS_MH_TAB_BITS for table size *m*."""
    return _params(m, 64).tab_bits


def hashkey(uint32_t word_size, uint32_t key, uint32_t fold, uint32_t port,
            uint32_t offset):
    """ip_vs_mh_hashkey(): hsiphash of v = offset + port + fold (u32)."""
    cdef c.mx_params p = _params(4093, word_size)
    return c.mx_hashkey(&p, key, fold, port, offset)


def slot(uint32_t m, uint32_t word_size, uint32_t fold, uint32_t port):
    """The slot a flow hashes to."""
    cdef c.mx_params p = _params(m, word_size)
    return c.mx_slot(&p, fold, port)


def build_table(uint32_t m, uint32_t word_size, folds, ports, weights):
    """ip_vs_mh_reassign(): the table of real server indices (list order).

    Raises ValueError when there are more real servers than slots.
    """
    cdef c.mx_params p = _params(m, word_size)
    cdef const uint32_t[::1] f = np.ascontiguousarray(folds, dtype=np.uint32)
    cdef const uint32_t[::1] po = np.ascontiguousarray(ports, dtype=np.uint32)
    cdef const uint32_t[::1] w = np.ascontiguousarray(weights, dtype=np.uint32)
    cdef uint32_t n = f.shape[0]
    if po.shape[0] != n or w.shape[0] != n:
        raise ValueError("folds, ports and weights differ in length")
    if n > m or n > c.MX_MAX_DESTS:
        raise ValueError(f"{n} real servers do not fit a table of {m} slots")
    table = np.empty(m, dtype=np.uint16)
    cdef uint16_t[::1] t = table
    cdef c.mx_dest_setup *ds = <c.mx_dest_setup *>malloc(
        max(n, 1) * sizeof(c.mx_dest_setup))
    if ds == NULL:
        raise MemoryError()
    cdef const uint32_t *fp = &f[0] if n else NULL
    cdef const uint32_t *pp = &po[0] if n else NULL
    cdef const uint32_t *wp = &w[0] if n else NULL
    cdef int rc
    with nogil:
        rc = c.mx_build_table(&p, n, fp, pp, wp, ds, &t[0])
    free(ds)
    if rc != 0:
        raise ValueError(f"{n} real servers do not fit a table of {m} slots")
    return table


def lookup(uint32_t m, uint32_t word_size, const uint16_t[::1] table,
           const uint8_t[::1] avail, bint fallback, uint32_t fold,
           uint32_t port):
    """ip_vs_mh_get() / ip_vs_mh_get_fallback(): real server index or NONE."""
    cdef c.mx_params p = _params(m, word_size)
    if table.shape[0] != m:
        raise ValueError("table size differs from m")
    if fallback:
        return c.mx_lookup_fallback(&p, &table[0], &avail[0] if avail.shape[0] else NULL, fold, port)
    return c.mx_lookup(&p, &table[0], &avail[0] if avail.shape[0] else NULL, fold, port)


cdef const uint8_t *_checked_avail(uint32_t m, const uint16_t[::1] table,
                                   const uint8_t[::1] avail) except? NULL:
    """The availability pointer, once the table only refers to servers in it."""
    if table.shape[0] != m:
        raise ValueError("table size differs from m")
    cdef int32_t top = -1
    cdef size_t i
    for i in range(m):
        if table[i] != c.MX_SLOT_EMPTY and table[i] > top:
            top = table[i]
    if top >= <int32_t>avail.shape[0]:
        raise ValueError("table refers to a real server beyond avail")
    return &avail[0] if avail.shape[0] else NULL


cdef const uint16_t *_ports_ptr(object ports, size_t n) except? NULL:
    """The hashed ports, or NULL for None (no port hashed)."""
    if ports is None:
        return NULL
    cdef const uint16_t[::1] pv = ports
    if <size_t>pv.shape[0] != n:
        raise ValueError("folds and ports differ in length")
    return &pv[0] if n else NULL


cdef uint32_t[::1] _out_array(object out, size_t n) except *:
    if <size_t>out.shape[0] != n:
        raise ValueError("out differs in length from the flows")
    return out


def lookup_many(uint32_t m, uint32_t word_size, const uint16_t[::1] table,
                const uint8_t[::1] avail, bint fallback,
                const uint32_t[::1] folds, ports, out=None):
    """lookup() over arrays; releases the GIL while it runs.

    *ports*: uint16 hashed ports, or None when no port is hashed.
    *out*: uint32 array to write into (returned), else a new one.
    """
    return Scheduler(m, word_size, table, avail, fallback).lookup_many(
        folds, ports, out)


def lookup_many6(uint32_t m, uint32_t word_size, const uint16_t[::1] table,
                 const uint8_t[::1] avail, bint fallback, addrs, ports,
                 out=None):
    """lookup_many() for IPv6 client addresses, folded on the way.

    *addrs*: shape (n, 4) uint32 numeric words, most significant first, or
    shape (n, 16) uint8 bytes in network order; C-contiguous.
    *out*: as for lookup_many().
    """
    return Scheduler(m, word_size, table, avail, fallback).lookup_many6(
        addrs, ports, out)


cdef class Scheduler:
    """A table and its availability, checked once, for any number of lookups.

    The arrays are held, not copied: do not change them while it is in use.
    """

    cdef c.mx_params p
    cdef const uint16_t[::1] table
    cdef const uint8_t[::1] avail
    cdef const uint8_t *avail_ptr
    cdef bint fallback

    def __init__(self, uint32_t m, uint32_t word_size,
                 const uint16_t[::1] table, const uint8_t[::1] avail,
                 bint fallback):
        self.p = _params(m, word_size)
        self.avail_ptr = _checked_avail(m, table, avail)
        self.table = table
        self.avail = avail
        self.fallback = fallback

    def lookup(self, uint32_t fold, uint32_t port):
        """As module-level lookup(): real server index or NONE."""
        if self.fallback:
            return c.mx_lookup_fallback(&self.p, &self.table[0], self.avail_ptr,
                                        fold, port)
        return c.mx_lookup(&self.p, &self.table[0], self.avail_ptr, fold, port)

    def lookup_text(self, int family, str text, uint32_t port):
        """lookup() for a client address as text, as inet_pton() reads it.

        Returns -1 when *text* is not an IPv*family* address to inet_pton().
        """
        cdef Py_ssize_t size
        cdef const char *s
        cdef uint8_t a[16]
        cdef uint32_t fold
        try:
            s = PyUnicode_AsUTF8AndSize(text, &size)
        except UnicodeError:  # lone surrogates
            return -1
        if <size_t>size != strlen(s):  # an embedded NUL
            return -1
        if family == 4:
            if inet_pton(AF_INET, s, a) != 1:
                return -1
            fold = c.mx_be32(a)
        else:
            if inet_pton(AF_INET6, s, a) != 1:
                return -1
            fold = c.mx_fold6(c.mx_be32(a), c.mx_be32(a + 4),
                              c.mx_be32(a + 8), c.mx_be32(a + 12))
        return self.lookup(fold, port)

    def lookup_many(self, const uint32_t[::1] folds, ports, out=None):
        """Module-level lookup_many() with this table and availability."""
        cdef size_t n = folds.shape[0]
        cdef const uint16_t *pp = _ports_ptr(ports, n)
        if out is None:
            out = np.empty(n, dtype=np.uint32)
        cdef uint32_t[::1] o = _out_array(out, n)
        if n == 0:
            return out
        with nogil:
            c.mx_bulk_lookup(&self.p, &self.table[0], self.avail_ptr,
                             self.fallback, n, &folds[0], pp, &o[0])
        return out

    def lookup_many6(self, addrs, ports, out=None):
        """Module-level lookup_many6() with this table and availability."""
        cdef const uint32_t[:, ::1] words
        cdef const uint8_t[:, ::1] raw
        cdef const uint32_t *wp = NULL
        cdef const uint8_t *bp = NULL
        cdef size_t n
        if addrs.dtype == np.uint8:
            raw = addrs
            if raw.shape[1] != 16:
                raise ValueError("IPv6 addresses as bytes must have shape (n, 16)")
            n = raw.shape[0]
            if n:
                bp = &raw[0, 0]
        else:
            words = addrs
            if words.shape[1] != 4:
                raise ValueError("IPv6 addresses as words must have shape (n, 4)")
            n = words.shape[0]
            if n:
                wp = &words[0, 0]
        cdef const uint16_t *pp = _ports_ptr(ports, n)
        if out is None:
            out = np.empty(n, dtype=np.uint32)
        cdef uint32_t[::1] o = _out_array(out, n)
        if n == 0:
            return out
        with nogil:
            c.mx_bulk_lookup6(&self.p, &self.table[0], self.avail_ptr,
                              self.fallback, n, wp, bp, pp, &o[0])
        return out
