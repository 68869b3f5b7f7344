"""The compiled model library: generating its driver source and calling it.

A library is the batch driver in `driver_source.py` plus the trees, either as
TL2cgen's generated code or as node arrays (`node_tables.py`). It is called through ctypes, which releases the GIL for the whole
native call, so a large batch on one thread never stalls the proxy's event loop
thread, and the driver is reentrant, so any number of threads may call at once.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import numpy as np
import treelite

from .driver_source import DRIVER_C
from .node_tables import NodeTables
from .quick_scorer import QuickScorerTables
from .trees import TreeLayout, split_thresholds

ABI_VERSION = 5
EVALUATOR_TL2CGEN = 1
EVALUATOR_NODE_ARRAYS = 2
EVALUATOR_QUICK_SCORER = 3
EVALUATOR_NAMES = {EVALUATOR_TL2CGEN: "tl2cgen", EVALUATOR_NODE_ARRAYS: "node_arrays",
                   EVALUATOR_QUICK_SCORER: "quick_scorer"}
#: rows walking one tree together in the node-array evaluator: the walk is bound by
#: each row's chain of dependent loads, so more lanes overlap more of them; 10 is the
#: most whose indices x86-64 keeps in registers with the walk's 5 other values
#: (measured, CPU time: 8 -> 10 lanes +7-10%, 16 lanes in C with spills below 10)
LANES = 10
#: rows per block in the node-array evaluator, a multiple of LANES (its row buffer,
#: two 32-bit keys per feature per row, 25 KB for 20 features, stays in L1 while a
#: tree is walked)
NODE_BLOCK_ROWS = 160
#: the node-array walk is tiny code; -O2 for the unrolled lanes
NODE_ARRAYS_COMPILE_OPTIONS = ["-pthread", "-O2"]
#: the QuickScorer loops are written for the vectorizer
QUICK_SCORER_COMPILE_OPTIONS = ["-pthread", "-O2", "-ftree-vectorize", "-fvect-cost-model=dynamic"]
#: Node arrays are chosen unless their fixed-depth walks (every row takes each tree's
#: full depth) take more than this many times the trees' mean leaf depth, which
#: approximates the nodes an if/else walk visits. Measured (CPU time, 1 thread): a
#: node-array step costs 0.7-1.2 ns, an if/else node 1.7-3.6 ns on held-out rows
#: (mispredictions), so node arrays stay ahead up to a ratio of about 2.4; see
#: docs/compiler.md.
NODE_ARRAYS_MAX_WASTE = 2.0
#: QuickScorer is chosen (for trees of at most 64 leaves) unless its tests, which it
#: applies to every row, outnumber the node-array walk's steps by more than this.
#: Measured (CPU time, 1 thread, 1e5 rows, 15 interleaved runs, evaluator 3 against
#: 2): 2.8 tests per step (HistGradientBoosting 200 x 31 leaves) 1.72x, 4.5 (300 x
#: 63 leaves) 1.48x, 6.3 (XGBoost 300 x depth 6) 0.92x: even at about 6, so 5.5.
QUICK_SCORER_MAX_TESTS_PER_STEP = 5.5
#: Rows per block: one translation unit runs over a whole block before the next
#: unit. Measured: 1 row (TL2cgen's own order) 200-280k rows/s, 64 rows 400k,
#: 512 rows 480-500k on a 200-iteration boosted model; little gain beyond 512.
BLOCK_ROWS = 512
#: Nodes per translation unit. Measured on 100x depth-8 forests and 200-iteration
#: boosted models: ~1k nodes per unit keeps a unit's code hot in the instruction cache
#: while the driver runs it over a block of rows (+30-50% rows/s over one big unit),
#: and small functions also compile faster.
NODES_PER_UNIT = 1024
MAX_UNITS = 512
#: Appended after TL2cgen's own "-O3 -fPIC -std=c99", so -O1 wins: on this generated
#: code (long if/else chains) it runs as fast as -O2/-O3 and compiles in ~60% of the
#: time. -pthread for the driver's worker threads.
COMPILE_OPTIONS = ["-pthread", "-O1"]
#: below this many rows per thread, extra threads cost more than they save
MIN_ROWS_PER_THREAD = 2048
_F64 = np.dtype(np.float64)
_UNIT_DECL = re.compile(r"void\s+predict_unit(\d+)\s*\(")


class NativeLoadError(RuntimeError):
    """A library file does not load or does not match the model it claims to be."""


def unit_count(header_h: str) -> int:
    """Number of predict_unitN functions TL2cgen declared in header.h."""
    units = sorted(int(m) for m in _UNIT_DECL.findall(header_h))
    if not units or units != list(range(len(units))):
        raise ValueError("header.h does not declare predict_unit0..N (was parallel_comp set?)")
    return len(units)


def render_driver(model: treelite.Model, n_units: int) -> str:
    """The driver's C source for TL2cgen's generated code (evaluator 1): its threshold
    table, unit list and the constants that turn sums into margins."""
    tables, _ = split_thresholds(model)
    flat: list[str] = []
    begin: list[int] = []
    for table in tables:
        begin.append(len(flat))
        flat.extend(_c_double(v) for v in table)
        flat.append("INFINITY")  # sentinel read by mlpx_quantize
    return _render(model, EVALUATOR_TL2CGEN, BLOCK_ROWS, {
        "N_UNIT": str(n_units),
        "THRESHOLDS": _c_list(flat),
        "TH_BEGIN": ", ".join(map(str, begin)),
        "TH_LEN": ", ".join(str(len(t)) for t in tables),
        "UNITS": ", ".join(f"predict_unit{i}" for i in range(n_units)),
    })


def render_node_driver(model: treelite.Model, tables: NodeTables, precision: str, *,
                       quick_scorer: bool = False) -> str:
    """The whole library source for the node-array evaluator (evaluator 2): the
    driver plus the model's nodes packed into 64-bit words, with 32-bit threshold keys
    for the input precision the model compares in (see `node_keys`). With
    `quick_scorer`, evaluator 3: the same plus the trees as QuickScorer bitvectors
    (`quick_scorer.QuickScorerTables`; raises node_tables.Unsuitable for trees of more
    than 64 leaves), the node arrays then only walking rows left over from its groups."""
    keys, ranks = node_keys(tables, precision, int(model.num_feature))
    extra = _quick_scorer_fields(tables, keys) if quick_scorer else {}
    column = 2 * tables.feature.astype(np.uint64) + tables.missing_second.astype(np.uint64)
    words = (keys.astype(np.uint64) << np.uint64(32)) | (column * np.uint64(NODE_BLOCK_ROWS))
    is_leaf = tables.first == np.arange(len(tables.first))
    leaves = np.zeros((len(tables.first), tables.leaf_width))
    leaves[is_leaf] = tables.leaves[tables.leaf_of[is_leaf]]
    # a row walked alone visits LANES trees at once, grouped by depth
    by_depth = np.argsort(tables.depths, kind="stable")
    full = len(by_depth) // LANES * LANES
    group_depths = tables.depths[by_depth[:full]].reshape(-1, LANES).max(axis=1)
    flat: list[str] = []
    begin: list[int] = []
    for table in ranks or []:
        begin.append(len(flat))
        flat.extend(_c_double(v) for v in table)
    return _render(model, EVALUATOR_QUICK_SCORER if quick_scorer else EVALUATOR_NODE_ARRAYS, NODE_BLOCK_ROWS, {
        **extra,
        "N_TREE": str(len(tables.roots)),
        "LANES": str(LANES),
        "LANE_LIST": " ".join(f"M({k})" for k in range(LANES)),
        "WALK_ASM": walk_asm(LANES),
        "N_NODE": str(len(tables.first)),
        "LEAF_WIDTH": str(tables.leaf_width),
        "KEYS": "2" if ranks is not None else "1",
        "NODES": _c_list([f"UINT64_C(0x{int(w):016x})" for w in words], per_line=4),
        "FIRST": _c_list([f"{f}u" for f in tables.first], per_line=8),
        "RANK_T": _c_list(flat or ["0.0"]),
        "RANK_BEGIN": ", ".join(map(str, begin)),
        "RANK_LEN": ", ".join(str(len(t)) for t in ranks or []),
        "LEAVES": _c_list([_c_double(v) for v in leaves.reshape(-1)]),
        "ROOTS": _c_list([f"{v}u" for v in tables.roots], per_line=8),
        "DEPTHS": _c_list([str(v) for v in tables.depths], per_line=16),
        "OUTS": _c_list([str(v) for v in tables.outputs], per_line=16),
        "TAIL_TREES": _c_list([f"{v}u" for v in by_depth], per_line=16),
        "TAIL_DEPTHS": _c_list([str(v) for v in group_depths.tolist() or [0]], per_line=16),
    })


def _quick_scorer_fields(tables: NodeTables, keys: np.ndarray) -> dict[str, str]:
    qs = QuickScorerTables.of(tables, keys)
    column = (2 * tables.feature.astype(np.int64) + tables.missing_second) * NODE_BLOCK_ROWS
    tests = [f"{{{int(column[i])}u, {int(keys[i])}u, UINT64_C(0x{int(k):016x})}}"
             for i, k in zip(qs.node.tolist(), qs.keep.tolist())]
    return {
        "N_TEST": str(qs.n_tests),
        "QS_TESTS": _c_list(tests + ["{0u, 0u, 0u}"], per_line=2),
        "QS_BEGIN": _c_list([f"{v}u" for v in qs.begin], per_line=8),
        "QS_LEAVES": _c_list([f"{v}u" for v in qs.leaf_node.tolist() + [0]], per_line=8),
        "QS_LEAF_BEGIN": _c_list([f"{v}u" for v in qs.leaf_begin[:-1]], per_line=8),
        # scalar leaves by position (plus one, as QS_LEAVES)
        "QS_VALUES": _c_list([_c_double(tables.leaves[tables.leaf_of[i], 0]) for i in qs.leaf_node.tolist()]
                             + ["0.0"]),
    }


def walk_asm(lanes: int) -> str:
    """The x86-64 MLPX_WALK macro of the node-array driver for `lanes` lanes: a loop
    of `lanes` steps, every lane's node index in its own register (lanes + 5
    registers in all, so at most 10 lanes)."""
    if not 1 <= lanes <= 10:
        raise ValueError("the walk keeps lanes + 5 values in x86-64's 15 registers")
    steps = []
    for k in range(lanes):
        steps += [f"movq (%[node],%[i{k}],8), %[n]", f"movl %c[first](%[node],%[i{k}],4), %k[i{k}]",
                  "movl %k[n], %k[c]", "shrq $32, %[n]", f"cmpl {k}*%c[step](%[x],%[c],4), %k[n]", f"adcl $0, %k[i{k}]"]
    body = ["1:"] + steps + ["decq %[s]", "jnz 1b"]
    outputs = [f'[i{k}] "+r"((I)[{k}])' for k in range(lanes)] + ['[n] "=&r"(n_)', '[c] "=&r"(c_)', '[s] "+r"(s_)']
    inputs = ['[node] "r"(&mlpx_tab)', '[x] "r"(X)', '[first] "i"(offsetof(__typeof__(mlpx_tab), first))',
              '[step] "i"(4 * (STRIDE))']
    lines = ["#define MLPX_WALK(I, X, STEPS, STRIDE)", "  do {", "    uint64_t n_, c_;",
             "    int64_t s_ = (STEPS);", "    if (s_ > 0)", "      __asm__("]
    lines += [f'        "{b}\\n\\t"' for b in body]
    lines += ["        : " + ", ".join(outputs), "        : " + ", ".join(inputs), '        : "cc", "memory");',
              "  } while (0)"]
    width = max(len(line) for line in lines) + 1
    return "\n".join(line.ljust(width) + "\\" for line in lines[:-1]) + "\n" + lines[-1]


def node_keys(tables: NodeTables, precision: str, n_features: int) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """(uint32 threshold key per node, per-feature rank tables or None). Leaves get
    UINT32_MAX, which no input key exceeds.

    float32 models: the driver's key of an input is the order-preserving image of the
    float32 value, and a node "x <= t" keeps the largest float32 <= t, which sends
    every float32 x the same way. float64 models: the key is the input's rank among
    the feature's sorted distinct thresholds T, 1 + #(T < x), and "x <= T[k]" becomes
    "rank <= k + 1"; NaN keys are 0 and UINT32_MAX either way."""
    split = tables.first != np.arange(len(tables.first))
    keys = np.full(len(tables.first), 2**32 - 1, dtype=np.uint64)
    if precision == "float32":
        with np.errstate(over="ignore"):  # beyond float32's range: +-inf, then FLT_MAX below
            t32 = tables.threshold[split].astype(np.float32)
        t32 = np.where(t32.astype(np.float64) > tables.threshold[split],
                       np.nextafter(t32, np.float32(-np.inf)), t32)
        keys[split] = float32_keys(t32)
        return keys, None
    ranks = []
    for j in range(n_features):
        mine = split & (tables.feature == j)
        table = np.unique(tables.threshold[mine])
        keys[mine] = np.searchsorted(table, tables.threshold[mine]) + 1
        ranks.append(table)
    return keys, ranks


def float32_keys(values: np.ndarray) -> np.ndarray:
    """The driver's mlpx_key for float32 models: uint32 images of float32 values that
    order like the values (-0.0 as +0.0)."""
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.uint32).astype(np.uint64)
    negative = (bits >> np.uint64(31)).astype(bool)
    return np.where(negative, ~bits & np.uint64(0xFFFFFFFF), bits | np.uint64(1 << 31))


def _render(model: treelite.Model, evaluator: int, block: int, fields: dict[str, str]) -> str:
    layout = TreeLayout.of(model)
    common = {
        "N_FEATURE": str(int(model.num_feature)),
        "N_OUT": str(layout.n_outputs),
        "EVALUATOR": str(evaluator),
        "BLOCK": str(block),
        "MIN_ROWS_PER_THREAD": str(MIN_ROWS_PER_THREAD),
        "AVERAGED": "1" if layout.averaged else "0",
        "DIVISOR": ", ".join(_c_double(v) for v in layout.divisor),
        "BASE_SCORE": ", ".join(_c_double(v) for v in layout.base_scores),
    }
    source = DRIVER_C
    for key, value in {**common, **fields}.items():
        source = source.replace(f"@{key}@", value)
    return source


def _c_list(items: list[str], per_line: int = 4) -> str:
    return ",\n  ".join(", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))


def _c_double(v: float) -> str:
    """Exact C literal for a double (hex float, so no decimal rounding is involved)."""
    v = float(v)
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return v.hex()


class NativeLibrary:
    """A loaded model library; `margins` is the one native call per batch."""

    def __init__(self, path: Path | str, *, n_features: int, n_outputs: int) -> None:
        self.path = Path(path)
        try:
            lib = ctypes.CDLL(str(self.path), mode=getattr(ctypes, "RTLD_LOCAL", 0))
            abi = lib.mlpx_abi_version
            num_feature = lib.mlpx_num_feature
            num_output = lib.mlpx_num_output
            fn = lib.mlpx_predict_margins
        except (OSError, AttributeError) as exc:
            raise NativeLoadError(f"cannot load model library {self.path}: {exc}") from exc
        for f in (abi, num_feature, num_output):
            f.restype = ctypes.c_int32
            f.argtypes = []
        got = (abi(), num_feature(), num_output())
        if got != (ABI_VERSION, n_features, n_outputs):
            raise NativeLoadError(
                f"model library {self.path} has (abi, features, outputs) = {got}, "
                f"expected {(ABI_VERSION, n_features, n_outputs)}")
        fn.restype = ctypes.c_int32
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p]
        self._lib = lib  # keeps the library mapped as long as this object lives
        self._fn = fn
        #: mlpx_predict_margins' address, for callers in C (valid while this lives)
        self.function_address = ctypes.cast(fn, ctypes.c_void_p).value
        self.n_features = n_features
        self.n_outputs = n_outputs

    def margins(self, X: np.ndarray, *, round32: bool, nthread: int = 1) -> np.ndarray:
        """Treelite margins, shape (rows, outputs), for the rows of X: float64, C order
        or feature-major (Fortran) order, which is what Preprocessor.transform makes."""
        if X.dtype != _F64 or X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a float64 matrix with {self.n_features} columns")
        flags = X.flags
        if flags.c_contiguous:
            rs, cs = X.shape[1], 1
        elif flags.f_contiguous:
            rs, cs = 1, X.shape[0]
        else:
            raise ValueError("expected a C- or Fortran-contiguous matrix")
        out = np.empty((X.shape[0], self.n_outputs), dtype=np.float64)
        rc = self._fn(_address(X), X.shape[0], X.shape[1], rs, cs, int(round32), max(1, int(nthread)),
                      _address(out))
        if rc != 0:
            raise MemoryError("model library could not allocate its work buffer") if rc == -2 else \
                RuntimeError(f"model library refused the batch (code {rc})")
        return out


def _address(arr: np.ndarray) -> int:
    """Data pointer of a contiguous array. `arr.ctypes.data` builds a helper object
    and costs ~2.5 us, a third of a one-row call; a ctypes view of a writable
    C-contiguous buffer costs ~0.8 us."""
    flags = arr.flags
    if flags.writeable and flags.c_contiguous and arr.size:
        return ctypes.addressof(ctypes.c_char.from_buffer(arr))
    return arr.ctypes.data
