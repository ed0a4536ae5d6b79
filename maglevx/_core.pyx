# cython: language_level=3, boundscheck=True, wraparound=False
"""Thin wrappers over the C core in csrc/ (see _twin.py for the same in Python).

Every function here checks the buffers it is given (through typed
memoryviews, which look at the real buffer, not at Python attributes)
before it releases the GIL. A :class:`Scheduler` owns read-only copies of
its table and availability, so no caller can change them under a lookup.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, strlen
from cpython.unicode cimport PyUnicode_AsUTF8AndSize


cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)
    int AF_INET
    int AF_INET6

cimport maglevx._cmaglev as c

from functools import partial

import numpy as np

PRIMES = tuple(c.mx_primes[i] for i in range(c.MX_NR_PRIMES))
HASH1_KEY = c.MX_HASH1_KEY
HASH2_KEY = c.MX_HASH2_KEY
SLOT_EMPTY = c.MX_SLOT_EMPTY
NONE = c.MX_NONE
MAX_DESTS = c.MX_MAX_DESTS
KERNEL_REFERENCE = c.MX_KERNEL_REFERENCE.decode()

cdef uint8_t _EMPTY_INPUT[1]


cdef c.mx_params _params(uint32_t m, uint32_t word_size,
                        object byte_order="little",
                        object hash_key=None) except *:
    """mx_params for a director: table size, word size, byte order, keys.

    *byte_order*: "little" or "big" (the director's CPU). *hash_key*: None
    for the kernel's fixed keys, or the module's 16-byte secret key
    (mx_params_set_key(); layout in kmod/README.md).
    """
    cdef c.mx_params p
    if c.mx_params_init(&p, m, word_size) != 0:
        raise ValueError(f"table size {m} / word size {word_size} not supported")
    if byte_order == "big":
        p.byte_order = c.MX_BIG_ENDIAN
    elif byte_order != "little":
        raise ValueError(f"byte order {byte_order!r} is not 'little' or 'big'")
    if hash_key is not None:
        if not isinstance(hash_key, bytes) or len(hash_key) != c.MX_KEY_SIZE:
            raise ValueError("hash_key must be 16 bytes")
        c.mx_params_set_key(&p, <const uint8_t *><const char *>hash_key)
    return p


def hsiphash(int word_size, const uint8_t[::1] data, uint64_t k0, uint64_t k1):
    """The kernel's hsiphash() for a kernel of *word_size* bits (64 or 32)."""
    # an empty buffer still gets a valid pointer: NULL + 0 is undefined
    cdef const uint8_t *ptr = &data[0] if data.shape[0] else _EMPTY_INPUT
    if word_size == 32:
        return c.mx_hsiphash32(ptr, data.shape[0], <uint32_t>k0, <uint32_t>k1)
    if word_size != 64:
        raise ValueError(f"word size {word_size} is not 64 or 32")
    return c.mx_hsiphash64(ptr, data.shape[0], k0, k1)


def tab_bits(uint32_t m):
    """IP_VS_MH_TAB_BITS for table size *m*."""
    return _params(m, 64).tab_bits


def hashkey(uint32_t word_size, uint32_t key, uint32_t fold, uint32_t port,
            uint32_t offset, *, byte_order="little", hash_key=None):
    """ip_vs_mh_hashkey(): hsiphash of v = offset + port + fold (u32).

    *key*: HASH1_KEY or HASH2_KEY, which of the two hashes; its key words
    come from *hash_key* (None: the kernel's). *byte_order*: the director's
    CPU ("little" or "big"); the kernel hashes v's bytes as it stores them.
    """
    if key != c.MX_HASH1_KEY and key != c.MX_HASH2_KEY:
        raise ValueError(f"key {key} is not HASH1_KEY or HASH2_KEY")
    cdef c.mx_params p = _params(4093, word_size, byte_order, hash_key)
    return c.mx_hashkey(&p, key, fold, port, offset)


def slot(uint32_t m, uint32_t word_size, uint32_t fold, uint32_t port, *,
         byte_order="little", hash_key=None):
    """The slot a flow hashes to (*byte_order*, *hash_key* as for hashkey())."""
    cdef c.mx_params p = _params(m, word_size, byte_order, hash_key)
    return c.mx_slot(&p, fold, port)


def quantize(uint32_t m, weights):
    """The kernel's weight quantization: (gcd, rshift, turns per server).

    turns = (weight / gcd) >> rshift, or 1 for a non-zero weight that
    shifts to 0; rshift keeps the largest weight within IP_VS_MH_TAB_BITS.
    """
    cdef c.mx_params p = _params(m, 64)
    cdef const uint32_t[::1] w = np.ascontiguousarray(weights, dtype=np.uint32)
    cdef uint32_t n = w.shape[0]
    cdef const uint32_t *wp = &w[0] if n else NULL
    cdef uint32_t g = c.mx_gcd_weight(wp, n)
    if g < 1:
        return 0, 0, [0] * n
    cdef uint32_t rshift = c.mx_shift_weight(&p, wp, n, g)
    cdef uint32_t i
    turns = [((w[i] // g) >> rshift) or (1 if w[i] else 0) for i in range(n)]
    return g, rshift, turns


def build_table(uint32_t m, uint32_t word_size, folds, ports, weights, *,
                byte_order="little", hash_key=None):
    """ip_vs_mh_reassign(): the table of real server indices (list order).

    Returns a read-only uint16 array of *m* slots. Raises ValueError when
    there are more real servers than slots (the kernel keeps its old table).
    *byte_order* and *hash_key* as for hashkey().
    """
    cdef c.mx_params p = _params(m, word_size, byte_order, hash_key)
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
    cdef uint8_t[::1] ds = np.empty(max(n, 1) * sizeof(c.mx_dest_setup), np.uint8)
    cdef const uint32_t *fp = &f[0] if n else NULL
    cdef const uint32_t *pp = &po[0] if n else NULL
    cdef const uint32_t *wp = &w[0] if n else NULL
    with nogil:  # cannot fail: n was checked above
        c.mx_build_table(&p, n, fp, pp, wp, <c.mx_dest_setup *>&ds[0], &t[0])
    table.flags.writeable = False
    return table


cdef inline bint _pton(int af, str text, uint8_t *a) except -1:
    """inet_pton() of *text* into *a*; False where inet_pton() refuses it."""
    cdef Py_ssize_t size
    cdef const char *s
    try:
        s = PyUnicode_AsUTF8AndSize(text, &size)
    except UnicodeError:  # lone surrogates
        return False
    # an embedded NUL would end the text early
    return <size_t>size == strlen(s) and inet_pton(af, s, a) == 1


def parse_addresses(int family, texts):
    """Client addresses as text -> what Scheduler.lookup_many* take.

    IPv4: uint32 array (numeric); IPv6: (n, 16) uint8 array (network order).
    Returns (array, index of the first entry inet_pton() refuses or -1).
    """
    cdef Py_ssize_t n = len(texts), i
    cdef uint8_t a[16]
    cdef uint32_t[::1] o4
    cdef uint8_t[:, ::1] o6
    if family == 4:
        out = o4 = np.empty(n, dtype=np.uint32)
    elif family == 6:
        out = o6 = np.empty((n, 16), dtype=np.uint8)
    else:
        raise ValueError(f"family {family} is not 4 or 6")
    cdef int af = AF_INET if family == 4 else AF_INET6
    for i in range(n):
        text = texts[i]
        if type(text) is not str or not _pton(af, text, a):
            return out, i
        if family == 4:
            o4[i] = c.mx_be32(a)
        else:
            memcpy(&o6[i, 0], a, 16)
    return out, -1


cdef class Scheduler:
    """A table and its availability, checked once, for any number of lookups.

    Holds read-only copies of *table* (uint16[m]: per slot, a real server
    index or SLOT_EMPTY) and *avail* (uint8 per real server): nothing a
    caller does to its own arrays afterwards changes the answers.
    """

    cdef c.mx_params p
    cdef const uint16_t[::1] _table
    cdef const uint8_t[::1] _avail
    cdef const uint8_t *avail_ptr
    cdef readonly bint fallback
    cdef readonly object table
    cdef readonly object avail
    cdef readonly object byte_order
    cdef readonly object hash_key

    def __cinit__(self, uint32_t m, uint32_t word_size, table, avail,
                  bint fallback, *, byte_order="little", hash_key=None):
        self.p = _params(m, word_size, byte_order, hash_key)
        self.byte_order = byte_order
        self.hash_key = hash_key
        t = np.array(table, dtype=np.uint16, copy=True, order="C")
        a = np.array(avail, dtype=np.uint8, copy=True, order="C")
        t.flags.writeable = False
        a.flags.writeable = False
        if t.ndim != 1 or t.shape[0] != m:
            raise ValueError(f"the table has {t.size} slots, not {m}")
        if a.ndim != 1:
            raise ValueError("avail must be one-dimensional")
        used = t[t != c.MX_SLOT_EMPTY]
        if used.size and int(used.max()) >= a.shape[0]:
            raise ValueError("table refers to a real server beyond avail")
        self._table = t
        self._avail = a
        self.avail_ptr = &self._avail[0] if a.shape[0] else _EMPTY_INPUT
        self.table = t
        self.avail = a
        self.fallback = fallback

    def __reduce__(self):
        new = partial(Scheduler, byte_order=self.byte_order, hash_key=self.hash_key)
        return new, (self.m, self.word_size, self.table, self.avail, self.fallback)

    @property
    def m(self):
        """The table size."""
        return self.p.m

    @property
    def word_size(self):
        """The director kernel's word size (64 or 32)."""
        return self.p.word_size

    def lookup(self, uint32_t fold, uint32_t port):
        """ip_vs_mh_get() / ip_vs_mh_get_fallback(): real server index or NONE."""
        if self.fallback:
            return c.mx_lookup_fallback(&self.p, &self._table[0],
                                        self.avail_ptr, fold, port)
        return c.mx_lookup(&self.p, &self._table[0], self.avail_ptr, fold,
                           port)

    def trace(self, uint32_t fold, uint32_t port):
        """The slots lookup() reads, in order: a list of (slot, entry).

        The last probe decides: an available server, an empty slot, or
        (without fallback) an unavailable one; with fallback, M probes.
        """
        cdef uint32_t m = self.p.m
        cdef uint32_t ihash = c.mx_slot(&self.p, fold, port)
        cdef uint32_t d = self._table[ihash]
        cdef uint32_t off, h
        probes = [(ihash, d)]
        if d == c.MX_SLOT_EMPTY or self._avail[d] or not self.fallback:
            return probes
        for off in range(m):
            h = c.mx_hash(&self.p, c.MX_H1, fold, port,
                          (off + ihash) % m) % m
            d = self._table[h]
            probes.append((h, d))
            if d == c.MX_SLOT_EMPTY or self._avail[d]:
                break
        return probes

    def lookup_text(self, int family, str text, uint32_t port):
        """lookup() for a client address as text, as inet_pton() reads it.

        Returns -1 when *text* is not an IPv*family* address to inet_pton().
        """
        cdef uint8_t a[16]
        if not _pton(AF_INET if family == 4 else AF_INET6, text, a):
            return -1
        if family == 4:
            return self.lookup(c.mx_be32(a), port)
        return self.lookup(c.mx_fold6(c.mx_be32(a), c.mx_be32(a + 4),
                                      c.mx_be32(a + 8), c.mx_be32(a + 12)), port)

    def lookup_many(self, const uint32_t[::1] folds, ports=None, out=None):
        """lookup() over arrays of folded addresses; releases the GIL.

        *ports*: uint16 hashed ports, or None when no port is hashed.
        *out*: uint32 array of the same length to write into (returned);
        else a new one.
        """
        cdef size_t n = folds.shape[0]
        return self._bulk(False, n, &folds[0] if n else NULL, NULL, ports, out)

    def lookup_many6(self, addrs, ports=None, out=None):
        """lookup_many() for IPv6 client addresses, folded on the way.

        *addrs*: shape (n, 4) uint32 numeric words, most significant first,
        or shape (n, 16) uint8 bytes in network order; C-contiguous.
        """
        cdef const uint32_t[:, ::1] words
        cdef const uint8_t[:, ::1] raw
        cdef size_t n
        if getattr(addrs, "dtype", None) == np.uint8:
            raw = addrs
            if raw.shape[1] != 16:
                raise ValueError("IPv6 addresses as bytes must have shape (n, 16)")
            n = raw.shape[0]
            return self._bulk(True, n, NULL, &raw[0, 0] if n else NULL, ports, out)
        words = addrs
        if words.shape[1] != 4:
            raise ValueError("IPv6 addresses as words must have shape (n, 4)")
        n = words.shape[0]
        return self._bulk(True, n, &words[0, 0] if n else NULL, NULL, ports, out)

    cdef _bulk(self, bint v6, size_t n, const uint32_t *u32, const uint8_t *raw,
               ports, out):
        """Check *ports* and *out* for n flows, then look up without the GIL
        IPv4 folds in *u32*, or IPv6 words in *u32* or bytes in *raw*."""
        cdef const uint16_t[::1] pv
        cdef const uint16_t *pp = NULL
        if ports is not None:
            pv = ports
            if <size_t>pv.shape[0] != n:
                what = "addresses" if v6 else "folds"
                raise ValueError(f"{what} and ports differ in length")
            if n:
                pp = &pv[0]
        if out is None:
            out = np.empty(n, dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if <size_t>o.shape[0] != n:
            raise ValueError("out differs in length from the flows")
        if n == 0:
            return out
        with nogil:
            if v6:
                c.mx_bulk_lookup6(&self.p, &self._table[0], self.avail_ptr,
                                  self.fallback, n, u32, raw, pp, &o[0])
            else:
                c.mx_bulk_lookup(&self.p, &self._table[0], self.avail_ptr,
                                 self.fallback, n, u32, pp, &o[0])
        return out
