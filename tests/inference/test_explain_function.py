"""`<function>_explain` is a model function (kind "explain", jsonb) only for models
whose catalog row names its stub: models created before catalog migration 7 have
none, and their `<fn>_explain` is left to Postgres."""

from __future__ import annotations

from proxy.inference.interceptor import _functions
from proxy.inference.registry import DatabaseModels, ModelEntry


def _entry(explain_signature: str | None, problem_type: str = "REGRESSION") -> ModelEntry:
    return ModelEntry(7, "public", "m", "public", "predict_price", "public.predict_price(integer)", ("rooms",),
                      ("integer",), "double precision", "READY", None, problem_type, "sha",
                      explain_signature=explain_signature)


def test_explain_is_a_function_of_a_model_that_has_its_stub():
    models = DatabaseModels.build([_entry("public.predict_price_explain(integer)")])
    assert models.mentions_call(b"SELECT predict_price_explain(rooms) FROM t")
    assert models.mentions_call(b'SELECT "PREDICT_PRICE_EXPLAIN" (rooms) FROM t')
    (explain,) = _functions(models)["predict_price_explain"]
    assert (explain.kind, explain.return_type, explain.model_id, explain.arg_types) \
        == ("explain", "jsonb", 7, ("integer",))


def test_a_model_from_before_the_migration_has_none():
    models = DatabaseModels.build([_entry(None)])
    assert not models.mentions_call(b"SELECT predict_price_explain(rooms) FROM t")
    assert set(_functions(models)) == {"predict_price"}
