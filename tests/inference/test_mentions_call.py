"""The registry's per-statement prefilter: no false negatives for calls, and the
common statement without a model call costs no parse."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from proxy.inference.registry import DatabaseModels, ModelEntry


def _entry(function_name: str) -> ModelEntry:
    return ModelEntry(model_id=1, schema="public", model_name="m", function_schema="public",
                      function_name=function_name, function_signature=f"{function_name}(integer)",
                      arg_names=("a",), arg_types=("integer",), return_type="integer",
                      state="READY", failure_reason=None, problem_type="REGRESSION",
                      artifact_sha256=None)


MODELS = DatabaseModels.build([_entry("predict_churn"), _entry("Quoted_Fn"), _entry("prédire")])


def test_calls_are_found_in_every_spelling():
    for sql in ("SELECT predict_churn(age) FROM t",
                "SELECT PREDICT_CHURN (age) FROM t",
                'SELECT "predict_churn"(age) FROM t',
                'SELECT public."predict_churn" \n\t (age) FROM t',
                "SELECT x FROM t WHERE predict_churn_prob(a) -> 'p' > 0",
                'SELECT "Quoted_Fn"(1)',
                "SELECT prédire(1)",
                "SELECT explain_model('m')",
                "SELECT 1;SELECT predict_churn(1)"):
        assert MODELS.mentions_call(sql.encode()), sql


def test_names_that_are_not_calls_are_not_found():
    for sql in ("SELECT predict_churn FROM t",           # a column
                "SELECT my_predict_churn(1)",            # another function
                "SELECT predict_churn2(1)",
                "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
                "INSERT INTO h (tid, bid) VALUES (1, 2)"):
        assert not MODELS.mentions_call(sql.encode()), sql


_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_filler = st.text(alphabet=string.printable + "é(", max_size=40)
_blank = st.text(alphabet=" \t\r\n\f\v", max_size=3)


@given(before=_filler, after=_filler, blank=_blank, quoted=st.booleans(),
       name=st.sampled_from(sorted(MODELS.by_function)), upper=st.booleans())
def test_no_false_negatives(before, after, blank, quoted, name, upper):
    # Postgres folds only ASCII letters of unquoted names in multibyte encodings.
    spelled = name.translate(_ASCII_UPPER) if upper else name
    call = (f'"{spelled}"' if quoted else spelled) + blank + "("
    # The call must start a new identifier, as it does in SQL.
    sql = before + " " + call + after
    assert MODELS.mentions_call(sql.encode())


@given(st.text(alphabet=string.printable.replace("(", ""), max_size=200))
def test_statements_without_parentheses_never_match(sql):
    assert not MODELS.mentions_call(sql.encode())
