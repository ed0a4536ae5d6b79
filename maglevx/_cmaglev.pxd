# Declarations of the C core in csrc/ (nothing else).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "mx_port.h" nogil:
    uint32_t mx_be32(const uint8_t *p)


cdef extern from "mx_maglev.h" nogil:
    ctypedef uint16_t mx_slot_t
    const char *MX_KERNEL_REFERENCE
    uint32_t MX_NR_PRIMES
    uint32_t MX_SLOT_EMPTY
    uint32_t MX_MAX_DESTS
    uint32_t MX_NONE
    uint32_t MX_HASH1_KEY
    uint32_t MX_HASH2_KEY
    uint32_t MX_H1
    uint32_t MX_H2
    uint32_t MX_KEY_SIZE
    uint32_t MX_BIG_ENDIAN

    struct mx_params:
        uint32_t m
        uint32_t tab_bits
        uint32_t word_size
        uint32_t byte_order

    struct mx_dest_setup:  # only allocated here, for mx_build_table()
        pass

    const uint32_t mx_primes[]

    int mx_params_init(mx_params *p, uint32_t table_size, uint32_t word_size)
    void mx_params_set_key(mx_params *p, const uint8_t *key)
    uint32_t mx_hash(const mx_params *p, uint32_t h, uint32_t fold,
                     uint32_t port, uint32_t offset)
    uint32_t mx_fold6(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3)
    uint32_t mx_hashkey(const mx_params *p, uint32_t key, uint32_t fold,
                        uint32_t port, uint32_t offset)
    uint32_t mx_slot(const mx_params *p, uint32_t fold, uint32_t port)
    uint32_t mx_gcd_weight(const uint32_t *weights, uint32_t n)
    uint32_t mx_shift_weight(const mx_params *p, const uint32_t *weights,
                             uint32_t n, uint32_t gcd)
    int mx_build_table(const mx_params *p, uint32_t n, const uint32_t *folds,
                       const uint32_t *ports, const uint32_t *weights,
                       mx_dest_setup *ds, mx_slot_t *table)
    uint32_t mx_lookup(const mx_params *p, const mx_slot_t *table,
                       const uint8_t *avail, uint32_t fold, uint32_t port)
    uint32_t mx_lookup_fallback(const mx_params *p, const mx_slot_t *table,
                                const uint8_t *avail, uint32_t fold,
                                uint32_t port)


cdef extern from "mx_hsiphash.h" nogil:
    uint32_t mx_hsiphash64(const uint8_t *data, size_t length, uint64_t k0,
                           uint64_t k1)
    uint32_t mx_hsiphash32(const uint8_t *data, size_t length, uint32_t k0,
                           uint32_t k1)


cdef extern from "mx_bulk.h" nogil:
    struct mx_fastmod:  # opaque: set by mx_fastmod_init()
        pass

    void mx_fastmod_init(mx_fastmod *f, uint32_t d)
    uint32_t mx_fastmod_mod "mx_fastmod"(const mx_fastmod *f, uint32_t a)
    void mx_bulk_lookup(const mx_params *p, const mx_slot_t *table,
                        const uint8_t *avail, int fallback, size_t n,
                        const uint32_t *folds, const uint16_t *ports,
                        uint32_t *out)
    void mx_bulk_lookup6(const mx_params *p, const mx_slot_t *table,
                         const uint8_t *avail, int fallback, size_t n,
                         const uint32_t *words, const uint8_t *bytes,
                         const uint16_t *ports, uint32_t *out)
