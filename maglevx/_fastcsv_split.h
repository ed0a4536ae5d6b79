/* SPDX-License-Identifier: GPL-2.0 */
/*
 * _fastcsv_split.h - splitting a flow CSV line at its commas, for
 * maglevx/_fastcsv.pyx (userspace only; not part of the C core in csrc/).
 *
 * A line is refused (the slow path in predict.py decides it) when it holds
 * a byte that is not ASCII, or a control character that is not whitespace
 * str.strip() removes (9-13, 28-31), or more than four commas. With SSE2,
 * 16 bytes are classified at a time; the tail, and other CPUs, go byte by
 * byte under the same rules.
 */
#ifndef MAGLEVX_FASTCSV_SPLIT_H
#define MAGLEVX_FASTCSV_SPLIT_H

#include <stddef.h>
#include <stdint.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static inline int fc_refused(uint8_t c)
{
	return c >= 127 || (c < 32 && !(c >= 9 && c <= 13) && !(c >= 28));
}

/*
 * fc_split() - the five fields of p[ls:le], unstripped
 * @fs, @fe: field starts and ends (5 each) to fill
 *
 * Return: 1 with exactly five fields, 0 when the line is refused.
 */
static inline int fc_split(const uint8_t *p, ptrdiff_t ls, ptrdiff_t le,
			   ptrdiff_t *fs, ptrdiff_t *fe)
{
	ptrdiff_t i = ls;
	int nf = 0;

	fs[0] = ls;
#ifdef __SSE2__
	for (; i + 16 <= le; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(p + i));
		/* signed bytes: >= 128 are negative, so "< 32" holds them */
		__m128i ctl = _mm_cmplt_epi8(v, _mm_set1_epi8(32));
		__m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(127));
		__m128i ws1 = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(8)),
					    _mm_cmplt_epi8(v, _mm_set1_epi8(14)));
		__m128i ws2 = _mm_cmpgt_epi8(v, _mm_set1_epi8(27));
		__m128i bad = _mm_or_si128(del, _mm_andnot_si128(
						_mm_or_si128(ws1, ws2), ctl));
		unsigned int comma;

		if (_mm_movemask_epi8(bad))
			return 0;
		comma = (unsigned int)_mm_movemask_epi8(
			_mm_cmpeq_epi8(v, _mm_set1_epi8(',')));
		while (comma) {
			ptrdiff_t at = i + __builtin_ctz(comma);

			if (nf == 4)
				return 0;
			fe[nf++] = at;
			fs[nf] = at + 1;
			comma &= comma - 1;
		}
	}
#endif
	for (; i < le; i++) {
		if (p[i] == ',') {
			if (nf == 4)
				return 0;
			fe[nf++] = i;
			fs[nf] = i + 1;
		} else if (fc_refused(p[i])) {
			return 0;
		}
	}
	if (nf != 4)
		return 0;
	fe[4] = le;
	return 1;
}

#endif /* MAGLEVX_FASTCSV_SPLIT_H */
