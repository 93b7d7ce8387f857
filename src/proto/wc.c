/* wc.c - GNU wc's line, word, character and byte counts of a stream fed in
 * pieces. Pure code (sockit/wc.h has the rules).
 *
 * How it goes fast: the stream is cut into blocks of 64 bytes and each
 * block becomes bit masks, one bit per byte (SSE2 compares: 16 bytes per
 * instruction): "word byte", "separator byte", "LF", "not ASCII". Lines are
 * a popcount of the LF mask. Words are counted on the masks with integer
 * arithmetic (words_block below), 64 bytes at a time, transparent bytes
 * included. Bytes of 0x80 and up only matter in C.UTF-8: there the block's
 * characters beyond ASCII are put into the same masks at their first byte,
 * their other bytes being transparent, which is exactly how they act. A
 * block of well-formed 2- and 3-byte characters is checked and classed on
 * masks too (fast_block); any other is decoded one character at a time
 * (decode_block; a two-stage table gives the class). Pure ASCII blocks
 * never decode anything.
 */
#include <string.h>

#include "sockit/wc.h"
#include "proto/wc_table.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define WC_SSE2 1
#endif

enum { CLS_WORD = 0, CLS_SEP = 1, CLS_TRANSPARENT = 2 };

#define BLOCK 64

/* GCC builds a popcount-instruction copy of the hot loops next to the
 * baseline one and picks one at load time (an ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define HOT __attribute__((target_clones("popcnt", "default")))
#else
#define HOT
#endif
#if defined(__GNUC__)
#define ALWAYS_INLINE __attribute__((always_inline))
#else
#define ALWAYS_INLINE
#endif

/* ---- classes -------------------------------------------------------------------- */

/* Class of a code point past the BMP: bisection over the runs. Values
 * past U+10FFFF, which glibc still decodes, are never printable. */
static unsigned supp_class(uint32_t cp) {
  if (cp > 0x10FFFF)
    return CLS_TRANSPARENT;
  size_t lo = 0, hi = WC_TABLE_NRUNS; /* last run starting at or before cp */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (wc_supp_start[mid] <= cp)
      lo = mid;
    else
      hi = mid;
  }
  return wc_supp_class[lo];
}

/* Class of a code point in C.UTF-8 (generated table; see wc_table.h). */
static inline ALWAYS_INLINE unsigned cp_class(uint32_t cp) {
  if (cp < 0x10000) {
    const uint8_t *blk = wc_bmp_blocks[wc_bmp_index[cp / WC_TABLE_BLOCK]];
    unsigned k = cp % WC_TABLE_BLOCK;
    return (blk[k / 4] >> (2 * (k % 4))) & 3u;
  }
  return supp_class(cp);
}

#ifndef WC_SSE2
/* Class of a byte, as an ASCII character (both locales agree on ASCII):
 * \t \n \v \f \r and space separate, 0x21-0x7E make words, the rest (the
 * other controls, DEL, and in C every byte from 0x80) is transparent. The
 * SSE2 path (classify) computes the same with range compares. */
static unsigned byte_class(unsigned b) {
  if ((b >= 0x09 && b <= 0x0d) || b == 0x20)
    return CLS_SEP;
  if (b >= 0x21 && b <= 0x7e)
    return CLS_WORD;
  return CLS_TRANSPARENT;
}
#endif

/* Applies one character of class cls to the word state. Words are counted
 * where they start (wc counts them where they end, plus one in progress at
 * the end of input: the same number), as words_block does. */
static void step(sk_wc_t *w, unsigned cls) {
  if (cls == CLS_SEP) {
    w->in_word = 0;
  } else if (cls == CLS_WORD) {
    w->n.words += !w->in_word;
    w->in_word = 1;
  }
}

/* ---- UTF-8 as glibc's mbrtowc reads it --------------------------------------------- */

/* Length of the sequence a lead byte starts (glibc accepts the old 5- and
 * 6-byte forms), 0 for bytes that start none: continuation bytes, C0 and C1
 * (always overlong), FE, FF. */
static unsigned seq_len(unsigned b) {
  if (b < 0x80)
    return 1;
  if (b < 0xc2)
    return 0;
  if (b < 0xe0)
    return 2;
  if (b < 0xf0)
    return 3;
  if (b < 0xf8)
    return 4;
  if (b < 0xfc)
    return 5;
  if (b < 0xfe)
    return 6;
  return 0;
}

/* Decodes the character whose lead byte (>= 0x80) is q[0], with avail
 * bytes readable from q, the long way (any length, any position). Returns
 * its length with *cp set; 0 when q[0] starts no valid character (a wrong
 * byte inside, an overlong form, a surrogate): wc then skips q[0] alone;
 * or -1 when the input ends first, after nothing but continuation bytes:
 * glibc says "incomplete" (-2) and wc waits for more, or at end of input
 * drops those bytes. */
static int utf8_decode_slow(const uint8_t *q, size_t avail, uint32_t *cp) {
  static const uint32_t min_cp[7] = {0, 0, 0x80, 0x800, 0x10000, 0x200000, 0x4000000};
  unsigned n = seq_len(q[0]);
  if (n < 2)
    return 0;
  uint32_t v = q[0] & (0x7fu >> n);
  size_t have = avail < n ? avail : n;
  for (size_t i = 1; i < have; i++) {
    if ((q[i] & 0xc0) != 0x80)
      return 0;
    v = v << 6 | (q[i] & 0x3f);
  }
  if (have < n)
    return -1;
  if (v < min_cp[n] || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  *cp = v;
  return (int)n;
}

/* utf8_decode_slow's contract, with the forms text is made of decoded
 * inline: two bytes (Latin, Cyrillic, Greek...), and three bytes with a
 * lead other than E0 and ED, whose second byte needs no range check
 * (CJK, punctuation). */
static inline ALWAYS_INLINE int utf8_decode(const uint8_t *q, size_t avail, uint32_t *cp) {
  unsigned b = q[0];
  if (b >= 0xc2 && b < 0xe0 && avail >= 2) {
    if ((q[1] & 0xc0) != 0x80)
      return 0;
    *cp = (uint32_t)(b & 0x1f) << 6 | (q[1] & 0x3f);
    return 2;
  }
  if (b > 0xe0 && b < 0xf0 && b != 0xed && avail >= 3) {
    if (((q[1] & 0xc0) ^ 0x80) | ((q[2] & 0xc0) ^ 0x80))
      return 0;
    *cp = (uint32_t)(b & 0x0f) << 12 | (uint32_t)(q[1] & 0x3f) << 6 | (q[2] & 0x3f);
    return 3;
  }
  return utf8_decode_slow(q, avail, cp);
}

/* ---- 64-byte blocks ------------------------------------------------------------------ */

typedef struct {
  uint64_t word, sep, nl, high; /* one bit per byte: bit i is byte i */
} masks_t;

/* Masks of 64 bytes at p, ASCII classes only (bytes from 0x80 are in none
 * of word/sep, so transparent until decoding says otherwise). */
static inline void classify(const uint8_t *p, masks_t *m) {
#ifdef WC_SSE2
  const __m128i c09 = _mm_set1_epi8(0x09), c04 = _mm_set1_epi8(0x04);
  const __m128i c20 = _mm_set1_epi8(0x20), c21 = _mm_set1_epi8(0x21);
  const __m128i c5d = _mm_set1_epi8(0x5d), clf = _mm_set1_epi8('\n');
  uint64_t word = 0, sep = 0, nl = 0, high = 0;
  for (int k = 0; k < 4; k++) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * k));
    __m128i t = _mm_sub_epi8(v, c09); /* 0x09-0x0d -> 0-4 */
    __m128i s = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(t, c04), t), _mm_cmpeq_epi8(v, c20));
    __m128i u = _mm_sub_epi8(v, c21); /* 0x21-0x7e -> 0-0x5d */
    __m128i wd = _mm_cmpeq_epi8(_mm_min_epu8(u, c5d), u);
    sep |= (uint64_t)(unsigned)_mm_movemask_epi8(s) << (16 * k);
    word |= (uint64_t)(unsigned)_mm_movemask_epi8(wd) << (16 * k);
    nl |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, clf)) << (16 * k);
    high |= (uint64_t)(unsigned)_mm_movemask_epi8(v) << (16 * k);
  }
  m->word = word;
  m->sep = sep;
  m->nl = nl;
  m->high = high;
#else
  memset(m, 0, sizeof *m);
  for (int i = 0; i < BLOCK; i++) {
    unsigned c = byte_class(p[i]);
    uint64_t bit = 1ull << i;
    if (c == CLS_WORD)
      m->word |= bit;
    else if (c == CLS_SEP)
      m->sep |= bit;
    if (p[i] == '\n')
      m->nl |= bit;
    if (p[i] >= 0x80)
      m->high |= bit;
  }
#endif
}

/* Counts the words that start in a block of 64 classes given as masks
 * (transparent = in neither), carrying in_word across blocks.
 *
 * A word starts at a word byte whose nearest non-transparent predecessor
 * is a separator (or, before the block, in_word is 0). For a predecessor
 * that is itself transparent we need "not in a word" at every transparent
 * byte: true when the last non-transparent byte before it is a separator.
 * Adding a = (separators followed by a transparent byte) to the runs of
 * (a | transparent) sends a carry from each such separator up through the
 * transparent bytes after it, clearing exactly those bits; transparent
 * runs after a word byte get no carry. The carry into bit 0 is "not in a
 * word" from the block before. */
static inline void words_block(sk_wc_t *w, uint64_t word, uint64_t sep) {
  uint64_t transparent = ~(word | sep);
  uint64_t out_before = w->in_word ? 0 : 1;
  uint64_t a = sep & (transparent >> 1);
  uint64_t sum = (a | transparent) + a + out_before;
  uint64_t out_transparent = transparent & ~sum;
  uint64_t after_out = ((sep | out_transparent) << 1) | out_before;
  w->n.words += (uint64_t)__builtin_popcountll(word & after_out);
  uint64_t decided = word | sep;
  if (decided)
    w->in_word = (uint8_t)((word >> (63 - __builtin_clzll(decided))) & 1);
}

/* Decodes the characters of a block that start at its bytes >= 0x80 and
 * sets their class bits at their lead byte. end is the end of the piece
 * being fed (a character may run into the next block, or past the piece:
 * then its bytes wait in w->pend). *skip: on entry, how many bytes at the
 * block's start belong to a character already counted; on return, the
 * same for the next block. (Those are continuation bytes, which would be
 * skipped as "no character, transparent" anyway: knowing them saves the
 * work and lets the next block take fast_block.) Returns the number of
 * characters decoded. */
static inline uint64_t decode_block(sk_wc_t *w, const uint8_t *blk, const uint8_t *end,
                                    masks_t *m, unsigned *skip) {
  uint64_t todo = m->high, chars = 0;
  if (*skip)
    todo &= ~((1ull << *skip) - 1);
  *skip = 0;
  while (todo) {
    unsigned i = (unsigned)__builtin_ctzll(todo);
    const uint8_t *q = blk + i;
    uint32_t cp = 0;
    int n = utf8_decode(q, (size_t)(end - q), &cp);
    if (n > 0) {
      unsigned cls = cp_class(cp);
      if (cls == CLS_WORD)
        m->word |= 1ull << i;
      else if (cls == CLS_SEP)
        m->sep |= 1ull << i;
      chars++;
      if (i + (unsigned)n > BLOCK) {
        *skip = i + (unsigned)n - BLOCK;
        break;
      }
      todo &= ~(((1ull << n) - 1) << i);
    } else if (n == 0) {
      todo &= todo - 1; /* not a character: transparent, not counted */
    } else {
      /* Cut by the end of the piece: only continuation bytes follow the
       * lead up to end, so they all wait for the next piece. */
      size_t k = (size_t)(end - q);
      memcpy(w->pend, q, k);
      w->pend_len = (uint8_t)k;
      if (i + k > BLOCK)
        *skip = (unsigned)(i + k - BLOCK);
      break;
    }
  }
  return chars;
}

#ifdef WC_SSE2
/* The fast way through a block with bytes >= 0x80, for text: when every
 * character beyond ASCII is a well-formed 2-byte one or a 3-byte one with
 * a lead other than E0 and ED (forms that need no range check beyond
 * "continuation byte here"), the continuation bytes sit exactly one after
 * each lead and two after each 3-byte lead. That is checked for the whole
 * block at once on the masks. Most lead bytes start word characters only
 * (Cyrillic, CJK...): those are classed by the mask alone; only the leads
 * of the generated "mixed" ranges (Latin-1 controls and no-break space,
 * general punctuation, CJK punctuation, ...) are looked up one by one.
 * Returns 1 with the block's characters counted and classed (as
 * decode_block would), or 0 having changed nothing: the block is then
 * decoded the long way. */
static inline ALWAYS_INLINE int fast_block(const uint8_t *blk, const uint8_t *end, masks_t *m,
                                           unsigned *skip, uint64_t *chars) {
  const __m128i cc0 = _mm_set1_epi8((char)0xc0), cc2 = _mm_set1_epi8((char)0xc2);
  const __m128i c1d = _mm_set1_epi8(0x1d), ce1 = _mm_set1_epi8((char)0xe1);
  const __m128i c0e = _mm_set1_epi8(0x0e), ced = _mm_set1_epi8((char)0xed);
  uint64_t cont = 0, lead2 = 0, lead3 = 0;
  for (int k = 0; k < 4; k++) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * k));
    __m128i t2 = _mm_sub_epi8(v, cc2); /* C2-DF -> 0-1d */
    __m128i t3 = _mm_sub_epi8(v, ce1); /* E1-EF -> 0-0e */
    __m128i is2 = _mm_cmpeq_epi8(_mm_min_epu8(t2, c1d), t2);
    __m128i is3 = _mm_andnot_si128(_mm_cmpeq_epi8(v, ced), _mm_cmpeq_epi8(_mm_min_epu8(t3, c0e), t3));
    cont |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmplt_epi8(v, cc0)) << (16 * k);
    lead2 |= (uint64_t)(unsigned)_mm_movemask_epi8(is2) << (16 * k);
    lead3 |= (uint64_t)(unsigned)_mm_movemask_epi8(is3) << (16 * k);
  }
  uint64_t leads = lead2 | lead3;
  uint64_t owed = *skip ? (1ull << *skip) - 1 : 0;
  if ((m->high & ~cont & ~leads) || ((leads << 1) | (lead3 << 2) | owed) != cont)
    return 0;
  /* The last character may run past the block: check its bytes there. */
  unsigned next_skip = 0;
  if (leads) {
    unsigned last = 63u - (unsigned)__builtin_clzll(leads);
    unsigned len = (lead3 >> last) & 1 ? 3u : 2u;
    if (last + len > BLOCK) {
      const uint8_t *q = blk + last;
      if ((size_t)(end - q) < len || (q[1] & 0xc0) != 0x80 || (len == 3 && (q[2] & 0xc0) != 0x80))
        return 0;
      next_skip = last + len - BLOCK;
    }
  }
  /* Which leads need a look-up: with many characters, find the "mixed"
   * leads with compares on the whole block; with a few, look each one's
   * table block up (accented letters in Latin text). */
  uint64_t todo, word = 0, sep = 0;
  int nchars = __builtin_popcountll(leads);
  if (nchars > 8) {
    static const uint8_t mixed[WC_TABLE_NMIXED][2] = WC_TABLE_MIXED_LEADS;
    __m128i mixed_lo[WC_TABLE_NMIXED], mixed_span[WC_TABLE_NMIXED];
    for (int r = 0; r < WC_TABLE_NMIXED; r++) {
      mixed_lo[r] = _mm_set1_epi8((char)mixed[r][0]);
      mixed_span[r] = _mm_set1_epi8((char)(mixed[r][1] - mixed[r][0]));
    }
    uint64_t odd = 0;
    for (int k = 0; k < 4; k++) {
      __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * k));
      __m128i mix = _mm_setzero_si128();
#pragma GCC unroll 16
      for (int r = 0; r < WC_TABLE_NMIXED; r++) {
        __m128i t = _mm_sub_epi8(v, mixed_lo[r]);
        mix = _mm_or_si128(mix, _mm_cmpeq_epi8(_mm_min_epu8(t, mixed_span[r]), t));
      }
      odd |= (uint64_t)(unsigned)_mm_movemask_epi8(mix) << (16 * k);
    }
    todo = leads & odd;
    word = leads & ~odd;
  } else {
    todo = leads;
  }
  while (todo) {
    unsigned i = (unsigned)__builtin_ctzll(todo);
    const uint8_t *q = blk + i;
    uint32_t cp = q[0] < 0xe0 ? (uint32_t)(q[0] & 0x1fu) << 6 | (q[1] & 0x3fu)
                              : (uint32_t)(q[0] & 0x0fu) << 12 | (uint32_t)(q[1] & 0x3fu) << 6 |
                                    (q[2] & 0x3fu);
    unsigned cls = cp_class(cp);
    if (cls == CLS_WORD)
      word |= 1ull << i;
    else if (cls == CLS_SEP)
      sep |= 1ull << i;
    todo &= todo - 1;
  }
  m->word |= word;
  m->sep |= sep;
  *skip = next_skip;
  *chars = (uint64_t)nchars;
  return 1;
}
#endif

/* ---- feeding ----------------------------------------------------------------------- */

/* Counts LF bytes: the lines-only path. */
static HOT uint64_t count_lf(const uint8_t *p, size_t len) {
  uint64_t lines = 0;
  size_t i = 0;
#ifdef WC_SSE2
  const __m128i clf = _mm_set1_epi8('\n');
  while (len - i >= 16) {
    /* Byte counters in one register (each compare match is -1), folded
     * with psadbw before any of them can pass 255. */
    size_t rounds = (len - i) / 16;
    if (rounds > 255)
      rounds = 255;
    __m128i acc = _mm_setzero_si128();
    for (size_t r = 0; r < rounds; r++, i += 16) {
      __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
      acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(v, clf));
    }
    __m128i sums = _mm_sad_epu8(acc, _mm_setzero_si128());
    lines += (uint64_t)_mm_cvtsi128_si64(sums) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
  }
#endif
  for (; i < len; i++)
    lines += p[i] == '\n';
  return lines;
}

/* Feeds whole blocks and then the tail (copied into a zero-padded block:
 * NUL is transparent and not LF, so padding changes no count). */
static HOT void feed_blocks(sk_wc_t *w, const uint8_t *p, const uint8_t *end) {
  unsigned skip = 0;
  uint64_t lines = 0, chars = 0;
  int utf8 = w->utf8;
  while (end - p >= BLOCK) {
    masks_t m;
    classify(p, &m);
    if (utf8 && m.high) {
      uint64_t wide = 0;
#ifdef WC_SSE2
      if (!fast_block(p, end, &m, &skip, &wide))
#endif
        wide = decode_block(w, p, end, &m, &skip);
      chars += wide + (uint64_t)__builtin_popcountll(~m.high);
    } else
      chars += BLOCK;
    words_block(w, m.word, m.sep);
    lines += (uint64_t)__builtin_popcountll(m.nl);
    p += BLOCK;
  }
  size_t n = (size_t)(end - p);
  if (n) {
    uint8_t tail[BLOCK] = {0};
    memcpy(tail, p, n);
    masks_t m;
    classify(tail, &m);
    uint64_t valid = (1ull << n) - 1;
    if (utf8 && m.high)
      chars += decode_block(w, tail, tail + n, &m, &skip) +
               (uint64_t)__builtin_popcountll(~m.high & valid);
    else
      chars += n;
    words_block(w, m.word, m.sep);
    lines += (uint64_t)__builtin_popcountll(m.nl);
  }
  w->n.lines += lines;
  w->n.chars += chars;
}

/* Completes a character cut by the previous piece with the first bytes of
 * this one. Returns where the rest of this piece starts; w->pend_len stays
 * non-zero when this piece too ended inside the character. */
static const uint8_t *finish_pending(sk_wc_t *w, const uint8_t *p, const uint8_t *end) {
  unsigned need = seq_len(w->pend[0]);
  while (w->pend_len < need && p < end && (*p & 0xc0) == 0x80)
    w->pend[w->pend_len++] = *p++;
  if (w->pend_len < need && p == end)
    return p; /* still incomplete */
  uint32_t cp = 0;
  if (utf8_decode_slow(w->pend, w->pend_len, &cp) > 0) {
    w->n.chars++;
    step(w, cp_class(cp));
  }
  /* Otherwise no character: the lead and the continuation bytes taken
   * with it are skipped, as wc skips each of them. */
  w->pend_len = 0;
  return p;
}

/* Contracts of the sk_wc_* functions: sockit/wc.h. */
void sk_wc_init(sk_wc_t *w, sk_wc_locale_t loc, unsigned what) {
  memset(w, 0, sizeof *w);
  w->what = what ? what & SK_WC_ALL : SK_WC_ALL;
  w->utf8 = loc == SK_WC_LOCALE_UTF8;
}

/* Lines-only counting when neither words nor UTF-8 characters are asked;
 * otherwise the pending character first, then the blocks. */
void sk_wc_feed(sk_wc_t *w, const void *data, size_t len) {
  const uint8_t *p = data, *end = p + len;
  if (len == 0)
    return;
  w->n.bytes += len;
  if (!(w->what & SK_WC_WORDS) && !(w->what & SK_WC_CHARS && w->utf8)) {
    w->n.lines += count_lf(p, len);
    return;
  }
  if (w->pend_len) {
    p = finish_pending(w, p, end);
    if (w->pend_len)
      return;
  }
  if (p < end)
    feed_blocks(w, p, end);
}

/* Words are counted where they start, so nothing is added at the end; a
 * pending cut character is simply not a character. */
void sk_wc_result(const sk_wc_t *w, sk_wc_counts_t *out) {
  out->lines = w->n.lines;
  out->bytes = w->n.bytes;
  out->words = w->what & SK_WC_WORDS ? w->n.words : 0;
  if (!(w->what & SK_WC_CHARS))
    out->chars = 0;
  else
    out->chars = w->utf8 ? w->n.chars : w->n.bytes;
}

/* The locale's name as SKWC/1 writes it. */
const char *sk_wc_locale_name(sk_wc_locale_t loc) {
  return loc == SK_WC_LOCALE_UTF8 ? "UTF-8" : "C";
}
