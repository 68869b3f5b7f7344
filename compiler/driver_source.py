"""C source of the batch driver linked into every compiled model library.

Kept as a Python string (rather than a .c file) so it ships inside the wheel with no
package-data configuration. compiler/native.py fills in the @NAME@ placeholders.
"""

DRIVER_C = r"""/*
 * mlproxy batch driver, compiled into every model library. The trees are evaluated
 * one of two ways (MLPX_EVALUATOR, chosen per model by compiler/worker.py):
 *   1  TL2cgen's generated if/else code (header.h, main.c, quantize.c, tu*.c);
 *   2  node arrays generated from the Treelite model (compiler/node_tables.py),
 *      walked without data-dependent branches;
 *   3  QuickScorer bitvectors (compiler/quick_scorer.py) over groups of rows, with
 *      the node arrays of 2 for the rows left over.
 *
 * Why not TL2cgen's own runtime: its Predictor copies the batch into a DMatrix, may
 * be used by one thread at a time, and walks every tree for one row before the next
 * row. This driver instead
 *   - reads the caller's row-major float64 matrix in place (NaN = missing),
 *   - works on blocks of rows: evaluator 1 quantizes each value with a branch-free
 *     binary search over the same per-feature threshold table TL2cgen's quantize()
 *     uses and runs one translation unit over the block before the next unit (its
 *     code stays hot in the instruction cache); evaluator 2 runs one tree over the
 *     block, several rows at a time, before the next tree,
 *   - is reentrant (no globals written) and splits large batches over pthreads.
 * It returns Treelite margins (sums of leaf values, averaged for forests, plus base
 * scores); the link function is applied by the caller (compiler/trees.py).
 *
 * The @NAME@ placeholders are filled in by compiler/native.py.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MLPX_ABI 5
#define MLPX_N_FEATURE @N_FEATURE@
#define MLPX_N_OUT @N_OUT@
#define MLPX_BLOCK @BLOCK@
#define MLPX_MIN_ROWS_PER_THREAD @MIN_ROWS_PER_THREAD@
#define MLPX_MAX_THREADS 64
/* 1: TL2cgen's generated if/else code; 2: node arrays walked without branches;
   3: QuickScorer bitvectors, node arrays for rows left over */
#define MLPX_EVALUATOR @EVALUATOR@

/* Margin = sum / divisor (forests average their trees) + base score, per output. */
#define MLPX_AVERAGED @AVERAGED@
static const double mlpx_divisor[MLPX_N_OUT] = { @DIVISOR@ };
static const double mlpx_base_score[MLPX_N_OUT] = { @BASE_SCORE@ };

/* The value the trees compare: float32-rounded for scikit-learn's tree module, which
   compares float32 inputs; thresholds lie inside the float32 range, so clamping keeps
   every branch of an out-of-range value. */
static inline double mlpx_input(double v, int round32) {
  if (round32) {
    if (v > FLT_MAX) v = FLT_MAX;
    else if (v < -FLT_MAX) v = -FLT_MAX;
    v = (double)(float)v;
  }
  return v;
}

#if MLPX_EVALUATOR == 1
/* ---- TL2cgen's generated code, one translation unit at a time over a block ---- */
#include "header.h"
#define MLPX_N_UNIT @N_UNIT@
#define MLPX_SCRATCH (sizeof(union Entry) * MLPX_BLOCK * MLPX_N_FEATURE)

/* Defined (with external linkage) in TL2cgen's main.c. */
extern const unsigned char is_categorical[];

static const double mlpx_threshold[] = { @THRESHOLDS@ };
static const int32_t mlpx_th_begin[MLPX_N_FEATURE] = { @TH_BEGIN@ };
static const int32_t mlpx_th_len[MLPX_N_FEATURE] = { @TH_LEN@ };

typedef void (*mlpx_unit_fn)(union Entry*, double*);
static const mlpx_unit_fn mlpx_units[MLPX_N_UNIT] = { @UNITS@ };

/*
 * Bin code of v for feature j with thresholds t[0..n) (each table ends with an
 * +inf sentinel): 2k when v == t[k], 2k-1 when t[k-1] < v < t[k]. The generated
 * tests read "qvalue <= 2k" for "v <= t[k]". Below every threshold gives -3 rather
 * than -1, because -1 in the Entry union means "missing".
 */
static inline int mlpx_quantize(double v, int j) {
  const double* t = mlpx_threshold + mlpx_th_begin[j];
  const double* base = t;
  int n = mlpx_th_len[j];
  while (n > 1) {
    int half = n >> 1;
    base = (base[half] < v) ? base + half : base;
    n -= half;
  }
  int idx = (int)(base - t) + (mlpx_th_len[j] > 0 && *base < v);
  int q = 2 * idx - 1 + (t[idx] == v);
  return q - 2 * (q == -1);
}

static void mlpx_fill(const double* x, int64_t cs, union Entry* e, int round32) {
  for (int j = 0; j < MLPX_N_FEATURE; ++j) {
    double v = x[j * cs];
    if (isnan(v)) {
      e[j].missing = -1;
      continue;
    }
    v = mlpx_input(v, round32);
    if (is_categorical[j]) e[j].fvalue = v;
    else e[j].qvalue = mlpx_quantize(v, j);
  }
}

/* Adds the trees' sums for rows 0..n of X (element (r, j) at X[r * rs + j * cs]) to
   out[0..n). */
static void mlpx_block(const double* X, int64_t rs, int64_t cs, int64_t n, int round32, void* scratch,
                       double* out) {
  union Entry* e = (union Entry*)scratch;
  for (int64_t r = 0; r < n; ++r) mlpx_fill(X + r * rs, cs, e + r * MLPX_N_FEATURE, round32);
  for (int u = 0; u < MLPX_N_UNIT; ++u) {
    const mlpx_unit_fn unit = mlpx_units[u];
    for (int64_t r = 0; r < n; ++r) unit(e + r * MLPX_N_FEATURE, out + r * MLPX_N_OUT);
  }
}

#else
/* ---- node arrays (compiler/node_tables.py), walked with selects, not branches ----
 * Each node is one 64-bit word, its 32-bit threshold key (high half) and the offset
 * of the row-buffer column it reads (low half), plus the index of its first child in
 * a second array; the second child follows the first. A step is
 *     i = first[i] + (key[i] < row's key at column[i])
 * -- two loads of the node, one of the row's key, no branch, so no mispredictions
 * however the rows go. The row buffer holds every feature twice, column 2j with NaN
 * as the lowest key and column 2j+1 with NaN as the highest, so a node whose missing
 * values go to its first child reads column 2j and one whose missing values go to the
 * second reads 2j+1. A leaf has the highest threshold and itself as first child (a
 * fixed point), so every tree is walked a fixed number of steps (its depth),
 * MLPX_LANES rows at a time so the load chains of those rows overlap. A whole block
 * of rows goes through one tree before the next, so that tree stays in L1.
 *
 * Keys are exact images of the comparisons (MLPX_KEYS): 1, for models that compare
 * float32 inputs, the order-preserving uint32 image of the float32 input (a float64
 * threshold t becomes the largest float32 <= t: for float32 x, x <= t iff x <= that);
 * 2, for float64 comparisons, the input's rank among the feature's sorted distinct
 * thresholds T (1 + the number of T below it; x <= T[k] iff rank <= k + 1), found by a
 * branch-free binary search once per value and block, not once per node. */
#define MLPX_N_TREE @N_TREE@
#define MLPX_LANES @LANES@
#define MLPX_LEAF_WIDTH @LEAF_WIDTH@ /* 1: scalar leaves added to one output; else N_OUT */
#define MLPX_KEYS @KEYS@
/* the row buffer, then the leaves one row reaches (the left-over rows' walk) */
#define MLPX_SCRATCH (sizeof(uint32_t) * 2 * MLPX_N_FEATURE * MLPX_BLOCK + sizeof(uint64_t) * MLPX_N_TREE)
#define MLPX_LOW UINT32_C(0)
#define MLPX_HIGH UINT32_MAX

#define MLPX_N_NODE @N_NODE@
/* one table, so the walk needs one base register: node words, then first children */
static const struct {
  uint64_t node[MLPX_N_NODE];
  uint32_t first[MLPX_N_NODE];
} mlpx_tab = { { @NODES@ }, { @FIRST@ } };
#define mlpx_node mlpx_tab.node
#define mlpx_first mlpx_tab.first
static const double mlpx_leaf[] = { @LEAVES@ }; /* indexed by node (0 for splits) */
static const uint32_t mlpx_root[MLPX_N_TREE] = { @ROOTS@ };
static const int32_t mlpx_depth[MLPX_N_TREE] = { @DEPTHS@ };
static const int32_t mlpx_out[MLPX_N_TREE] = { @OUTS@ };
/* the trees by depth, and per group of MLPX_LANES of them its deepest */
static const uint32_t mlpx_tail_tree[MLPX_N_TREE] = { @TAIL_TREES@ };
static const int32_t mlpx_tail_depth[] = { @TAIL_DEPTHS@ };

#if MLPX_KEYS == 1
/* Order-preserving unsigned image of a float32 (-0.0 taken as +0.0). */
static inline uint32_t mlpx_key32(double v) {
  float f = (float)v + 0.0f;
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b ^ ((uint32_t)((int32_t)b >> 31) | UINT32_C(0x80000000));
}

/* Keys of feature j for rows 0..n of column x (row stride rs) into both copies. */
static void mlpx_keys(const double* x, int64_t rs, int64_t n, int j, int round32, uint32_t* low, uint32_t* high) {
  (void)j;
  for (int64_t r = 0; r < n; ++r) {
    double v = x[r * rs];
    int miss = isnan(v);
    uint32_t k = mlpx_key32(mlpx_input(v, round32));
    low[r] = miss ? MLPX_LOW : k;
    high[r] = miss ? MLPX_HIGH : k;
  }
}
#else
static const double mlpx_rank_t[] = { @RANK_T@ };
static const int32_t mlpx_rank_begin[MLPX_N_FEATURE] = { @RANK_BEGIN@ };
static const int32_t mlpx_rank_len[MLPX_N_FEATURE] = { @RANK_LEN@ };
#define MLPX_RANK_ROWS 8

/* Keys of feature j: 1 + the number of its thresholds below the value, by a binary
   search (lower bound) that MLPX_RANK_ROWS rows take in lock step: the halving
   sequence depends on the table only, the steps are masks rather than branches
   (which half a value falls in is unpredictable), and the rows' load chains
   overlap. */
static void mlpx_keys(const double* x, int64_t rs, int64_t n, int j, int round32, uint32_t* low, uint32_t* high) {
  const double* t = mlpx_rank_t + mlpx_rank_begin[j];
  const int64_t m = mlpx_rank_len[j];
  int64_t r0 = 0;
  for (; r0 + MLPX_RANK_ROWS <= n; r0 += MLPX_RANK_ROWS) {
    double v[MLPX_RANK_ROWS];
    int64_t b[MLPX_RANK_ROWS];
#pragma GCC unroll 16
    for (int k = 0; k < MLPX_RANK_ROWS; ++k) {
      v[k] = mlpx_input(x[(r0 + k) * rs], round32);
      b[k] = 0;
    }
    if (m > 0) {
      for (int64_t len = m; len > 1;) {
        const int64_t half = len >> 1;
#pragma GCC unroll 16
        for (int k = 0; k < MLPX_RANK_ROWS; ++k) b[k] += half & -(int64_t)(t[b[k] + half] < v[k]);
        len -= half;
      }
#pragma GCC unroll 16
      for (int k = 0; k < MLPX_RANK_ROWS; ++k) b[k] += t[b[k]] < v[k];
    }
#pragma GCC unroll 16
    for (int k = 0; k < MLPX_RANK_ROWS; ++k) {
      int miss = isnan(v[k]);
      low[r0 + k] = miss ? MLPX_LOW : (uint32_t)b[k] + 1;
      high[r0 + k] = miss ? MLPX_HIGH : (uint32_t)b[k] + 1;
    }
  }
  for (; r0 < n; ++r0) { /* the rest one at a time (a one-row call: only this) */
    const double v = mlpx_input(x[r0 * rs], round32);
    int64_t b = 0;
    if (m > 0) {
      for (int64_t len = m; len > 1;) {
        const int64_t half = len >> 1;
        b += half & -(int64_t)(t[b + half] < v);
        len -= half;
      }
      b += t[b] < v;
    }
    int miss = isnan(v);
    low[r0] = miss ? MLPX_LOW : (uint32_t)b + 1;
    high[r0] = miss ? MLPX_HIGH : (uint32_t)b + 1;
  }
}
#endif

/* Lane indices are 64-bit so the inline assembly below may use them as addresses. */
typedef uint64_t mlpx_idx;
/* M(0) M(1) ... M(MLPX_LANES - 1): the lanes written out, so each lane's row offset is
   a constant (an address displacement) and each index lives in its own register */
#define MLPX_EACH_LANE(M) @LANE_LIST@

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MLPX_PORTABLE_STEP)
/* The walk written out for x86-64: compilers turn the C below into 8-10 instructions
   a step (setb + movzx + add instead of adc, extra moves) and spill lanes to the
   stack, and the walk is bound by its instructions and its dependent loads. A step:
   load the node, load its first child, the node's low half is the key column's
   offset, compare the node's key (high half) with the row's key there (carry = key <
   row's key), add the carry to the first child.
   MLPX_WALK(I, X, STEPS, STRIDE): STEPS steps for lanes I[0..MLPX_LANES), lane k
   reading row X + k * STRIDE of the row buffer (STRIDE 0: one row, several trees),
   as one loop with every lane in a register. */
@WALK_ASM@
#else
#define MLPX_WALK(I, X, STEPS, STRIDE)                                                   \
  do {                                                                                   \
    for (int64_t s_ = 0; s_ < (STEPS); ++s_) {                                           \
      _Pragma("GCC unroll 32") for (int k_ = 0; k_ < MLPX_LANES; ++k_) {                 \
        const uint64_t n_ = mlpx_node[(I)[k_]];                                          \
        (I)[k_] = mlpx_first[(I)[k_]] + ((uint32_t)(n_ >> 32) < (X)[k_ * (STRIDE) + (uint32_t)n_]); \
      }                                                                                  \
    }                                                                                    \
  } while (0)
#endif

static inline void mlpx_add_leaf(mlpx_idx i, int32_t o, double* out) {
  const double* v = mlpx_leaf + (size_t)i * MLPX_LEAF_WIDTH;
#if MLPX_LEAF_WIDTH == 1
  out[o] += v[0];
#else
  (void)o;
  for (int k = 0; k < MLPX_LEAF_WIDTH; ++k) out[k] += v[k];
#endif
}

#if MLPX_EVALUATOR == 3
/* ---- QuickScorer bitvectors (compiler/quick_scorer.py) ----
 * A tree's leaves, left to right, are the bits of a 64-bit word; a test that fails
 * (the row goes to its second child: key < the row's key in the test's column, the
 * node-array walk's compare) ANDs the word with `keep`, every leaf but those under
 * its first child. The exit leaf is the lowest bit left. All of a tree's tests
 * (sorted by feature and key) are applied to MLPX_QS_ROWS rows at once, selects
 * rather than branches, which compilers turn into SIMD compares and masked ANDs;
 * rows left over take the node-array walk below, which reaches the same leaves. */
#define MLPX_QS_ROWS 16
#define MLPX_N_TEST @N_TEST@
typedef struct {
  uint32_t col; /* offset of the row-buffer column the test reads (as the node's low half) */
  uint32_t key;
  uint64_t keep;
} mlpx_qs_test;
static const mlpx_qs_test mlpx_qs_tests[MLPX_N_TEST + 1] = { @QS_TESTS@ };
static const uint32_t mlpx_qs_begin[MLPX_N_TREE + 1] = { @QS_BEGIN@ };
/* per tree its leaves left to right (node ids, for mlpx_leaf); one more at the end:
   a tree with fewer than 64 leaves always keeps its unused high bits, so even a word
   that lost every leaf (impossible by construction) stays in bounds */
static const uint32_t mlpx_qs_leaf[] = { @QS_LEAVES@ };
static const uint32_t mlpx_qs_leaf_begin[MLPX_N_TREE] = { @QS_LEAF_BEGIN@ };

#if MLPX_LEAF_WIDTH == 1
/* scalar leaves: each tree's leaf values by position, one load less per row and tree */
static const double mlpx_qs_value[] = { @QS_VALUES@ };
#define MLPX_QS_ADD_LEAVES                                                                           \
  {                                                                                                  \
    const double* val = mlpx_qs_value + mlpx_qs_leaf_begin[t];                                       \
    for (int k = 0; k < MLPX_QS_ROWS; ++k) out[(r + k) * MLPX_N_OUT + o] += val[__builtin_ctzll(v[k])]; \
  }
#else
#define MLPX_QS_ADD_LEAVES                                                                           \
  for (int k = 0; k < MLPX_QS_ROWS; ++k) mlpx_add_leaf(lf[__builtin_ctzll(v[k])], o, out + (r + k) * MLPX_N_OUT);
#endif

/* rows 0..n (a multiple of MLPX_QS_ROWS) of the row buffer xb, every tree */
#define MLPX_QS_BODY                                                                                 \
  for (int t = 0; t < MLPX_N_TREE; ++t) {                                                            \
    const mlpx_qs_test* b = mlpx_qs_tests + mlpx_qs_begin[t];                                        \
    const mlpx_qs_test* e = mlpx_qs_tests + mlpx_qs_begin[t + 1];                                    \
    const uint32_t* lf = mlpx_qs_leaf + mlpx_qs_leaf_begin[t];                                       \
    const int32_t o = mlpx_out[t];                                                                   \
    for (int64_t r = 0; r < n; r += MLPX_QS_ROWS) {                                                  \
      uint64_t v[MLPX_QS_ROWS];                                                                      \
      for (int k = 0; k < MLPX_QS_ROWS; ++k) v[k] = ~UINT64_C(0);                                    \
      for (const mlpx_qs_test* p = b; p < e; ++p) {                                                  \
        const uint32_t* x = xb + p->col + r;                                                         \
        const uint32_t key = p->key;                                                                 \
        const uint64_t keep = p->keep;                                                               \
        for (int k = 0; k < MLPX_QS_ROWS; ++k) v[k] &= key < x[k] ? keep : ~UINT64_C(0);             \
      }                                                                                              \
      MLPX_QS_ADD_LEAVES                                                                             \
    }                                                                                                \
  }

static void mlpx_qs_portable(const uint32_t* xb, int64_t n, double* out) { MLPX_QS_BODY }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MLPX_PORTABLE_STEP)
/* The same code for wider vectors, picked at run time, so a library stays portable
   across CPUs of one architecture (the cache tag does not name the CPU model). */
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq"))) static void mlpx_qs_avx512(
    const uint32_t* xb, int64_t n, double* out) { MLPX_QS_BODY }
__attribute__((target("avx2,bmi"))) static void mlpx_qs_avx2(const uint32_t* xb, int64_t n, double* out) {
  MLPX_QS_BODY
}
#endif

static void mlpx_qs(const uint32_t* xb, int64_t n, double* out) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(MLPX_PORTABLE_STEP)
#ifndef MLPX_QS_NO_AVX512 /* (tests build with it to run the AVX2 code on AVX-512 machines) */
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq")) {
    mlpx_qs_avx512(xb, n, out);
    return;
  }
#endif
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi")) {
    mlpx_qs_avx2(xb, n, out);
    return;
  }
#endif
  mlpx_qs_portable(xb, n, out);
}
#endif

static void mlpx_block(const double* X, int64_t rs, int64_t cs, int64_t n, int round32, void* scratch,
                       double* out) {
  uint32_t* xb = (uint32_t*)scratch;
  /* feature by feature: reads each input column (feature-major X) in order */
  for (int j = 0; j < MLPX_N_FEATURE; ++j)
    mlpx_keys(X + j * cs, rs, n, j, round32, xb + (2 * j) * MLPX_BLOCK, xb + (2 * j + 1) * MLPX_BLOCK);
#if MLPX_EVALUATOR == 3
  const int64_t rest = n % MLPX_QS_ROWS;
  mlpx_qs(xb, n - rest, out);
#else
  const int64_t rest = n % MLPX_LANES;
  for (int t = 0; t < MLPX_N_TREE; ++t) {
    const mlpx_idx root = mlpx_root[t];
    const int32_t depth = mlpx_depth[t], o = mlpx_out[t];
    /* The leaves a lane group reaches are added while the next group walks its first
       level (software pipelining): adding them right after the walk would wait for
       the end of its dependent chain with nothing else to do. */
    mlpx_idx done[MLPX_LANES];
    int64_t done_r = -1;
#define MLPX_ROOT(k) i[k] = root;
#define MLPX_DONE(k) done[k] = i[k];
#define MLPX_ADD_DONE(k) mlpx_add_leaf(done[k], o, out + (done_r + k) * MLPX_N_OUT);
    for (int64_t r = 0; r + MLPX_LANES <= n; r += MLPX_LANES) {
      const uint32_t* x = xb + r;
      mlpx_idx i[MLPX_LANES];
      MLPX_EACH_LANE(MLPX_ROOT)
      MLPX_WALK(i, x, depth > 0, 1);
      if (done_r >= 0) {
        MLPX_EACH_LANE(MLPX_ADD_DONE)
      }
      MLPX_WALK(i, x, depth - 1, 1);
      MLPX_EACH_LANE(MLPX_DONE)
      done_r = r;
    }
    if (done_r >= 0) {
      MLPX_EACH_LANE(MLPX_ADD_DONE)
    }
  }
#endif
  /* rows left over (fewer than a lane group or a QuickScorer group, e.g. a one-row
     call): MLPX_LANES trees
     at a time for one row, walked to the deepest of them (leaves are fixed points),
     in groups of trees of similar depth (mlpx_tail_tree: the trees by depth) so that
     little of the walk is spent at leaves; the leaves reached are then added in tree
     order, so the sums round exactly as above */
  mlpx_idx* leaf = (mlpx_idx*)(xb + 2 * MLPX_N_FEATURE * MLPX_BLOCK);
#define MLPX_TREE_ROOT(k) i[k] = mlpx_root[mlpx_tail_tree[g * MLPX_LANES + k]];
#define MLPX_LEAF(k) leaf[mlpx_tail_tree[g * MLPX_LANES + k]] = i[k];
  for (int64_t r = n - rest; r < n; ++r) {
    const uint32_t* x = xb + r;
    double* o = out + r * MLPX_N_OUT;
    int g = 0;
    for (; (g + 1) * MLPX_LANES <= MLPX_N_TREE; ++g) {
      mlpx_idx i[MLPX_LANES];
      MLPX_EACH_LANE(MLPX_TREE_ROOT)
      MLPX_WALK(i, x, mlpx_tail_depth[g], 0);
      MLPX_EACH_LANE(MLPX_LEAF)
    }
    for (int k = g * MLPX_LANES; k < MLPX_N_TREE; ++k) {
      const int t = (int)mlpx_tail_tree[k];
      mlpx_idx i = mlpx_root[t];
      for (int d = 0; d < mlpx_depth[t]; ++d) {
        const uint64_t n_ = mlpx_node[i];
        i = mlpx_first[i] + ((uint32_t)(n_ >> 32) < x[(uint32_t)n_]);
      }
      leaf[t] = i;
    }
    for (int t = 0; t < MLPX_N_TREE; ++t) mlpx_add_leaf(leaf[t], mlpx_out[t], o);
  }
}
#endif

static int mlpx_range(const double* X, int64_t rs, int64_t cs, int64_t begin, int64_t end, int round32,
                      double* out) {
  void* scratch = malloc(MLPX_SCRATCH);
  if (scratch == NULL) return -2;
  memset(out + begin * MLPX_N_OUT, 0, sizeof(double) * (size_t)(end - begin) * MLPX_N_OUT);
  for (int64_t b = begin; b < end; b += MLPX_BLOCK) {
    int64_t n = end - b < MLPX_BLOCK ? end - b : MLPX_BLOCK;
    mlpx_block(X + b * rs, rs, cs, n, round32, scratch, out + b * MLPX_N_OUT);
    /* sums -> margins, as TL2cgen's predict() does after its trees */
    for (int64_t r = 0; r < n; ++r) {
      double* o = out + (b + r) * MLPX_N_OUT;
      for (int k = 0; k < MLPX_N_OUT; ++k) {
#if MLPX_AVERAGED
        o[k] /= mlpx_divisor[k];
#endif
        o[k] += mlpx_base_score[k];
      }
    }
  }
  free(scratch);
  return 0;
}

typedef struct {
  const double* X;
  int64_t rs, cs, begin, end;
  int round32;
  double* out;
  int rc;
} mlpx_job;

static void* mlpx_thread_main(void* arg) {
  mlpx_job* job = (mlpx_job*)arg;
  job->rc = mlpx_range(job->X, job->rs, job->cs, job->begin, job->end, job->round32, job->out);
  return NULL;
}

int32_t mlpx_abi_version(void) { return MLPX_ABI; }
int32_t mlpx_num_feature(void) { return MLPX_N_FEATURE; }
int32_t mlpx_num_output(void) { return MLPX_N_OUT; }

/*
 * out[nrow][MLPX_N_OUT] = per-output margins for the nrow x ncol matrix whose element
 * (r, j) is X[r * rs + j * cs] (rs, cs in elements: C order has cs = 1, the feature-
 * major order compiler/preprocess.py produces has rs = 1).
 * Returns 0, -1 on a shape mismatch (or round32 = 0 for a library whose keys are
 * float32 images), -2 when memory runs out.
 */
int32_t mlpx_predict_margins(const double* X, int64_t nrow, int64_t ncol, int64_t rs, int64_t cs,
                             int32_t round32, int32_t nthread, double* out) {
  if (ncol != MLPX_N_FEATURE || nrow < 0 || rs < 0 || cs < 0) return -1;
#if MLPX_EVALUATOR >= 2 && MLPX_KEYS == 1
  if (!round32) return -1; /* keys are float32 images: built for float32 inputs only */
#endif
  if (nrow == 0) return 0;
  int64_t most = (nrow + MLPX_MIN_ROWS_PER_THREAD - 1) / MLPX_MIN_ROWS_PER_THREAD;
  if (nthread > most) nthread = (int32_t)most;
  if (nthread > MLPX_MAX_THREADS) nthread = MLPX_MAX_THREADS;
  if (nthread <= 1) return mlpx_range(X, rs, cs, 0, nrow, round32, out);

  mlpx_job jobs[MLPX_MAX_THREADS];
  pthread_t tids[MLPX_MAX_THREADS];
  int started[MLPX_MAX_THREADS];
  int64_t per = (nrow + nthread - 1) / nthread;
  for (int t = 0; t < nthread; ++t) {
    int64_t begin = t * per, end = (t + 1) * per;
    jobs[t].X = X;
    jobs[t].rs = rs;
    jobs[t].cs = cs;
    jobs[t].begin = begin < nrow ? begin : nrow;
    jobs[t].end = end < nrow ? end : nrow;
    jobs[t].round32 = round32;
    jobs[t].out = out;
    jobs[t].rc = 0;
    started[t] = 0;
  }
  for (int t = 1; t < nthread; ++t) {
    started[t] = pthread_create(&tids[t], NULL, mlpx_thread_main, &jobs[t]) == 0;
  }
  mlpx_thread_main(&jobs[0]);
  int rc = jobs[0].rc;
  for (int t = 1; t < nthread; ++t) {
    if (started[t]) pthread_join(tids[t], NULL);
    else mlpx_thread_main(&jobs[t]); /* could not start a thread: do its share here */
    if (jobs[t].rc != 0) rc = jobs[t].rc;
  }
  return rc;
}
"""
