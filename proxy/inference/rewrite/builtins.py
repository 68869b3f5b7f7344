"""What the catalog would say about some built-in functions, known without asking it.

The rewrite must decide from syntax alone whether a call's arguments are per-row or
per-group values (aggregates), whether evaluating them twice gives the same result
(volatile functions), and whether they can sit inside CASE (set-returning functions
cannot).  User-defined aggregates and functions are not known here; the module
docstrings of the planners say what that costs.
"""

from __future__ import annotations

from pglast import ast

from .functions import call_name

AGGREGATES = frozenset("""
    any_value array_agg avg bit_and bit_or bit_xor bool_and bool_or count every
    json_agg json_agg_strict json_object_agg json_object_agg_strict json_object_agg_unique
    json_object_agg_unique_strict jsonb_agg jsonb_agg_strict jsonb_object_agg
    jsonb_object_agg_strict jsonb_object_agg_unique jsonb_object_agg_unique_strict
    max min range_agg range_intersect_agg string_agg sum xmlagg
    corr covar_pop covar_samp regr_avgx regr_avgy regr_count regr_intercept regr_r2
    regr_slope regr_sxx regr_sxy regr_syy stddev stddev_pop stddev_samp variance
    var_pop var_samp mode percentile_cont percentile_disc rank dense_rank percent_rank
    cume_dist grouping
""".split())

# Functions whose value differs between two evaluations in one transaction (or that
# have side effects): the general path evaluates argument expressions twice.
VOLATILE = frozenset("""
    random random_normal setseed nextval setval currval lastval clock_timestamp
    statement_timestamp timeofday gen_random_uuid uuid_generate_v1 uuid_generate_v1mc
    uuid_generate_v4 txid_current pg_current_xact_id pg_sleep pg_sleep_for pg_sleep_until
    pg_notify dblink_exec
""".split())

SET_RETURNING = frozenset("""
    generate_series generate_subscripts unnest regexp_matches regexp_split_to_table
    string_to_table json_array_elements json_array_elements_text jsonb_array_elements
    jsonb_array_elements_text json_each json_each_text jsonb_each jsonb_each_text
    json_object_keys jsonb_object_keys json_populate_recordset jsonb_populate_recordset
    json_to_recordset jsonb_to_recordset jsonb_path_query pg_get_keywords pg_options_to_table
    ts_stat ts_parse ts_token_type pg_ls_dir pg_listening_channels
""".split())


def _builtin_name(node: ast.FuncCall) -> str | None:
    schema, name = call_name(node)
    return name if schema in (None, "pg_catalog") else None


def is_aggregate(node: ast.FuncCall) -> bool:
    """A call that aggregates rows (not as a window function), as far as syntax shows."""
    if node.over is not None:
        return False
    if node.agg_star or node.agg_distinct or node.agg_order or node.agg_filter or node.agg_within_group:
        return True
    return _builtin_name(node) in AGGREGATES


def is_volatile(node: ast.FuncCall) -> bool:
    return _builtin_name(node) in VOLATILE


def is_set_returning(node: ast.FuncCall) -> bool:
    return _builtin_name(node) in SET_RETURNING
