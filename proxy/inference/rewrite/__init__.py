"""SQL analysis and rewriting for model calls inside queries (pure, no I/O).

    if find_model_calls(sql, functions):              # after the text prefilter
        plan = plan_query(sql, functions, search_path=current_schemas)
        # None -> forward the original bytes; PgError -> ErrorResponse
        # StreamingPlan / GeneralPlan / ExplainPlan -> see plan.py

DESIGN.md, "Inference inside queries", describes the two paths; streaming.py and
general.py say precisely which statement shapes take which.
"""

from .functions import ModelFunction
from .plan import ArgColumn, ExplainPlan, GeneralPlan, InferenceStep, QueryPlan, StreamingCall, StreamingPlan
from .planner import find_model_calls, plan_query
from .text import SqlText

__all__ = [
    "ArgColumn",
    "ExplainPlan",
    "GeneralPlan",
    "InferenceStep",
    "ModelFunction",
    "QueryPlan",
    "SqlText",
    "StreamingCall",
    "StreamingPlan",
    "find_model_calls",
    "plan_query",
]
