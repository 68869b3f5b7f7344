"""GRANT/REVOKE of model privileges: what is ours, what it means, where errors point."""

from __future__ import annotations

import pytest

from proxy.errors import PgError
from proxy.ml_commands.privileges import privilege_statements
from proxy.ml_statements import Grantee, ModelName, ModelPrivileges, parse_ml_statement


def parse(sql: str):
    return parse_ml_statement(sql)


@pytest.mark.parametrize("sql", [
    "GRANT SELECT ON model TO bob",          # a table named model
    "GRANT ALL ON model, t TO bob",
    "GRANT SELECT ON model.t TO bob",        # a table in schema model
    "GRANT model TO bob",                    # a role named model
    "GRANT EXECUTE ON FUNCTION model() TO bob",
    "REVOKE ALL ON TABLE model FROM bob",
    "GRANT CREATE ON SCHEMA model TO bob",
    "GRANT USAGE ON SCHEMA s TO model",
    "GRANT SELECT ON t TO bob; -- model",
    "GRANT SELECT ON 'unterminated model",
])
def test_other_grants_are_postgres(sql):
    assert parse(sql) is None


def test_grant_on_models_with_every_grantee_kind():
    stmt = parse('grant all privileges on model s."M x", n to bob with grant option, '
                 'role r, group "G", public, current_user')
    assert stmt == ModelPrivileges(
        True, (ModelName("s", "M x"), ModelName(None, "n")),
        (Grantee("user", "bob", True), Grantee("role", "r"), Grantee("group", "G"),
         Grantee("public"), Grantee("current_user")))
    assert stmt.model_positions == (31, 40)
    assert stmt.tag == "GRANT"


def test_revoke_forms():
    assert parse("REVOKE GRANT OPTION FOR EXECUTE ON MODEL m FROM bob CASCADE") == ModelPrivileges(
        False, (ModelName(None, "m"),), (Grantee("user", "bob"),), True, True)
    assert parse("revoke create model from role x restrict;") == ModelPrivileges(
        False, (), (Grantee("role", "x"),))
    assert parse("GRANT CREATE MODEL TO a WITH GRANT OPTION, PUBLIC").is_create_model


def test_a_role_named_role_or_group():
    assert parse("GRANT EXECUTE ON MODEL m TO role, \"group\"").grantees == (
        Grantee("user", "role"), Grantee("user", "group"))
    assert parse("GRANT EXECUTE ON MODEL m TO role WITH GRANT OPTION").grantees == (
        Grantee("user", "role", True),)


@pytest.mark.parametrize("sql,code,position", [
    ("GRANT SELECT ON MODEL m TO bob", "0LP01", 7),
    ("GRANT EXECUTE, INSERT ON MODEL m TO bob", "0LP01", 16),
    ("GRANT EXECUTE EXECUTE ON MODEL m TO bob", "42601", 15),
    ("GRANT EXECUTE ON MODEL m TO PUBLIC WITH GRANT OPTION", "0LP01", 36),
    ("GRANT EXECUTE ON MODEL m TO ROLE r WITH GRANT OPTION", "0LP01", 36),
    ("GRANT EXECUTE ON MODEL m", "42601", 25),
    ("GRANT EXECUTE ON MODEL select TO bob", "42601", 24),
    ("REVOKE EXECUTE ON MODEL m FROM bob WITH GRANT OPTION", "42601", 36),
    ("GRANT CREATE MODEL FROM bob", "42601", 20),
])
def test_errors(sql, code, position):
    with pytest.raises(PgError) as err:
        parse(sql)
    assert (err.value.sqlstate, err.value.position) == (code, position)


def test_statements_quote_every_name():
    stmt = parse('GRANT EXECUTE ON MODEL m TO "a""b", "select", plain WITH GRANT OPTION, PUBLIC')
    sql = privilege_statements(stmt, ['public."f x"(integer)', "public.g(integer)"])
    assert sql == ['GRANT EXECUTE ON FUNCTION public."f x"(integer), public.g(integer) TO "a""b", '
                   '"select", PUBLIC', 'GRANT EXECUTE ON FUNCTION public."f x"(integer), '
                   'public.g(integer) TO plain WITH GRANT OPTION']
    revoke = parse("REVOKE GRANT OPTION FOR ALL ON MODEL m FROM CURRENT_USER, \"Bob\" CASCADE")
    assert privilege_statements(revoke, ["s.f()"]) == [
        'REVOKE GRANT OPTION FOR EXECUTE ON FUNCTION s.f() FROM CURRENT_USER, "Bob" CASCADE']
