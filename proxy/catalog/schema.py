"""The model catalog's schema in the upstream database, and its migrations.

Everything about a model lives in schema `mlproxy` of the database it was created
in, so every proxy in front of that database sees the same models.

Who may write what (catalog version 4)
--------------------------------------
- The catalog's state (rows, artifacts, signatures, states) is written only by the
  proxy's service identity: the upstream URL's user, owner of `mlproxy.models`.
  PUBLIC has no INSERT, UPDATE, DELETE or TRUNCATE on it, nor the artifact column:
  a client cannot forge a row, substitute an artifact or take another model's
  function signature, and the proxy loads artifacts only from rows its own
  identity wrote (and checks their sha256).
- Clients act through functions owned by the service identity. The SECURITY
  DEFINER ones (`record_model`, `forget_model`) run with `search_path =
  pg_catalog, pg_temp` and qualify every catalog object; they trust none of their
  arguments and check the caller: `session_user` must be a member of the model's
  owner (or, to drop, of its schema's owner, or a superuser).
- A model's SQL functions (`<fn>`, and for classifier-capable targets `<fn>_prob`
  and `<fn>_probabilities`) are stubs owned by the model's creator. A SECURITY
  DEFINER function cannot make them: whatever it creates belongs to the service
  identity, and handing it over (ALTER FUNCTION ... OWNER TO) needs the service
  identity to be a superuser or a member of every creating role, while CREATE on
  the target schema would be checked for the wrong role. So CREATE MODEL runs
  `register_model`, a SECURITY INVOKER function, on the client's own session: it
  creates the stubs as the client (Postgres checks CREATE on the function's schema
  and names the client owner), revokes EXECUTE on them from PUBLIC, and in the same
  statement calls `record_model`, which writes the row only after checking that
  the stubs exist, were created in this very transaction (their pg_proc xmin), are
  exact stubs (language, body, kind, types), belong to one role the session user
  is a member of, and collide with no other model function (same schema, name and
  argument count: 42723, kept unique by `model_function_names`' primary key, so no
  lock that any role could hold is needed); that this role holds CREATE MODEL and
  CREATE on the model's schema; and that the model name is free (42710).
- DROP MODEL runs `drop_model` on the client's session: DROP FUNCTION of the stubs
  as the client (Postgres allows their owner, their schema's owner and
  superusers), then `forget_model`, which deletes the row only once the stubs are
  gone and the session user is the owner, the schema's owner or a superuser.
- CREATE MODEL privilege is EXECUTE on `mlproxy.create_model_privilege()`, a
  function owned by the service identity and revoked from PUBLIC. A function
  privilege (unlike membership in a role) can be granted to PUBLIC and WITH GRANT
  OPTION, as Redshift's GRANT CREATE MODEL can, and Postgres itself decides on the
  client's session who may grant it: superusers, the service identity, and holders
  of the grant option.
- EXECUTE on a model is EXECUTE on all its stubs: GRANT/REVOKE ... ON MODEL are
  carried out as GRANT/REVOKE EXECUTE ON FUNCTION of every stub, in one statement,
  on the client's session. A new model is private (owner and superusers).
- Rows are visible (row-level security, `model_visible`) to the owner's members,
  the model schema's owner, roles with EXECUTE on the model's function, and
  superusers. PUBLIC may read only what the invoker-rights entry points look up
  (names, owner, function signatures; version 5): the artifact, the training query
  and the statement's options are read through `mlproxy.visible_models`, which
  shows each role only the models it may see and those columns only to their
  owner (SHOW MODEL and the system views read it).
- Notifications on `mlproxy_models` are hints: any role can send one, so a proxy
  only re-reads the catalog when it hears one and acts on what it reads.

Migrations are numbered; `migrate` applies the missing ones under an advisory lock,
so proxies starting at the same moment do not race. Migrations 1-3 are applied on
existing databases and are never edited; 4 closes their write paths and migrates
their rows (see its comments).
"""

from __future__ import annotations

import logging

log = logging.getLogger("mlproxy.catalog")

CATALOG_SCHEMA = "mlproxy"
NOTIFY_CHANNEL = "mlproxy_models"
_LOCK_KEY = 0x6D6C7078  # 'mlpx': the advisory lock serialising migrations

_PUBLIC_COLUMNS = (
    "id, schema_name, model_name, owner, state, failure_reason, create_statement, options, "
    "source_query, target, function_schema, function_name, function_signature, arg_names, "
    "arg_types, return_type, problem_type, model_type, objective, metrics, leaderboard, "
    "feature_importances, artifact_sha256, rows_used, training_seconds, progress, "
    "max_runtime, job_owner, heartbeat, created_at, updated_at"
)

MIGRATIONS: list[str] = [
    # 1: the models table, its policies, and the invoker-rights entry points.
    f"""
CREATE TABLE mlproxy.models (
    id                  bigserial PRIMARY KEY,
    schema_name         text NOT NULL,
    model_name          text NOT NULL,
    owner               name NOT NULL DEFAULT current_user,
    state               text NOT NULL CHECK (state IN ('TRAINING', 'READY', 'FAILED')),
    failure_reason      text,
    create_statement    text NOT NULL,
    options             jsonb NOT NULL,
    source_query        text NOT NULL,
    target              text,
    function_schema     text NOT NULL,
    function_name       text NOT NULL,
    function_signature  text NOT NULL,
    arg_names           text[] NOT NULL,
    arg_types           text[] NOT NULL,
    return_type         text NOT NULL,
    problem_type        text,
    model_type          text,
    objective           text,
    metrics             jsonb,
    leaderboard         jsonb,
    feature_importances jsonb,
    artifact            bytea,
    artifact_sha256     text,
    rows_used           bigint,
    training_seconds    double precision,
    progress            jsonb,
    max_runtime         integer,
    job_owner           text,
    heartbeat           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schema_name, model_name)
);

ALTER TABLE mlproxy.models ENABLE ROW LEVEL SECURITY;
CREATE POLICY models_visible ON mlproxy.models FOR SELECT USING (true);
CREATE POLICY models_insert_own ON mlproxy.models FOR INSERT
    WITH CHECK (owner = current_user);
CREATE POLICY models_delete_own ON mlproxy.models FOR DELETE
    USING (pg_has_role(current_user, owner, 'MEMBER'));

GRANT USAGE ON SCHEMA mlproxy TO PUBLIC;
GRANT SELECT ({_PUBLIC_COLUMNS}) ON mlproxy.models TO PUBLIC;
GRANT INSERT, DELETE ON mlproxy.models TO PUBLIC;
GRANT USAGE ON SEQUENCE mlproxy.models_id_seq TO PUBLIC;

-- A model name without schema is looked up along the search path, like a table.
CREATE FUNCTION mlproxy.find_model(p_schema text, p_name text) RETURNS bigint
LANGUAGE sql STABLE AS $fn$
    SELECT id FROM mlproxy.models
     WHERE model_name = p_name
       AND CASE WHEN p_schema IS NULL THEN schema_name = ANY (current_schemas(false))
                ELSE schema_name = p_schema END
     ORDER BY array_position(current_schemas(false), schema_name::name)
     LIMIT 1
$fn$;

CREATE FUNCTION mlproxy.register_model(
    p_schema text, p_name text, p_fn_schema text, p_fn_name text,
    p_arg_names text[], p_arg_types text[], p_return_type text,
    p_statement text, p_options jsonb, p_query text, p_target text,
    p_max_runtime integer, p_job_owner text)
RETURNS bigint LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_id bigint;
    v_args text;
    v_sig text;
BEGIN
    p_schema := coalesce(p_schema, current_schema());
    p_fn_schema := coalesce(p_fn_schema, current_schema());
    IF p_schema IS NULL THEN
        RAISE EXCEPTION 'no schema has been selected to create in' USING ERRCODE = '3F000';
    END IF;
    IF EXISTS (SELECT 1 FROM mlproxy.models WHERE schema_name = p_schema AND model_name = p_name) THEN
        RAISE EXCEPTION 'model "%" already exists', p_name USING ERRCODE = '42710';
    END IF;
    -- regtype input validates every type name; its output is the canonical spelling
    SELECT coalesce(string_agg(format_type(t::regtype, NULL), ', ' ORDER BY n), '')
      INTO v_args FROM unnest(p_arg_types) WITH ORDINALITY AS a(t, n);
    v_sig := format('%I.%I(%s)', p_fn_schema, p_fn_name, v_args);
    EXECUTE format(
        'CREATE FUNCTION %s RETURNS %s LANGUAGE plpgsql AS %L',
        v_sig, format_type(p_return_type::regtype, NULL),
        format('BEGIN RAISE EXCEPTION %L USING ERRCODE = %L, HINT = %L; END',
               format('model function %s can only be evaluated through mlproxy', p_fn_name),
               '0A000', 'Connect through the mlproxy port to use model functions.'));
    EXECUTE format('COMMENT ON FUNCTION %s IS %L', v_sig,
                   format('mlproxy model %I.%I', p_schema, p_name));
    INSERT INTO mlproxy.models (schema_name, model_name, state, create_statement, options,
        source_query, target, function_schema, function_name, function_signature,
        arg_names, arg_types, return_type, max_runtime, job_owner, heartbeat, progress)
    VALUES (p_schema, p_name, 'TRAINING', p_statement, p_options, p_query, p_target,
        p_fn_schema, p_fn_name, v_sig, p_arg_names,
        ARRAY(SELECT format_type(t::regtype, NULL) FROM unnest(p_arg_types) t),
        format_type(p_return_type::regtype, NULL), p_max_runtime, p_job_owner, now(),
        '{{"phase": "exported"}}')
    RETURNING id INTO v_id;
    PERFORM pg_notify('{NOTIFY_CHANNEL}', json_build_object(
        'event', 'created', 'id', v_id, 'schema', p_schema, 'name', p_name)::text);
    RETURN v_id;
END
$fn$;

CREATE FUNCTION mlproxy.drop_model(p_schema text, p_name text, p_if_exists boolean)
RETURNS bigint LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_id bigint;
    v_sig text;
BEGIN
    SELECT id, function_signature INTO v_id, v_sig
      FROM mlproxy.models WHERE id = mlproxy.find_model(p_schema, p_name);
    IF NOT FOUND THEN
        IF p_if_exists THEN
            RAISE NOTICE 'model "%" does not exist, skipping', p_name;
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'model "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    -- Postgres decides: only the owner of the function may drop it.
    EXECUTE format('DROP FUNCTION IF EXISTS %s', v_sig);
    DELETE FROM mlproxy.models WHERE id = v_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'must be owner of model %', p_name USING ERRCODE = '42501';
    END IF;
    PERFORM pg_notify('{NOTIFY_CHANNEL}', json_build_object(
        'event', 'dropped', 'id', v_id, 'schema', p_schema, 'name', p_name)::text);
    RETURN v_id;
END
$fn$;
-- SHOW MODEL name: Redshift's Key/Value listing.
CREATE FUNCTION mlproxy.show_model(p_schema text, p_name text)
RETURNS TABLE ("Key" text, "Value" text) LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    m record;
BEGIN
    SELECT * INTO m FROM mlproxy.models WHERE id = mlproxy.find_model(p_schema, p_name);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    RETURN QUERY
    SELECT kv.k, kv.v FROM (
        VALUES (1, 'Model Name', m.model_name),
               (2, 'Schema Name', m.schema_name),
               (3, 'Owner', m.owner::text),
               (4, 'Creation Time', to_char(m.created_at AT TIME ZONE 'UTC', 'Dy, DD.MM.YYYY HH24:MI:SS')),
               (5, 'Model State', m.state),
               (6, 'Failure Reason', m.failure_reason),
               (8, 'Training Progress', CASE WHEN m.state = 'TRAINING' THEN concat_ws(', ',
                    m.progress->>'phase',
                    CASE WHEN m.progress ? 'trials' THEN (m.progress->>'trials') || ' trials' END,
                    CASE WHEN m.progress ? 'best_score' THEN 'best score ' || round((m.progress->>'best_score')::numeric, 4) END,
                    CASE WHEN m.progress ? 'elapsed' THEN round((m.progress->>'elapsed')::numeric) || ' s elapsed' END) END),
               (9, 'Rows Used', m.rows_used::text),
               (10, 'Training Time', round(m.training_seconds::numeric, 1) || ' s'),
               (11, 'TRAINING DATA:', ''),
               (12, 'Query', m.source_query),
               (13, 'Target Column', coalesce(m.target, '')),
               (14, 'PARAMETERS:', ''),
               (15, 'Model Type', coalesce(m.model_type, m.options->>'model_type', 'AUTO')),
               (16, 'Problem Type', coalesce(m.problem_type, m.options->>'problem_type', '')),
               (17, 'Objective', coalesce(m.objective, m.options->>'objective', '')),
               (18, 'Function Name', m.function_name),
               (19, 'Function Parameters', array_to_string(m.arg_names, ' ')),
               (20, 'Function Parameter Types', array_to_string(m.arg_types, ' ')),
               (21, 'Function Return Type', m.return_type),
               (22, 'Max Runtime', m.max_runtime::text)
        UNION ALL
        SELECT 7, 'validation:' || e.key, round(e.value::numeric, 6)::text
          FROM jsonb_each_text(coalesce(m.metrics, '{{}}')) e
         WHERE e.value ~ '^-?[0-9.eE+-]+$'
    ) AS kv(n, k, v)
    WHERE kv.v IS NOT NULL
    ORDER BY kv.n, kv.k;
END
$fn$;

-- SHOW MODEL ALL
CREATE FUNCTION mlproxy.show_models()
RETURNS TABLE ("Schema Name" text, "Model Name" text, "Model State" text)
LANGUAGE sql STABLE AS $fn$
    SELECT schema_name, model_name, state FROM mlproxy.models ORDER BY schema_name, model_name
$fn$;

GRANT EXECUTE ON FUNCTION mlproxy.register_model(text, text, text, text, text[], text[], text,
    text, jsonb, text, text, integer, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION mlproxy.drop_model(text, text, boolean) TO PUBLIC;
""",
    # 2: a `<function>_prob` stub for classifier-capable targets; explain_model().
    f"""
ALTER TABLE mlproxy.models ADD COLUMN prob_signature text;
GRANT SELECT (prob_signature) ON mlproxy.models TO PUBLIC;

CREATE FUNCTION mlproxy.create_stub(p_sig text, p_return_type text, p_fn_name text)
RETURNS void LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    EXECUTE format(
        'CREATE FUNCTION %s RETURNS %s LANGUAGE plpgsql AS %L',
        p_sig, format_type(p_return_type::regtype, NULL),
        format('BEGIN RAISE EXCEPTION %L USING ERRCODE = %L, HINT = %L; END',
               format('model function %s can only be evaluated through mlproxy', p_fn_name),
               '0A000', 'Connect through the mlproxy port to use model functions.'));
END
$fn$;

-- Redshift creates <function>_prob for classification models; the problem type is
-- only known after training, so the stub is made for every target that is not a
-- floating-point or numeric column (and never for KMEANS, which has no target).
CREATE OR REPLACE FUNCTION mlproxy.after_register() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_sig text;
BEGIN
    IF NEW.target IS NOT NULL
       AND NEW.return_type NOT IN ('double precision', 'real', 'numeric') THEN
        v_sig := format('%I.%I(%s)', NEW.function_schema, NEW.function_name || '_prob',
                        array_to_string(NEW.arg_types, ', '));
        PERFORM mlproxy.create_stub(v_sig, 'jsonb', NEW.function_name || '_prob');
        EXECUTE format('COMMENT ON FUNCTION %s IS %L', v_sig,
                       format('mlproxy model %I.%I (probabilities)', NEW.schema_name, NEW.model_name));
        NEW.prob_signature := v_sig;
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER models_prob_stub BEFORE INSERT ON mlproxy.models
    FOR EACH ROW EXECUTE FUNCTION mlproxy.after_register();

-- Dropping a model drops its _prob stub too (as its owner, like the main stub).
CREATE OR REPLACE FUNCTION mlproxy.before_drop() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    IF OLD.prob_signature IS NOT NULL THEN
        EXECUTE format('DROP FUNCTION IF EXISTS %s', OLD.prob_signature);
    END IF;
    RETURN OLD;
END
$fn$;
CREATE TRIGGER models_drop_prob_stub BEFORE DELETE ON mlproxy.models
    FOR EACH ROW EXECUTE FUNCTION mlproxy.before_drop();

-- explain_model('name'): the feature importances (Redshift's Shapley summary).
CREATE FUNCTION mlproxy.explain_model(p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    v_schema text;
    v_name text := p_name;
    m record;
BEGIN
    IF position('.' in p_name) > 0 THEN
        v_schema := split_part(p_name, '.', 1);
        v_name := split_part(p_name, '.', 2);
    END IF;
    SELECT state, feature_importances, model_type INTO m
      FROM mlproxy.models WHERE id = mlproxy.find_model(v_schema, v_name);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    IF m.state <> 'READY' THEN
        RAISE EXCEPTION 'model "%" is not ready (state %)', p_name, m.state
            USING ERRCODE = '55000';
    END IF;
    RETURN jsonb_build_object('version', '1.0', 'explanations', jsonb_build_object(
        'kernel_shap', jsonb_build_object('label0', jsonb_build_object(
            'global_shap_values', m.feature_importances))));
END
$fn$;
GRANT EXECUTE ON FUNCTION mlproxy.explain_model(text) TO PUBLIC;
""",
    # 3: the privilege check that rewritten statements run on every execution.
    """
CREATE FUNCTION mlproxy.check_execute(p_signatures text[], p_names text[]) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_signatures, 1), 0) LOOP
        IF NOT has_function_privilege(p_signatures[i], 'EXECUTE') THEN
            RAISE EXCEPTION 'permission denied for function %', p_names[i]
                USING ERRCODE = '42501';
        END IF;
    END LOOP;
    RETURN true;
END
$fn$;
GRANT EXECUTE ON FUNCTION mlproxy.check_execute(text[], text[]) TO PUBLIC;
""",
]

_MIGRATION_4 = """
-- 4: a catalog only the service identity writes; Redshift's model privileges.

-- The write paths of versions 1-3 are closed: no INSERT/DELETE for PUBLIC, no
-- invoker triggers making or dropping stubs, no sequence for PUBLIC.
DROP TRIGGER IF EXISTS models_prob_stub ON mlproxy.models;
DROP TRIGGER IF EXISTS models_drop_prob_stub ON mlproxy.models;
DROP FUNCTION IF EXISTS mlproxy.after_register();
DROP FUNCTION IF EXISTS mlproxy.before_drop();
DROP FUNCTION IF EXISTS mlproxy.create_stub(text, text, text);
DROP POLICY IF EXISTS models_insert_own ON mlproxy.models;
DROP POLICY IF EXISTS models_delete_own ON mlproxy.models;
DROP POLICY IF EXISTS models_visible ON mlproxy.models;
REVOKE ALL ON mlproxy.models FROM PUBLIC;
REVOKE ALL ON SEQUENCE mlproxy.models_id_seq FROM PUBLIC;
ALTER TABLE mlproxy.models ADD COLUMN probabilities_signature text;

-- Every model function by what tells calls apart: schema, name, argument count. The
-- primary key makes two registrations claiming one of them exclusive without a lock
-- any role could hold: a concurrent claim of the same key waits for the other
-- transaction, as for two CREATE TABLEs of one name. Only the service identity
-- reads or writes it.
CREATE TABLE mlproxy.model_function_names (
    function_schema text NOT NULL,
    function_name   text NOT NULL,
    nargs           integer NOT NULL,
    model_id        bigint NOT NULL REFERENCES mlproxy.models (id) ON DELETE CASCADE,
    PRIMARY KEY (function_schema, function_name, nargs)
);
GRANT SELECT (@PUBLIC_COLUMNS@, prob_signature, probabilities_signature)
    ON mlproxy.models TO PUBLIC;

-- A model name without schema is looked up along the caller's search path, like a
-- table, among all models (visible or not: as for any object, existence is no
-- secret; what a role may do with a model is checked where it acts). The path is
-- the caller's (find_model passes it); giving another one only reorders the lookup.
CREATE FUNCTION mlproxy.locate_model(p_schema text, p_name text, p_path name[]) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT m.id FROM mlproxy.models m
     WHERE m.model_name = p_name
       AND CASE WHEN p_schema IS NULL THEN m.schema_name = ANY (p_path)
                ELSE m.schema_name = p_schema END
     ORDER BY array_position(p_path, m.schema_name::name)
     LIMIT 1
$fn$;

CREATE OR REPLACE FUNCTION mlproxy.find_model(p_schema text, p_name text) RETURNS bigint
LANGUAGE sql STABLE AS $fn$
    SELECT mlproxy.locate_model(p_schema, p_name, pg_catalog.current_schemas(false))
$fn$;

-- The catalog row of a model the caller names, as the caller may see it: 42704 if
-- there is no such model, 42501 if the caller may not see it (see model_visible).
CREATE FUNCTION mlproxy.visible_model_id(p_schema text, p_name text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_id bigint := mlproxy.find_model(p_schema, p_name);
BEGIN
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'model "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    PERFORM 1 FROM mlproxy.models WHERE id OPERATOR(pg_catalog.=) v_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'permission denied for model %', p_name USING ERRCODE = '42501',
            HINT = 'Its owner can share it: GRANT EXECUTE ON MODEL ... TO ...';
    END IF;
    RETURN v_id;
END
$fn$;

-- EXECUTE on this function is the CREATE MODEL privilege.
CREATE FUNCTION mlproxy.create_model_privilege() RETURNS boolean
LANGUAGE sql IMMUTABLE AS 'SELECT true';
REVOKE EXECUTE ON FUNCTION mlproxy.create_model_privilege() FROM PUBLIC;
COMMENT ON FUNCTION mlproxy.create_model_privilege() IS
    'EXECUTE on this function is the CREATE MODEL privilege: GRANT CREATE MODEL TO role';

-- 42501 unless p_role may create a model in p_schema with its functions in p_fn_schema.
CREATE FUNCTION mlproxy.check_create_model(p_role name, p_schema text, p_fn_schema text)
RETURNS void LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    v_schema text;
BEGIN
    IF NOT has_function_privilege(p_role, 'mlproxy.create_model_privilege()', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied to create model'
            USING ERRCODE = '42501',
                  DETAIL = format('Role %I does not have the CREATE MODEL privilege.', p_role),
                  HINT = format('A superuser can grant it: GRANT CREATE MODEL TO %I', p_role);
    END IF;
    FOREACH v_schema IN ARRAY ARRAY[p_schema, p_fn_schema] LOOP
        IF NOT has_schema_privilege(p_role, v_schema, 'CREATE') THEN
            RAISE EXCEPTION 'permission denied for schema %', v_schema
                USING ERRCODE = '42501',
                      HINT = format('Creating a model needs CREATE on its schema: GRANT CREATE ON SCHEMA %I TO %I',
                                    v_schema, p_role);
        END IF;
    END LOOP;
END
$fn$;

-- The body of every stub: called without the proxy, it says why it cannot answer.
CREATE FUNCTION mlproxy.stub_body(p_fn_name text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT format('BEGIN RAISE EXCEPTION %L USING ERRCODE = %L, HINT = %L; END',
                  format('model function %s can only be evaluated through mlproxy', p_fn_name),
                  '0A000', 'Connect through the mlproxy port to use model functions.')
$fn$;

-- Redshift makes <function>_probabilities for classification models; the problem
-- type is known only after training, so the probability stubs are made for every
-- target that is not a floating-point or numeric column (KMEANS has no target).
CREATE FUNCTION mlproxy.has_probabilities(p_target text, p_return_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT p_target IS NOT NULL
       AND p_return_type OPERATOR(pg_catalog.<>) ALL (ARRAY['double precision', 'real', 'numeric'])
$fn$;

-- `schema.name(argument types)` of a function, as the catalog stores signatures:
-- every name quoted as needed, types outside pg_catalog schema-qualified.
CREATE FUNCTION mlproxy.function_signature(p_function oid) RETURNS text
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT format('%I.%I(%s)', n.nspname, p.proname,
                  (SELECT coalesce(string_agg(format_type(a.t, NULL), ', ' ORDER BY a.i), '')
                     FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)))
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.oid = p_function
$fn$;

-- One stub, created as the caller (invoker rights: the caller owns it, Postgres
-- checks CREATE on the schema), private to its owner.
CREATE FUNCTION mlproxy.make_stub(p_schema text, p_name text, p_args text, p_types text,
                                  p_return_type text, p_comment text)
RETURNS regprocedure LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_fn regprocedure;
BEGIN
    IF pg_catalog.octet_length(p_name) >= 64 THEN
        RAISE EXCEPTION 'model function name "%" is too long', p_name
            USING ERRCODE = '42622',
                  HINT = 'Function names are at most 63 bytes, and <function>_probabilities must fit too.';
    END IF;
    EXECUTE pg_catalog.format('CREATE FUNCTION %I.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                              p_schema, p_name, p_args, p_return_type, mlproxy.stub_body(p_name));
    v_fn := pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(%s)', p_schema, p_name, p_types));
    EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_fn);
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', v_fn, p_comment);
    RETURN v_fn;
END
$fn$;

CREATE FUNCTION mlproxy.function_taken(p_schema text, p_name text, p_nargs integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RAISE EXCEPTION 'model function %.% with % arguments already exists',
        quote_ident(p_schema), quote_ident(p_name), p_nargs
        USING ERRCODE = '42723',
              HINT = 'Choose another FUNCTION name: calls of model functions are told apart by schema, name and number of arguments.';
END
$fn$;

-- Writes a new model's row, as the service identity, after checking everything the
-- caller could have forged (see the module docstring).
CREATE FUNCTION mlproxy.record_model(
    p_schema text, p_name text, p_function regprocedure, p_prob regprocedure,
    p_probabilities regprocedure, p_statement text, p_options jsonb, p_query text,
    p_target text, p_max_runtime integer, p_job_owner text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    f record;
    s record;
    v_owner name;
    v_return text;
    v_names text[];
    v_other record;
    v_id bigint;
BEGIN
    SELECT p.oid, p.proname::text AS proname, p.pronamespace, n.nspname::text AS nspname,
           p.proowner, p.proargtypes, p.prorettype, p.proargnames, p.pronargs
      INTO f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.oid = p_function;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'function % does not exist', p_function::oid USING ERRCODE = '42883';
    END IF;
    SELECT rolname INTO v_owner FROM pg_roles WHERE oid = f.proowner;
    IF NOT pg_has_role(session_user, f.proowner, 'MEMBER') THEN
        RAISE EXCEPTION 'must be owner of function %', f.proname USING ERRCODE = '42501';
    END IF;
    PERFORM mlproxy.check_create_model(v_owner, p_schema, f.nspname);
    v_return := format_type(f.prorettype, NULL);
    IF mlproxy.has_probabilities(p_target, v_return)
       IS DISTINCT FROM (p_prob IS NOT NULL AND p_probabilities IS NOT NULL)
       OR (p_prob IS NULL) <> (p_probabilities IS NULL) THEN
        RAISE EXCEPTION 'the probability functions of model "%" do not match its target', p_name
            USING ERRCODE = '22023';
    END IF;
    FOR s IN SELECT v.fn, v.name, v.ret FROM (VALUES
            (p_function::oid, f.proname, f.prorettype),
            (p_prob::oid, f.proname || '_prob', 'jsonb'::regtype::oid),
            (p_probabilities::oid, f.proname || '_probabilities', 'jsonb'::regtype::oid)) AS v(fn, name, ret)
         WHERE v.fn IS NOT NULL LOOP
        PERFORM 1 FROM pg_proc p
         WHERE p.oid = s.fn AND p.proname = s.name AND p.pronamespace = f.pronamespace
           AND p.proowner = f.proowner AND p.proargtypes = f.proargtypes
           AND p.prorettype = s.ret AND p.prokind = 'f' AND NOT p.prosecdef
           AND NOT p.proretset AND p.proconfig IS NULL
           AND p.prolang = (SELECT l.oid FROM pg_language l WHERE l.lanname = 'plpgsql')
           AND p.prosrc = mlproxy.stub_body(s.name)
           AND p.xmin = pg_current_xact_id()::xid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'function % is not a model function stub created by this CREATE MODEL',
                s.fn::regprocedure USING ERRCODE = '22023';
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM mlproxy.models m WHERE m.schema_name = p_schema AND m.model_name = p_name) THEN
        RAISE EXCEPTION 'model "%" already exists', p_name USING ERRCODE = '42710';
    END IF;
    -- calls are told apart by schema, name and argument count: no two model
    -- functions may share all three
    v_names := ARRAY[f.proname];
    IF p_prob IS NOT NULL THEN
        v_names := v_names || (f.proname || '_prob') || (f.proname || '_probabilities');
    END IF;
    SELECT n.function_name AS name INTO v_other FROM mlproxy.model_function_names n
     WHERE n.function_schema = f.nspname AND n.function_name = ANY (v_names)
       AND n.nargs = f.pronargs
     LIMIT 1;
    IF FOUND THEN
        PERFORM mlproxy.function_taken(f.nspname, v_other.name, f.pronargs);
    END IF;
    BEGIN
        INSERT INTO mlproxy.models (schema_name, model_name, owner, state, create_statement, options,
        source_query, target, function_schema, function_name, function_signature, prob_signature,
        probabilities_signature, arg_names, arg_types, return_type, max_runtime, job_owner,
        heartbeat, progress)
    VALUES (p_schema, p_name, v_owner, 'TRAINING', p_statement, p_options, p_query, p_target,
        f.nspname, f.proname, mlproxy.function_signature(p_function),
        mlproxy.function_signature(p_prob), mlproxy.function_signature(p_probabilities),
        coalesce(f.proargnames, array_fill(''::text, ARRAY[f.pronargs])),
        ARRAY(SELECT format_type(a.t, NULL) FROM unnest(f.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)
               ORDER BY a.i),
        v_return, p_max_runtime, p_job_owner, now(), '{"phase": "exported"}')
        RETURNING id INTO v_id;
    EXCEPTION WHEN unique_violation THEN  -- registered meanwhile by another session
        RAISE EXCEPTION 'model "%" already exists', p_name USING ERRCODE = '42710';
    END;
    BEGIN
        INSERT INTO mlproxy.model_function_names (function_schema, function_name, nargs, model_id)
        SELECT f.nspname, n, f.pronargs, v_id FROM unnest(v_names) AS n;
    EXCEPTION WHEN unique_violation THEN  -- claimed meanwhile by another session
        PERFORM mlproxy.function_taken(f.nspname, f.proname, f.pronargs);
    END;
    PERFORM pg_notify('@NOTIFY_CHANNEL@', json_build_object('event', 'created', 'id', v_id)::text);
    RETURN v_id;
END
$fn$;
GRANT EXECUTE ON FUNCTION mlproxy.record_model(text, text, regprocedure, regprocedure, regprocedure,
    text, jsonb, text, text, integer, text) TO PUBLIC;

-- CREATE MODEL, on the client's session: the stubs as the client, then the row.
CREATE OR REPLACE FUNCTION mlproxy.register_model(
    p_schema text, p_name text, p_fn_schema text, p_fn_name text,
    p_arg_names text[], p_arg_types text[], p_return_type text,
    p_statement text, p_options jsonb, p_query text, p_target text,
    p_max_runtime integer, p_job_owner text)
RETURNS bigint LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_types text;
    v_args text;
    v_return text;
    v_comment text;
    v_fn regprocedure;
    v_prob regprocedure;
    v_probabilities regprocedure;
BEGIN
    p_schema := coalesce(p_schema, pg_catalog.current_schema());
    p_fn_schema := coalesce(p_fn_schema, pg_catalog.current_schema());
    IF p_schema IS NULL OR p_fn_schema IS NULL THEN
        RAISE EXCEPTION 'no schema has been selected to create in' USING ERRCODE = '3F000';
    END IF;
    IF pg_catalog.array_length(p_arg_names, 1) IS DISTINCT FROM pg_catalog.array_length(p_arg_types, 1) THEN
        RAISE EXCEPTION 'a model function needs a name for each argument' USING ERRCODE = '22023';
    END IF;
    PERFORM mlproxy.check_create_model(current_user, p_schema, p_fn_schema);
    -- regtype input validates every type name (on the caller's search path); its
    -- output is the spelling CREATE FUNCTION reads back the same way
    SELECT coalesce(pg_catalog.string_agg(pg_catalog.format_type(a.t::regtype, NULL), ', ' ORDER BY a.i), ''),
           coalesce(pg_catalog.string_agg(pg_catalog.format('%I %s', a.n, pg_catalog.format_type(a.t::regtype, NULL)),
                                          ', ' ORDER BY a.i), '')
      INTO v_types, v_args
      FROM unnest(p_arg_names, p_arg_types) WITH ORDINALITY AS a(n, t, i);
    v_return := pg_catalog.format_type(p_return_type::regtype, NULL);
    v_comment := pg_catalog.format('mlproxy model %I.%I', p_schema, p_name);
    IF mlproxy.has_probabilities(p_target, v_return) THEN
        -- checked first: nothing is created for a name that cannot take its suffix
        PERFORM 1 WHERE pg_catalog.octet_length(p_fn_name || '_probabilities') < 64;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'model function name "%" is too long', p_fn_name
                USING ERRCODE = '42622',
                      HINT = 'Classification models also get <function>_probabilities, which must fit in 63 bytes.';
        END IF;
    END IF;
    v_fn := mlproxy.make_stub(p_fn_schema, p_fn_name, v_args, v_types, v_return, v_comment);
    IF mlproxy.has_probabilities(p_target, v_return) THEN
        v_prob := mlproxy.make_stub(p_fn_schema, p_fn_name || '_prob', v_args, v_types, 'jsonb',
                                    v_comment || ' (probabilities)');
        v_probabilities := mlproxy.make_stub(p_fn_schema, p_fn_name || '_probabilities', v_args,
                                             v_types, 'jsonb', v_comment || ' (probabilities)');
    END IF;
    RETURN mlproxy.record_model(p_schema, p_name, v_fn, v_prob, v_probabilities, p_statement,
                                p_options, p_query, p_target, p_max_runtime, p_job_owner);
END
$fn$;

-- Deletes a model's row once its stubs are gone, for its owner, the owner of its
-- schema or a superuser.
CREATE FUNCTION mlproxy.forget_model(p_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    m record;
BEGIN
    -- the caller is checked before the row is locked: a refused caller holds no lock
    -- on it (that would stall the job's progress updates until it ended its transaction)
    SELECT id, schema_name, model_name, owner, function_schema, function_name,
           function_signature, prob_signature, probabilities_signature
      INTO m FROM mlproxy.models WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model % does not exist', p_id USING ERRCODE = '42704';
    END IF;
    IF NOT (EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = session_user AND r.rolsuper)
            OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = m.owner
                        AND pg_has_role(session_user, r.oid, 'MEMBER'))
            OR EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = m.schema_name
                        AND pg_has_role(session_user, n.nspowner, 'MEMBER'))) THEN
        RAISE EXCEPTION 'must be owner of model %', m.model_name USING ERRCODE = '42501';
    END IF;
    IF mlproxy.signature_oid(m.function_schema, m.function_name, m.function_signature) IS NOT NULL
       OR mlproxy.signature_oid(m.function_schema, m.function_name || '_prob', m.prob_signature) IS NOT NULL
       OR mlproxy.signature_oid(m.function_schema, m.function_name || '_probabilities',
                                m.probabilities_signature) IS NOT NULL THEN
        RAISE EXCEPTION 'the functions of model % still exist', m.model_name
            USING ERRCODE = '55006', HINT = 'DROP MODEL drops them first.';
    END IF;
    DELETE FROM mlproxy.models WHERE id = p_id;  -- its model_function_names go with it
    PERFORM pg_notify('@NOTIFY_CHANNEL@', json_build_object('event', 'dropped', 'id', p_id)::text);
END
$fn$;
GRANT EXECUTE ON FUNCTION mlproxy.forget_model(bigint) TO PUBLIC;

-- DROP MODEL, on the client's session: Postgres decides who may drop the stubs.
CREATE OR REPLACE FUNCTION mlproxy.drop_model(p_schema text, p_name text, p_if_exists boolean)
RETURNS bigint LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    m record;
    v_sig text;
BEGIN
    IF mlproxy.find_model(p_schema, p_name) IS NULL THEN
        IF p_if_exists THEN
            RAISE NOTICE 'model "%" does not exist, skipping', p_name;
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'model "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    SELECT id, function_signature, prob_signature, probabilities_signature INTO m
      FROM mlproxy.models WHERE id = mlproxy.find_model(p_schema, p_name);
    IF NOT FOUND THEN  -- a model the caller may not even see is not the caller's to drop
        RAISE EXCEPTION 'must be owner of model %', p_name USING ERRCODE = '42501';
    END IF;
    BEGIN
        -- signatures are the catalog's canonical text, written by the service identity
        FOREACH v_sig IN ARRAY pg_catalog.array_remove(
                ARRAY[m.probabilities_signature, m.prob_signature, m.function_signature], NULL) LOOP
            EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %s', v_sig);
        END LOOP;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'must be owner of model %', p_name USING ERRCODE = '42501';
    END;
    PERFORM mlproxy.forget_model(m.id);
    RETURN m.id;
END
$fn$;

-- The stubs of a model, for GRANT/REVOKE ... ON MODEL (run on the client's session).
CREATE FUNCTION mlproxy.model_functions(p_schema text, p_name text) RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    v text[];
BEGIN
    SELECT pg_catalog.array_remove(ARRAY[function_signature, prob_signature, probabilities_signature], NULL)
      INTO v FROM mlproxy.models WHERE id = mlproxy.visible_model_id(p_schema, p_name);
    RETURN v;
END
$fn$;

-- The function a catalog signature names, or NULL; found through pg_proc, so that
-- no privilege (not even USAGE on its schema) is needed to ask.
CREATE FUNCTION mlproxy.signature_oid(p_schema text, p_name text, p_signature text) RETURNS oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = p_schema AND p.proname = p_name
       AND mlproxy.function_signature(p.oid) = p_signature
     LIMIT 1
$fn$;

-- Who sees a model's row: members of its owner, of its schema's owner, roles that may
-- call its function (and superusers, who pass row-level security anyway).
CREATE FUNCTION mlproxy.model_visible(p_owner name, p_schema text, p_fn_schema text,
                                      p_fn_name text, p_function text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = p_owner AND pg_has_role(r.oid, 'MEMBER'))
        OR EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = p_schema
                    AND pg_has_role(n.nspowner, 'MEMBER'))
        OR coalesce(has_function_privilege(mlproxy.signature_oid(p_fn_schema, p_fn_name, p_function),
                                           'EXECUTE'), false)
$fn$;
CREATE POLICY models_visible ON mlproxy.models FOR SELECT
    USING (mlproxy.model_visible(owner, schema_name, function_schema, function_name,
                                 function_signature));

-- SHOW MODEL name: Redshift's Key/Value listing of a model the caller may see (it
-- read the artifact column too before, which only the service identity may).
CREATE OR REPLACE FUNCTION mlproxy.show_model(p_schema text, p_name text)
RETURNS TABLE ("Key" text, "Value" text) LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    m record;
BEGIN
    SELECT model_name, schema_name, owner, created_at, state, failure_reason, progress,
           rows_used, training_seconds, source_query, target, model_type, options,
           problem_type, objective, function_name, arg_names, arg_types, return_type,
           max_runtime, metrics
      INTO m FROM mlproxy.models WHERE id = mlproxy.visible_model_id(p_schema, p_name);
    RETURN QUERY
    SELECT kv.k, kv.v FROM (
        VALUES (1, 'Model Name', m.model_name),
               (2, 'Schema Name', m.schema_name),
               (3, 'Owner', m.owner::text),
               (4, 'Creation Time', to_char(m.created_at AT TIME ZONE 'UTC', 'Dy, DD.MM.YYYY HH24:MI:SS')),
               (5, 'Model State', m.state),
               (6, 'Failure Reason', m.failure_reason),
               (8, 'Training Progress', CASE WHEN m.state = 'TRAINING' THEN concat_ws(', ',
                    m.progress->>'phase',
                    CASE WHEN m.progress ? 'trials' THEN (m.progress->>'trials') || ' trials' END,
                    CASE WHEN m.progress ? 'best_score' THEN 'best score ' || round((m.progress->>'best_score')::numeric, 4) END,
                    CASE WHEN m.progress ? 'elapsed' THEN round((m.progress->>'elapsed')::numeric) || ' s elapsed' END) END),
               (9, 'Rows Used', m.rows_used::text),
               (10, 'Training Time', round(m.training_seconds::numeric, 1) || ' s'),
               (11, 'TRAINING DATA:', ''),
               (12, 'Query', m.source_query),
               (13, 'Target Column', coalesce(m.target, '')),
               (14, 'PARAMETERS:', ''),
               (15, 'Model Type', coalesce(m.model_type, m.options->>'model_type', 'AUTO')),
               (16, 'Problem Type', coalesce(m.problem_type, m.options->>'problem_type', '')),
               (17, 'Objective', coalesce(m.objective, m.options->>'objective', '')),
               (18, 'Function Name', m.function_name),
               (19, 'Function Parameters', array_to_string(m.arg_names, ' ')),
               (20, 'Function Parameter Types', array_to_string(m.arg_types, ' ')),
               (21, 'Function Return Type', m.return_type),
               (22, 'Max Runtime', m.max_runtime::text)
        UNION ALL
        SELECT 7, 'validation:' || e.key, round(e.value::numeric, 6)::text
          FROM jsonb_each_text(coalesce(m.metrics, '{}')) e
         WHERE e.value ~ '^-?[0-9.eE+-]+$'
    ) AS kv(n, k, v)
    WHERE kv.v IS NOT NULL
    ORDER BY kv.n, kv.k;
END
$fn$;

-- explain_model('name'): as in version 2, for the models the caller may see.
CREATE OR REPLACE FUNCTION mlproxy.explain_model(p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    v_schema text;
    v_name text := p_name;
    m record;
BEGIN
    IF position('.' in p_name) > 0 THEN
        v_schema := split_part(p_name, '.', 1);
        v_name := split_part(p_name, '.', 2);
    END IF;
    SELECT state, feature_importances, model_type INTO m
      FROM mlproxy.models WHERE id = mlproxy.visible_model_id(v_schema, v_name);
    IF m.state <> 'READY' THEN
        RAISE EXCEPTION 'model "%" is not ready (state %)', p_name, m.state
            USING ERRCODE = '55000';
    END IF;
    RETURN jsonb_build_object('version', '1.0', 'explanations', jsonb_build_object(
        'kernel_shap', jsonb_build_object('label0', jsonb_build_object(
            'global_shap_values', m.feature_importances))));
END
$fn$;

-- Rows of older versions. Any role could insert rows before: a row is kept only if
-- its function exists, belongs to the row's owner and is no other kept row's; its
-- signatures become canonical. Where the migrating identity may act for the owner
-- (a superuser, or a member of the owner), the model becomes private as Redshift's
-- are: EXECUTE for PUBLIC (Postgres' default for functions, which made every model
-- callable by every role) is revoked, grants to roles are kept; the probability
-- stubs take the main stub's privileges, and classifier-capable models get
-- <fn>_probabilities.
-- The owners of the kept models keep being able to create models.
DO $migrate$
DECLARE
    r record;
    v_fn oid;
    v_prob oid;
    v_probs oid;
    v_owner oid;
    v_kept oid[] := '{}';
    v_acts boolean;
    v_sig regprocedure;
    v_acl record;
BEGIN
    FOR r IN SELECT * FROM mlproxy.models ORDER BY id LOOP
        BEGIN
            v_fn := pg_catalog.to_regprocedure(r.function_signature);
        EXCEPTION WHEN OTHERS THEN
            v_fn := NULL;
        END;
        SELECT p.proowner INTO v_owner FROM pg_catalog.pg_proc p WHERE p.oid = v_fn;
        IF v_fn IS NULL OR v_fn = ANY (v_kept)
           OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.oid = v_owner AND o.rolname = r.owner) THEN
            RAISE WARNING 'mlproxy: model %.% (id %) removed from the catalog: its function % is missing, is another model''s or is not owned by %',
                r.schema_name, r.model_name, r.id, r.function_signature, r.owner;
            DELETE FROM mlproxy.models WHERE id = r.id;
            CONTINUE;
        END IF;
        v_kept := v_kept || v_fn;
        BEGIN
            v_prob := pg_catalog.to_regprocedure(r.prob_signature);
        EXCEPTION WHEN OTHERS THEN
            v_prob := NULL;
        END;
        IF v_prob IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_proc p, pg_catalog.pg_proc f
                 WHERE p.oid = v_prob AND f.oid = v_fn AND p.proowner = f.proowner
                   AND p.pronamespace = f.pronamespace AND p.proargtypes = f.proargtypes
                   AND p.proname = f.proname || '_prob') THEN
            v_prob := NULL;
        END IF;
        v_acts := pg_catalog.pg_has_role(current_user, v_owner, 'USAGE');
        v_probs := NULL;
        IF v_prob IS NOT NULL AND v_acts
           AND pg_catalog.octet_length(r.function_name || '_probabilities') < 64 THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE FUNCTION %I.%I(%s) RETURNS jsonb LANGUAGE plpgsql AS %L',
                    r.function_schema, r.function_name || '_probabilities',
                    (SELECT coalesce(string_agg(pg_catalog.format_type(a.t, NULL), ', ' ORDER BY a.i), '')
                       FROM pg_catalog.pg_proc p, unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)
                      WHERE p.oid = v_fn),
                    mlproxy.stub_body(r.function_name || '_probabilities'));
                SELECT p.oid INTO v_probs FROM pg_catalog.pg_proc p, pg_catalog.pg_proc f
                 WHERE f.oid = v_fn AND p.pronamespace = f.pronamespace
                   AND p.proname = f.proname || '_probabilities' AND p.proargtypes = f.proargtypes;
                EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO %I', v_probs::regprocedure, r.owner);
                EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', v_probs::regprocedure,
                    pg_catalog.format('mlproxy model %I.%I (probabilities)', r.schema_name, r.model_name));
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'mlproxy: model %.% gets no _probabilities function: %',
                    r.schema_name, r.model_name, SQLERRM;
                v_probs := NULL;
            END;
        END IF;
        IF v_acts THEN
            EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_fn::regprocedure);
            FOREACH v_sig IN ARRAY pg_catalog.array_remove(ARRAY[v_prob, v_probs]::regprocedure[], NULL) LOOP
                EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_sig);
                FOR v_acl IN SELECT a.grantee, a.is_grantable
                               FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
                              WHERE p.oid = v_fn AND a.grantee <> p.proowner LOOP
                    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', v_sig,
                        CASE WHEN v_acl.grantee = 0 THEN 'PUBLIC'
                             ELSE pg_catalog.quote_ident((SELECT o.rolname FROM pg_catalog.pg_roles o
                                                           WHERE o.oid = v_acl.grantee)) END,
                        CASE WHEN v_acl.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
                END LOOP;
            END LOOP;
        ELSE
            RAISE WARNING 'mlproxy: the privileges of model %.% are left as they are (% may not act for its owner %)',
                r.schema_name, r.model_name, current_user, r.owner;
        END IF;
        UPDATE mlproxy.models m
           SET function_signature = mlproxy.function_signature(v_fn),
               prob_signature = mlproxy.function_signature(v_prob),
               probabilities_signature = mlproxy.function_signature(v_probs),
               arg_types = ARRAY(SELECT pg_catalog.format_type(a.t, NULL)
                                   FROM pg_catalog.pg_proc p, unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)
                                  WHERE p.oid = v_fn ORDER BY a.i)
         WHERE m.id = r.id;
        INSERT INTO mlproxy.model_function_names (function_schema, function_name, nargs, model_id)
        SELECT m.function_schema, n, coalesce(pg_catalog.array_length(m.arg_types, 1), 0), m.id
          FROM mlproxy.models m,
               unnest(pg_catalog.array_remove(ARRAY[m.function_name,
                   CASE WHEN m.prob_signature IS NOT NULL THEN m.function_name || '_prob' END,
                   CASE WHEN m.probabilities_signature IS NOT NULL
                        THEN m.function_name || '_probabilities' END], NULL)) AS n
         WHERE m.id = r.id
        ON CONFLICT DO NOTHING;  -- an older model keeps a name two held
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION mlproxy.create_model_privilege() TO %I', r.owner);
    END LOOP;
END
$migrate$;
"""
MIGRATIONS.append(_MIGRATION_4.replace("@PUBLIC_COLUMNS@", _PUBLIC_COLUMNS).replace("@NOTIFY_CHANNEL@", NOTIFY_CHANNEL))

# 5: SHOW MODEL in full, and Redshift's system views, each showing only the models
# the querying role may see (see visible_models). Replaces show_model and show_models
# whatever an earlier migration made of them.
_MIGRATION_5 = (
    """
ALTER TABLE mlproxy.models ADD COLUMN IF NOT EXISTS details jsonb;
-- Models are read through visible_models (below), which shows each role only the
-- models it may see, and the training query and the statement's options (IAM role,
-- S3 bucket, KMS key) only to their owner. Left readable: what the invoker-rights
-- entry points look up (names, owner, function signatures).
REVOKE SELECT (create_statement, options, source_query, state, failure_reason, target,
    arg_names, arg_types, return_type, problem_type, model_type, objective, metrics,
    leaderboard, feature_importances, artifact_sha256, rows_used, training_seconds,
    progress, max_runtime, job_owner, heartbeat, created_at, updated_at)
    ON mlproxy.models FROM PUBLIC;

-- The models the querying role may see, with what only their owner may see blanked
-- for the others. A view, not a SECURITY DEFINER function: the view reads the table
-- with its owner's privileges, while current_user (and with it pg_has_role and
-- has_function_privilege) stays the role in effect in the querying session, SET ROLE
-- included. security_barrier keeps a caller's functions from seeing other rows.
-- May see: superusers, the owner and members of the owning role, and roles with
-- EXECUTE on the prediction function (Redshift's GRANT EXECUTE ON MODEL).
CREATE VIEW mlproxy.visible_models WITH (security_barrier) AS
SELECT m.id, m.schema_name, m.model_name, m.owner::text AS owner, a.is_owner, m.state,
       m.failure_reason, m.target, m.function_schema, m.function_name, m.function_signature,
       a.fn AS function_oid, m.arg_names, m.arg_types, m.return_type, m.problem_type,
       m.model_type, m.objective, m.metrics, m.feature_importances, m.details, m.rows_used,
       m.training_seconds,
       m.progress, m.max_runtime, m.created_at, m.updated_at,
       CASE WHEN a.is_owner THEN m.source_query END AS source_query,
       CASE WHEN a.is_owner THEN m.options
            ELSE (m.options - 'iam_role' - 'settings') || pg_catalog.jsonb_build_object(
                     'given', coalesce(m.options -> 'given', '{}') - 'from_table')
       END AS options,
       -- Redshift's is_refreshable: known for a model trained FROM a table (does it
       -- still exist, may the role read it); NULL for one trained from a query.
       CASE WHEN m.options -> 'given' ? 'from_table' THEN
            coalesce(pg_catalog.has_table_privilege(
                pg_catalog.to_regclass(m.options -> 'given' ->> 'from_table'), 'SELECT')::integer, 0)
       END AS is_refreshable
  FROM mlproxy.models m,
       LATERAL (SELECT mlproxy.signature_oid(m.function_schema, m.function_name,
                                             m.function_signature) AS fn,
                       coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r
                                  WHERE r.rolname = current_user), false)
                       OR coalesce((SELECT pg_catalog.pg_has_role(r.oid, 'MEMBER')
                                      FROM pg_catalog.pg_roles r WHERE r.rolname = m.owner), false)
                       AS is_owner) a
 WHERE a.is_owner OR mlproxy.model_visible(m.owner, m.schema_name, m.function_schema,
                                           m.function_name, m.function_signature);

DROP FUNCTION IF EXISTS mlproxy.show_model(text, text);
DROP FUNCTION IF EXISTS mlproxy.show_models();

-- SHOW MODEL name: Redshift's keys in Redshift's order, then what mlproxy knows
-- besides. A model the role may not see is 42501 (visible_model_id), one that
-- does not exist 42704. Clauses the statement gave are echoed as
-- written (options.given); the owner-only keys are NULL for others and left out.
CREATE FUNCTION mlproxy.show_model(p_schema text, p_name text)
RETURNS TABLE ("Key" text, "Value" text) LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    m record;
    w jsonb;
    d jsonb;
    p jsonb;
BEGIN
    -- 42704 for no such model, 42501 for one the role may not see (as everywhere)
    SELECT * INTO m FROM mlproxy.visible_models x
     WHERE x.id = mlproxy.visible_model_id(p_schema, p_name);
    w := coalesce(m.options -> 'given', '{}');
    d := CASE WHEN pg_catalog.jsonb_typeof(m.details) = 'object' THEN m.details ELSE '{}' END;
    p := CASE WHEN pg_catalog.jsonb_typeof(m.progress) = 'object' THEN m.progress ELSE '{}' END;
    RETURN QUERY
    SELECT kv.k, kv.v FROM (
        VALUES (1, 0, 'Model Name', m.model_name),
               (2, 0, 'Schema Name', m.schema_name),
               (3, 0, 'Owner', m.owner),
               (4, 0, 'Creation Time',
                pg_catalog.to_char(m.created_at AT TIME ZONE 'UTC', 'Dy, DD.MM.YYYY HH24:MI:SS')),
               (5, 0, 'Model State', m.state),
               (6, 0, 'Failure Reason', CASE WHEN m.state = 'FAILED' THEN m.failure_reason END),
               (8, 0, 'Estimated Cost', CASE WHEN m.is_owner AND m.state = 'READY' THEN '0.00' END),
               (9, 0, '', ''),
               (10, 0, 'TRAINING DATA:', ''),
               (11, 0, CASE WHEN w ? 'from_table' THEN 'Table' ELSE 'Query' END,
                CASE WHEN m.is_owner THEN coalesce(w ->> 'from_table', m.source_query) END),
               (12, 0, 'Target Column', coalesce(m.target, '')),
               (13, 0, '', ''),
               (14, 0, 'PARAMETERS:', ''),
               (15, 0, 'Model Type',
                coalesce(w ->> 'model_type', m.model_type, m.options ->> 'model_type', 'AUTO')),
               (16, 0, 'Problem Type',
                coalesce(w ->> 'problem_type', m.problem_type, m.options ->> 'problem_type', '')),
               (17, 0, 'Objective', coalesce(w ->> 'objective', m.objective, '')),
               (18, 0, CASE WHEN (m.options ->> 'auto')::boolean IS false THEN 'Training Job Name'
                            ELSE 'AutoML Job Name' END,
                pg_catalog.format('mlproxy-%s-%s', m.id, pg_catalog.to_char(
                    m.created_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS'))),
               (19, 0, 'Function Name', m.function_name),
               (20, 0, 'Function Parameters', pg_catalog.array_to_string(m.arg_names, ' ')),
               (21, 0, 'Function Parameter Types', (
                    SELECT pg_catalog.string_agg(coalesce(t.typname::text, a.x), ' ' ORDER BY a.n)
                      FROM pg_catalog.unnest(m.arg_types) WITH ORDINALITY AS a(x, n)
                      LEFT JOIN pg_catalog.pg_type t ON t.oid = pg_catalog.to_regtype(a.x))),
               (22, 0, 'IAM Role', m.options ->> 'iam_role'),
               (23, 0, 'S3 Bucket', m.options -> 'settings' ->> 's3_bucket'),
               (24, 0, 'KMS Key', m.options -> 'settings' ->> 'kms_key_id'),
               (25, 0, 'Max Runtime', m.max_runtime::text),
               (26, 0, 'Preprocessors', w ->> 'preprocessors'),
               (27, 0, '', CASE WHEN w ? 'hyperparameters' THEN '' END),
               (27, 1, 'HYPERPARAMETERS:', CASE WHEN w ? 'hyperparameters' THEN '' END),
               -- mlproxy's own, after Redshift's keys
               (40, 0, '', ''),
               (41, 0, 'MLPROXY:', ''),
               (42, 0, 'Training Progress', CASE WHEN m.state = 'TRAINING' THEN pg_catalog.concat_ws(', ',
                    coalesce(p ->> 'phase', 'queued'),
                    CASE WHEN p ? 'trials' THEN (p ->> 'trials') || ' trials' END,
                    CASE WHEN pg_catalog.jsonb_typeof(p -> 'best_score') = 'number' THEN
                        pg_catalog.format('best %s %s', coalesce(p ->> 'objective', 'score'),
                            pg_catalog.round((p ->> 'best_score')::numeric, 4))
                        || coalesce(' (' || (p ->> 'best_model_type') || ')', '') END,
                    CASE WHEN pg_catalog.jsonb_typeof(p -> 'elapsed') = 'number' THEN
                        pg_catalog.round((p ->> 'elapsed')::numeric) || ' s elapsed' END) END),
               (43, 0, 'Function Return Type', m.return_type),
               (44, 0, 'Winner Hyperparameters', (d -> 'top_trials' -> 0 -> 'params')::text),
               (45, 0, 'Rows Used', m.rows_used::text),
               (46, 0, 'Sampling', CASE WHEN (d ->> 'sampled')::boolean THEN
                    pg_catalog.format('a sample of %s rows within MAX_CELLS %s',
                                      d ->> 'rows_exported', d ->> 'max_cells')
                    WHEN (d ->> 'sampled')::boolean IS false THEN
                    pg_catalog.format('none: all %s rows', d ->> 'rows_exported') END),
               (47, 0, 'Training Time', pg_catalog.round(m.training_seconds::numeric, 1) || ' s'),
               (50, 0, '', CASE WHEN d ? 'preprocessing' THEN '' END),
               (50, 1, 'PREPROCESSING:', CASE WHEN d ? 'preprocessing' THEN '' END),
               (60, 0, '', CASE WHEN d -> 'top_trials' <> '[]' THEN '' END),
               (60, 1, 'LEADERBOARD:', CASE WHEN d -> 'top_trials' <> '[]' THEN '' END),
               (70, 0, '', CASE WHEN d ? 'report' THEN '' END),
               (70, 1, 'AUTOML REPORT:', CASE WHEN d ? 'report' THEN '' END)
        UNION ALL
        SELECT 7, 0, 'validation:' || e.key, pg_catalog.round(e.value::numeric, 6)::text
          FROM pg_catalog.jsonb_each_text(coalesce(m.metrics, '{}')) e
         WHERE e.value ~ '^-?[0-9]+([.][0-9]*)?([eE][-+]?[0-9]+)?$'
        UNION ALL
        SELECT 28, h.n::integer, pg_catalog.lower(h.pair ->> 0), h.pair ->> 1
          FROM pg_catalog.jsonb_array_elements(coalesce(w -> 'hyperparameters', '[]'))
               WITH ORDINALITY AS h(pair, n)
        UNION ALL
        SELECT 51, coalesce(pg_catalog.array_position(m.arg_names, c.key), 0), c.key, c.value
          FROM pg_catalog.jsonb_each_text(coalesce(d -> 'preprocessing', '{}')) c
        UNION ALL
        SELECT 61, t.n::integer, '#' || t.n, pg_catalog.format('%s, %s %s, %s s',
                   t.trial ->> 'family', coalesce(m.objective, 'score'),
                   pg_catalog.round((t.trial ->> 'score')::numeric, 6), t.trial ->> 'seconds')
          FROM pg_catalog.jsonb_array_elements(coalesce(d -> 'top_trials', '[]'))
               WITH ORDINALITY AS t(trial, n)
        UNION ALL
        SELECT 71, r.n::integer, r.n::text, r.line
          FROM pg_catalog.jsonb_array_elements_text(coalesce(d -> 'report', '[]'))
               WITH ORDINALITY AS r(line, n)
    ) AS kv(s, n, k, v)
    WHERE kv.v IS NOT NULL
    ORDER BY kv.s, kv.n, kv.k;
END
$fn$;

-- SHOW MODEL ALL: Redshift's columns, then the state.
CREATE FUNCTION mlproxy.show_models()
RETURNS TABLE ("Schema Name" text, "Model Name" text, "Model State" text)
LANGUAGE sql STABLE SECURITY INVOKER AS $fn$
    SELECT schema_name, model_name, state FROM mlproxy.visible_models ORDER BY 1, 2
$fn$;

-- explain_model() of a model the role may see.
CREATE OR REPLACE FUNCTION mlproxy.explain_model(p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    v_schema text;
    v_name text := p_name;
    m record;
BEGIN
    IF position('.' in p_name) > 0 THEN
        v_schema := split_part(p_name, '.', 1);
        v_name := split_part(p_name, '.', 2);
    END IF;
    SELECT x.state, x.feature_importances INTO m FROM mlproxy.visible_models x
     WHERE x.id = mlproxy.visible_model_id(v_schema, v_name);
    IF m.state <> 'READY' THEN
        RAISE EXCEPTION 'model "%" is not ready (state %)', p_name, m.state
            USING ERRCODE = '55000';
    END IF;
    RETURN jsonb_build_object('version', '1.0', 'explanations', jsonb_build_object(
        'kernel_shap', jsonb_build_object('label0', jsonb_build_object(
            'global_shap_values', m.feature_importances))));
END
$fn$;

-- Redshift's system views (the proxy points their unqualified names here).
CREATE VIEW mlproxy.stv_ml_model_info AS
SELECT schema_name::character(128) AS schema_name, owner::character(128) AS user_name,
       model_name::character(128) AS model_name, 'ACTIVE'::character(20) AS life_cycle,
       is_refreshable, (CASE state WHEN 'READY' THEN 'Model is Ready'
                                   WHEN 'TRAINING' THEN 'Train Model In Progress'
                                   ELSE 'Model Training Failed' END)::character(128) AS model_state
  FROM mlproxy.visible_models;

CREATE VIEW mlproxy.svv_ml_model_info AS
SELECT pg_catalog.current_database()::character(128) AS database_name, schema_name, user_name,
       model_name, life_cycle, is_refreshable, model_state
  FROM mlproxy.stv_ml_model_info;

-- EXECUTE grants on each visible model's prediction function, as Redshift lists
-- them: not the owner's own; a role sees the grants to roles it is a member of,
-- to PUBLIC, and all grants of the models it owns.
CREATE VIEW mlproxy.svv_ml_model_privileges AS
SELECT vm.schema_name AS namespace_name, vm.model_name, 1 AS model_version,
       'EXECUTE'::text AS privilege_type, acl.grantee::integer AS identity_id,
       coalesce(r.rolname::text, 'public') AS identity_name,
       CASE WHEN acl.grantee = 0 THEN 'public' WHEN r.rolcanlogin THEN 'user' ELSE 'role' END
           AS identity_type,
       acl.is_grantable AS admin_option
  FROM mlproxy.visible_models vm
  JOIN pg_catalog.pg_proc f ON f.oid = vm.function_oid
  CROSS JOIN LATERAL pg_catalog.aclexplode(
      coalesce(f.proacl, pg_catalog.acldefault('f', f.proowner))) AS acl
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = acl.grantee
 WHERE acl.privilege_type = 'EXECUTE' AND acl.grantee <> f.proowner
   AND (vm.is_owner OR acl.grantee = 0 OR pg_catalog.pg_has_role(acl.grantee, 'MEMBER'));

GRANT SELECT ON mlproxy.visible_models, mlproxy.stv_ml_model_info, mlproxy.svv_ml_model_info,
    mlproxy.svv_ml_model_privileges TO PUBLIC;
""")
MIGRATIONS.append(_MIGRATION_5)

# 6: a trained model's Shapley values, Redshift's EXPLAIN_MODEL document as the
# training worker computed it.
MIGRATIONS.append("""
ALTER TABLE mlproxy.models ADD COLUMN explanations jsonb;
""")

# 7: EXPLAIN_MODEL returns the stored Shapley document (Redshift's status shape
# while there is none), names parsed as Postgres parses a qualified name; and
# `<function>_explain`, per-row Shapley values, a stub made with the model's others
# (signature in explain_signature; models made before this migration have none).
_MIGRATION_7 = """
ALTER TABLE mlproxy.models ADD COLUMN IF NOT EXISTS explain_signature text;
GRANT SELECT (explain_signature) ON mlproxy.models TO PUBLIC;

-- Claims `<function>_explain` for the model CREATE MODEL just recorded in this
-- transaction, after the checks record_model makes of its other stubs.
CREATE FUNCTION mlproxy.record_explain_stub(p_id bigint, p_explain regprocedure) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    m record;
    v_fn oid;
BEGIN
    -- (the row's own xmin is record_model's subtransaction's; its stub's is ours)
    SELECT id, function_schema, function_name, function_signature, explain_signature, state
      INTO m FROM mlproxy.models WHERE id = p_id;
    IF NOT FOUND OR m.state <> 'TRAINING' OR m.explain_signature IS NOT NULL THEN
        RAISE EXCEPTION 'model % was not recorded by this CREATE MODEL', p_id USING ERRCODE = '22023';
    END IF;
    v_fn := mlproxy.signature_oid(m.function_schema, m.function_name, m.function_signature);
    PERFORM 1 FROM pg_proc p, pg_proc f
     WHERE p.oid = p_explain AND f.oid = v_fn
       AND p.proname = f.proname || '_explain' AND p.pronamespace = f.pronamespace
       AND p.proowner = f.proowner AND p.proargtypes = f.proargtypes
       AND p.prorettype = 'jsonb'::regtype AND p.prokind = 'f' AND NOT p.prosecdef
       AND NOT p.proretset AND p.proconfig IS NULL
       AND p.prolang = (SELECT l.oid FROM pg_language l WHERE l.lanname = 'plpgsql')
       AND p.prosrc = mlproxy.stub_body(p.proname)
       AND p.xmin = pg_current_xact_id()::xid AND f.xmin = pg_current_xact_id()::xid
       AND pg_has_role(session_user, p.proowner, 'MEMBER');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'function % is not a model function stub created by this CREATE MODEL',
            p_explain USING ERRCODE = '22023';
    END IF;
    BEGIN
        INSERT INTO mlproxy.model_function_names (function_schema, function_name, nargs, model_id)
        SELECT m.function_schema, m.function_name || '_explain', f.pronargs, m.id
          FROM pg_proc f WHERE f.oid = v_fn;
    EXCEPTION WHEN unique_violation THEN
        PERFORM mlproxy.function_taken(m.function_schema, m.function_name || '_explain',
                                       (SELECT f.pronargs::integer FROM pg_proc f WHERE f.oid = v_fn));
    END;
    UPDATE mlproxy.models SET explain_signature = mlproxy.function_signature(p_explain) WHERE id = p_id;
END
$fn$;
GRANT EXECUTE ON FUNCTION mlproxy.record_explain_stub(bigint, regprocedure) TO PUBLIC;

-- CREATE MODEL: as in version 4, plus <function>_explain for models with a target
-- (not KMEANS) when the name fits.
CREATE OR REPLACE FUNCTION mlproxy.register_model(
    p_schema text, p_name text, p_fn_schema text, p_fn_name text,
    p_arg_names text[], p_arg_types text[], p_return_type text,
    p_statement text, p_options jsonb, p_query text, p_target text,
    p_max_runtime integer, p_job_owner text)
RETURNS bigint LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_types text;
    v_args text;
    v_return text;
    v_comment text;
    v_fn regprocedure;
    v_prob regprocedure;
    v_probabilities regprocedure;
    v_id bigint;
BEGIN
    p_schema := coalesce(p_schema, pg_catalog.current_schema());
    p_fn_schema := coalesce(p_fn_schema, pg_catalog.current_schema());
    IF p_schema IS NULL OR p_fn_schema IS NULL THEN
        RAISE EXCEPTION 'no schema has been selected to create in' USING ERRCODE = '3F000';
    END IF;
    IF pg_catalog.array_length(p_arg_names, 1) IS DISTINCT FROM pg_catalog.array_length(p_arg_types, 1) THEN
        RAISE EXCEPTION 'a model function needs a name for each argument' USING ERRCODE = '22023';
    END IF;
    PERFORM mlproxy.check_create_model(current_user, p_schema, p_fn_schema);
    SELECT coalesce(pg_catalog.string_agg(pg_catalog.format_type(a.t::regtype, NULL), ', ' ORDER BY a.i), ''),
           coalesce(pg_catalog.string_agg(pg_catalog.format('%I %s', a.n, pg_catalog.format_type(a.t::regtype, NULL)),
                                          ', ' ORDER BY a.i), '')
      INTO v_types, v_args
      FROM unnest(p_arg_names, p_arg_types) WITH ORDINALITY AS a(n, t, i);
    v_return := pg_catalog.format_type(p_return_type::regtype, NULL);
    v_comment := pg_catalog.format('mlproxy model %I.%I', p_schema, p_name);
    IF mlproxy.has_probabilities(p_target, v_return) THEN
        PERFORM 1 WHERE pg_catalog.octet_length(p_fn_name || '_probabilities') < 64;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'model function name "%" is too long', p_fn_name
                USING ERRCODE = '42622',
                      HINT = 'Classification models also get <function>_probabilities, which must fit in 63 bytes.';
        END IF;
    END IF;
    v_fn := mlproxy.make_stub(p_fn_schema, p_fn_name, v_args, v_types, v_return, v_comment);
    IF mlproxy.has_probabilities(p_target, v_return) THEN
        v_prob := mlproxy.make_stub(p_fn_schema, p_fn_name || '_prob', v_args, v_types, 'jsonb',
                                    v_comment || ' (probabilities)');
        v_probabilities := mlproxy.make_stub(p_fn_schema, p_fn_name || '_probabilities', v_args,
                                             v_types, 'jsonb', v_comment || ' (probabilities)');
    END IF;
    v_id := mlproxy.record_model(p_schema, p_name, v_fn, v_prob, v_probabilities, p_statement,
                                 p_options, p_query, p_target, p_max_runtime, p_job_owner);
    IF p_target IS NOT NULL THEN
        IF pg_catalog.octet_length(p_fn_name || '_explain') < 64 THEN
            PERFORM mlproxy.record_explain_stub(v_id, mlproxy.make_stub(
                p_fn_schema, p_fn_name || '_explain', v_args, v_types, 'jsonb',
                v_comment || ' (Shapley values)'));
        ELSE
            RAISE NOTICE 'model function name "%" is too long for a %_explain function; the model has none',
                p_fn_name, p_fn_name;
        END IF;
    END IF;
    RETURN v_id;
END
$fn$;

-- forget_model, drop_model and model_functions as in version 4, with <function>_explain.
CREATE OR REPLACE FUNCTION mlproxy.forget_model(p_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    m record;
BEGIN
    SELECT id, schema_name, model_name, owner, function_schema, function_name,
           function_signature, prob_signature, probabilities_signature, explain_signature
      INTO m FROM mlproxy.models WHERE id = p_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model % does not exist', p_id USING ERRCODE = '42704';
    END IF;
    IF NOT (EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = session_user AND r.rolsuper)
            OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = m.owner
                        AND pg_has_role(session_user, r.oid, 'MEMBER'))
            OR EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = m.schema_name
                        AND pg_has_role(session_user, n.nspowner, 'MEMBER'))) THEN
        RAISE EXCEPTION 'must be owner of model %', m.model_name USING ERRCODE = '42501';
    END IF;
    IF mlproxy.signature_oid(m.function_schema, m.function_name, m.function_signature) IS NOT NULL
       OR mlproxy.signature_oid(m.function_schema, m.function_name || '_prob', m.prob_signature) IS NOT NULL
       OR mlproxy.signature_oid(m.function_schema, m.function_name || '_probabilities',
                                m.probabilities_signature) IS NOT NULL
       OR mlproxy.signature_oid(m.function_schema, m.function_name || '_explain',
                                m.explain_signature) IS NOT NULL THEN
        RAISE EXCEPTION 'the functions of model % still exist', m.model_name
            USING ERRCODE = '55006', HINT = 'DROP MODEL drops them first.';
    END IF;
    DELETE FROM mlproxy.models WHERE id = p_id;
    PERFORM pg_notify('@NOTIFY_CHANNEL@', json_build_object('event', 'dropped', 'id', p_id)::text);
END
$fn$;

CREATE OR REPLACE FUNCTION mlproxy.drop_model(p_schema text, p_name text, p_if_exists boolean)
RETURNS bigint LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    m record;
    v_sig text;
BEGIN
    IF mlproxy.find_model(p_schema, p_name) IS NULL THEN
        IF p_if_exists THEN
            RAISE NOTICE 'model "%" does not exist, skipping', p_name;
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'model "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    SELECT id, function_signature, prob_signature, probabilities_signature, explain_signature INTO m
      FROM mlproxy.models WHERE id = mlproxy.find_model(p_schema, p_name);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'must be owner of model %', p_name USING ERRCODE = '42501';
    END IF;
    BEGIN
        FOREACH v_sig IN ARRAY pg_catalog.array_remove(
                ARRAY[m.explain_signature, m.probabilities_signature, m.prob_signature,
                      m.function_signature], NULL) LOOP
            EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %s', v_sig);
        END LOOP;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'must be owner of model %', p_name USING ERRCODE = '42501';
    END;
    PERFORM mlproxy.forget_model(m.id);
    RETURN m.id;
END
$fn$;

CREATE OR REPLACE FUNCTION mlproxy.model_functions(p_schema text, p_name text) RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    v text[];
BEGIN
    SELECT pg_catalog.array_remove(ARRAY[function_signature, prob_signature, probabilities_signature,
                                         explain_signature], NULL)
      INTO v FROM mlproxy.models WHERE id = mlproxy.visible_model_id(p_schema, p_name);
    RETURN v;
END
$fn$;

-- visible_models as in version 5, with the stored explanations last.
CREATE OR REPLACE VIEW mlproxy.visible_models WITH (security_barrier) AS
SELECT m.id, m.schema_name, m.model_name, m.owner::text AS owner, a.is_owner, m.state,
       m.failure_reason, m.target, m.function_schema, m.function_name, m.function_signature,
       a.fn AS function_oid, m.arg_names, m.arg_types, m.return_type, m.problem_type,
       m.model_type, m.objective, m.metrics, m.feature_importances, m.details, m.rows_used,
       m.training_seconds,
       m.progress, m.max_runtime, m.created_at, m.updated_at,
       CASE WHEN a.is_owner THEN m.source_query END AS source_query,
       CASE WHEN a.is_owner THEN m.options
            ELSE (m.options - 'iam_role' - 'settings') || pg_catalog.jsonb_build_object(
                     'given', coalesce(m.options -> 'given', '{}') - 'from_table')
       END AS options,
       CASE WHEN m.options -> 'given' ? 'from_table' THEN
            coalesce(pg_catalog.has_table_privilege(
                pg_catalog.to_regclass(m.options -> 'given' ->> 'from_table'), 'SELECT')::integer, 0)
       END AS is_refreshable,
       m.explanations
  FROM mlproxy.models m,
       LATERAL (SELECT mlproxy.signature_oid(m.function_schema, m.function_name,
                                             m.function_signature) AS fn,
                       coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r
                                  WHERE r.rolname = current_user), false)
                       OR coalesce((SELECT pg_catalog.pg_has_role(r.oid, 'MEMBER')
                                      FROM pg_catalog.pg_roles r WHERE r.rolname = m.owner), false)
                       AS is_owner) a
 WHERE a.is_owner OR mlproxy.model_visible(m.owner, m.schema_name, m.function_schema,
                                           m.function_name, m.function_signature);

-- EXPLAIN_MODEL('[schema.]model'): the Shapley document the training worker
-- stored, for a model the role may see (42704 / 42501 as everywhere). The name is
-- read as Postgres reads a qualified name (parse_ident: quotes keep case and dots).
-- Without a document, Redshift's explanation states: 'waiting for training job to
-- complete' while the model trains, else 'processing job failed' (failed training,
-- KMEANS, a model whose explanation could not be computed).
CREATE OR REPLACE FUNCTION mlproxy.explain_model(p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    v_parts text[];
    v_schema text;
    m record;
BEGIN
    v_parts := pg_catalog.parse_ident(p_name);
    IF pg_catalog.array_length(v_parts, 1) = 3 AND v_parts[1] = pg_catalog.current_database() THEN
        v_parts := v_parts[2:3];
    END IF;
    IF pg_catalog.array_length(v_parts, 1) > 2 THEN
        RAISE EXCEPTION 'improper qualified name (too many dotted names): %', p_name
            USING ERRCODE = '42601';
    END IF;
    IF pg_catalog.array_length(v_parts, 1) = 2 THEN
        v_schema := v_parts[1];
    END IF;
    SELECT x.state, x.explanations INTO m FROM mlproxy.visible_models x
     WHERE x.id = mlproxy.visible_model_id(v_schema, v_parts[pg_catalog.array_length(v_parts, 1)]);
    IF m.state = 'TRAINING' THEN
        RETURN '{"explanations": "waiting for training job to complete"}'::jsonb;
    END IF;
    IF m.state <> 'READY' OR pg_catalog.jsonb_typeof(m.explanations -> 'explanations') IS DISTINCT FROM 'object' THEN
        RETURN '{"explanations": "processing job failed"}'::jsonb;
    END IF;
    RETURN m.explanations;
END
$fn$;
"""
MIGRATIONS.append(_MIGRATION_7.replace("@NOTIFY_CHANNEL@", NOTIFY_CHANNEL))

# 8: FORECAST models. Their artifact is the forecast itself (automl/forecast/artifact.py:
# UTF-8 JSON, rows [item, time, value per percentile]); FORECAST(m) reads it through
# mlproxy.forecast, which any role may call: the model must be visible to the caller
# (visible_model_id: owner, superuser, or EXECUTE on its stub <model>_forecast(), which
# GRANT EXECUTE ON MODEL gives), a FORECAST model, and READY. The artifact column is
# not readable by PUBLIC: visible_forecasts (a security_barrier view, as visible_models)
# hands it out for the visible models only.
_MIGRATION_8 = """
CREATE VIEW mlproxy.visible_forecasts WITH (security_barrier) AS
SELECT m.id, m.artifact FROM mlproxy.models m
 WHERE m.state = 'READY' AND m.options ->> 'model_type' = 'FORECAST'
   AND m.id IN (SELECT v.id FROM mlproxy.visible_models v);
GRANT SELECT ON mlproxy.visible_forecasts TO PUBLIC;

CREATE FUNCTION mlproxy.forecast(p_schema text, p_name text)
RETURNS TABLE (id text, "time" timestamp, q double precision[])
LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    v_id bigint := mlproxy.visible_model_id(p_schema, p_name);
    m record;
    v_doc jsonb;
BEGIN
    SELECT x.state, x.options ->> 'model_type' AS model_type INTO m
      FROM mlproxy.visible_models x WHERE x.id OPERATOR(pg_catalog.=) v_id;
    IF m.model_type IS DISTINCT FROM 'FORECAST' THEN
        RAISE EXCEPTION 'model "%" is not a FORECAST model', p_name USING ERRCODE = '42809',
            HINT = 'FORECAST(model) reads models created with MODEL_TYPE FORECAST.';
    END IF;
    IF m.state OPERATOR(pg_catalog.<>) 'READY' THEN
        RAISE EXCEPTION 'model "%" is %', p_name, m.state USING ERRCODE = '55000',
            HINT = 'SHOW MODEL tells its progress or failure; the forecast exists once it is READY.';
    END IF;
    SELECT pg_catalog.convert_from(f.artifact, 'UTF8')::jsonb INTO v_doc
      FROM mlproxy.visible_forecasts f WHERE f.id OPERATOR(pg_catalog.=) v_id;
    RETURN QUERY
    SELECT r.row ->> 0, (r.row ->> 1)::timestamp,
           ARRAY(SELECT e.v::double precision
                   FROM pg_catalog.jsonb_array_elements_text(r.row) WITH ORDINALITY AS e(v, n)
                  WHERE e.n OPERATOR(pg_catalog.>) 2 ORDER BY e.n)
      FROM pg_catalog.jsonb_array_elements(v_doc -> 'rows') WITH ORDINALITY AS r(row, n)
     ORDER BY r.n;
END
$fn$;
GRANT EXECUTE ON FUNCTION mlproxy.forecast(text, text) TO PUBLIC;
"""
MIGRATIONS.append(_MIGRATION_8)

# 9: training jobs are a queue that every proxy of a fleet takes from. A job is a row
# of `training_jobs` (its model's snapshot URL, who holds it and until when); a proxy
# with a free worker claims the oldest job whose lease is free or expired and whose
# snapshot it can read (FOR UPDATE SKIP LOCKED: two proxies never claim one job), and
# renews the lease while it trains; a proxy that died leaves its lease to expire and
# another takes the job over. Proxies record what snapshots they can read in
# `training_proxies`, so that a job no running proxy can read is FAILED with the
# reason instead of waiting forever. Only the service identity (the owner) reads or
# writes these tables and runs these functions: PUBLIC has no privilege on them.
_MIGRATION_9 = """
CREATE TABLE IF NOT EXISTS mlproxy.training_jobs (
    model_id        bigint PRIMARY KEY REFERENCES mlproxy.models (id) ON DELETE CASCADE,
    snapshot        text NOT NULL,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    claimed_by      text,         -- who holds the lease (NULL: given back)
    last_owner      text,         -- who claimed it last (a take-over says from whom)
    claimed_at      timestamptz,
    lease_until     timestamptz,
    attempts        integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS training_jobs_queue ON mlproxy.training_jobs (enqueued_at, model_id);
REVOKE ALL ON mlproxy.training_jobs FROM PUBLIC;

CREATE TABLE IF NOT EXISTS mlproxy.training_proxies (
    instance          text PRIMARY KEY,
    snapshot_prefixes text[] NOT NULL,
    seen              timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON mlproxy.training_proxies FROM PUBLIC;

-- A proxy says it is alive and which snapshot URLs it can read.
CREATE OR REPLACE FUNCTION mlproxy.announce_training_proxy(p_instance text, p_prefixes text[])
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    INSERT INTO mlproxy.training_proxies AS t (instance, snapshot_prefixes, seen)
    VALUES (p_instance, p_prefixes, now())
    ON CONFLICT (instance) DO UPDATE SET snapshot_prefixes = EXCLUDED.snapshot_prefixes, seen = now();
    DELETE FROM mlproxy.training_proxies WHERE seen < now() - interval '1 day';
$fn$;
REVOKE EXECUTE ON FUNCTION mlproxy.announce_training_proxy(text, text[]) FROM PUBLIC;

-- The next job for p_instance, leased for p_lease_seconds (no row: none free).
CREATE OR REPLACE FUNCTION mlproxy.claim_training_job(p_instance text, p_lease_seconds double precision,
                                                      p_prefixes text[])
RETURNS TABLE (job_model_id bigint, job_snapshot text, job_attempts integer, job_previous_owner text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    j record;
BEGIN
    PERFORM mlproxy.announce_training_proxy(p_instance, p_prefixes);
    SELECT t.model_id, t.last_owner INTO j
      FROM mlproxy.training_jobs t JOIN mlproxy.models m ON m.id = t.model_id
     WHERE m.state = 'TRAINING'
       AND (t.lease_until IS NULL OR t.lease_until < now())
       AND EXISTS (SELECT 1 FROM unnest(p_prefixes) AS x(prefix) WHERE starts_with(t.snapshot, x.prefix))
     ORDER BY t.enqueued_at, t.model_id
     LIMIT 1
       FOR UPDATE OF t SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE mlproxy.training_jobs t
       SET claimed_by = p_instance, last_owner = p_instance, claimed_at = now(), attempts = t.attempts + 1,
           lease_until = now() + make_interval(secs => p_lease_seconds)
     WHERE t.model_id = j.model_id
    RETURNING t.model_id, t.snapshot, t.attempts, j.last_owner
      INTO job_model_id, job_snapshot, job_attempts, job_previous_owner;
    UPDATE mlproxy.models SET job_owner = p_instance, heartbeat = now(), updated_at = now(),
           progress = '{"phase": "claimed"}'
     WHERE id = j.model_id;
    RETURN NEXT;
END
$fn$;
REVOKE EXECUTE ON FUNCTION mlproxy.claim_training_job(text, double precision, text[]) FROM PUBLIC;

-- Renew p_instance's lease on a job and record its progress; false when the job is no
-- longer p_instance's (another proxy took it over) or its model is gone or finished.
CREATE OR REPLACE FUNCTION mlproxy.renew_training_lease(p_model_id bigint, p_instance text,
                                                        p_lease_seconds double precision, p_progress jsonb)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    UPDATE mlproxy.training_jobs
       SET lease_until = now() + make_interval(secs => p_lease_seconds)
     WHERE model_id = p_model_id AND claimed_by = p_instance;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE mlproxy.models SET progress = p_progress, heartbeat = now(), job_owner = p_instance,
           updated_at = now()
     WHERE id = p_model_id AND state = 'TRAINING';
    RETURN FOUND;
END
$fn$;
REVOKE EXECUTE ON FUNCTION mlproxy.renew_training_lease(bigint, text, double precision, jsonb) FROM PUBLIC;

-- A job whose lease is free or expired for p_grace_seconds and whose snapshot no proxy
-- seen in that time can read is FAILED, with the reason; returns the failed ids.
CREATE OR REPLACE FUNCTION mlproxy.fail_unresumable_jobs(p_grace_seconds double precision)
RETURNS SETOF bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    r record;
    v_since timestamptz := now() - make_interval(secs => p_grace_seconds);
BEGIN
    FOR r IN SELECT t.model_id, t.snapshot, t.last_owner
               FROM mlproxy.training_jobs t JOIN mlproxy.models m ON m.id = t.model_id
              WHERE m.state = 'TRAINING'
                AND coalesce(t.lease_until, t.enqueued_at) < v_since
                AND NOT EXISTS (SELECT 1 FROM mlproxy.training_proxies p, unnest(p.snapshot_prefixes) AS x(prefix)
                                 WHERE p.seen >= v_since AND starts_with(t.snapshot, x.prefix))
                FOR UPDATE OF t SKIP LOCKED LOOP
        UPDATE mlproxy.models
           SET state = 'FAILED', heartbeat = now(), updated_at = now(),
               failure_reason = format('training was interrupted%s and its data snapshot is not available '
                                       'to any running proxy (%s, for %s s); drop the model and create it again',
                                       CASE WHEN r.last_owner IS NOT NULL THEN format(' (last run by %s)', r.last_owner)
                                            ELSE '' END, r.snapshot, round(p_grace_seconds))
         WHERE id = r.model_id AND state = 'TRAINING';
        DELETE FROM mlproxy.training_jobs WHERE model_id = r.model_id;
        PERFORM pg_notify('@NOTIFY_CHANNEL@', json_build_object('event', 'failed', 'id', r.model_id)::text);
        RETURN NEXT r.model_id;
    END LOOP;
END
$fn$;
REVOKE EXECUTE ON FUNCTION mlproxy.fail_unresumable_jobs(double precision) FROM PUBLIC;
"""
MIGRATIONS.append(_MIGRATION_9.replace("@NOTIFY_CHANNEL@", NOTIFY_CHANNEL))


# 10: SHOW MODEL of a FORECAST model tells its HORIZON, FREQUENCY and PERCENTILES as
# keys of their own (Redshift's key spelling for a setting: 'Max Runtime' for
# MAX_RUNTIME), after Max Runtime; other models are shown as before. The function is
# migration 5's with these three rows added (derived from its text, so both stay one
# definition); options -> 'forecast' is visible to every role that may see the model.
def _show_model_with_forecast_keys() -> str:
    start = _MIGRATION_5.index("CREATE FUNCTION mlproxy.show_model(")
    end = _MIGRATION_5.index("$fn$;", start) + len("$fn$;")
    body = _MIGRATION_5[start:end]
    row = "               (25, 0, 'Max Runtime', m.max_runtime::text),\n"
    if row not in body:
        raise RuntimeError("migration 9: SHOW MODEL's Max Runtime row not found in migration 5")
    keys = row + (
        "               (25, 1, 'Horizon', m.options -> 'forecast' ->> 'horizon'),\n"
        "               (25, 2, 'Frequency', m.options -> 'forecast' ->> 'frequency'),\n"
        "               (25, 3, 'Percentiles', (SELECT pg_catalog.string_agg(x.p, ',' ORDER BY x.n)\n"
        "                    FROM pg_catalog.jsonb_array_elements_text(m.options -> 'forecast' -> 'percentiles')\n"
        "                         WITH ORDINALITY AS x(p, n))),\n")
    return body.replace(row, keys).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


MIGRATIONS.append(_show_model_with_forecast_keys())


# 11: BYOM remote inference (CREATE MODEL ... SAGEMAKER): a model whose rows an inference
# endpoint scores. It is registered as every model is (register_model: the stubs as
# the client, record_model's checks, a private model), then, in the same statement,
# record_remote_model makes the row just recorded READY with its endpoint (the name
# the operator maps to a URL, or a URL: the proxy checks it against its settings at
# every call, so a row made by hand gains nothing). SHOW MODEL of such a model lists
# what it has (show_any_model; SHOW MODEL calls it for every model).
_MIGRATION_REMOTE = r"""
ALTER TABLE mlproxy.models ADD COLUMN IF NOT EXISTS endpoint text;
GRANT SELECT (endpoint) ON mlproxy.models TO PUBLIC;

CREATE OR REPLACE FUNCTION mlproxy.record_remote_model(p_id bigint, p_endpoint text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    m record;
BEGIN
    SELECT id, owner, state, target, source_query, created_at INTO m
      FROM mlproxy.models WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model % does not exist', p_id USING ERRCODE = '42704';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = m.owner
                    AND pg_has_role(session_user, r.oid, 'MEMBER')) THEN
        RAISE EXCEPTION 'must be owner of model %', p_id USING ERRCODE = '42501';
    END IF;
    -- a row of no training data (no query, no target) that this transaction recorded
    -- (record_model inserts in a subtransaction: its xmin is not the transaction's;
    -- created_at is the transaction's start). The owner could drop and create it
    -- again anyway: this keeps a training model's row from being made remote.
    IF m.state <> 'TRAINING' OR m.target IS NOT NULL OR m.source_query <> ''
       OR m.created_at <> now() THEN
        RAISE EXCEPTION 'model % was not recorded by this CREATE MODEL', p_id USING ERRCODE = '22023';
    END IF;
    IF coalesce(p_endpoint, '') = '' THEN
        RAISE EXCEPTION 'a remote model needs an endpoint' USING ERRCODE = '22023';
    END IF;
    UPDATE mlproxy.models SET state = 'READY', endpoint = p_endpoint, progress = NULL,
           heartbeat = NULL, job_owner = NULL, max_runtime = NULL, updated_at = now()
     WHERE id = p_id;
    RETURN p_id;
END
$fn$;
GRANT EXECUTE ON FUNCTION mlproxy.record_remote_model(bigint, text) TO PUBLIC;

-- CREATE MODEL ... SAGEMAKER, on the client's session: stubs and row as for any
-- model, READY with its endpoint, in one statement.
CREATE OR REPLACE FUNCTION mlproxy.register_remote_model(
    p_schema text, p_name text, p_fn_schema text, p_fn_name text,
    p_arg_names text[], p_arg_types text[], p_return_type text,
    p_statement text, p_options jsonb, p_endpoint text)
RETURNS bigint LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    RETURN mlproxy.record_remote_model(
        mlproxy.register_model(p_schema, p_name, p_fn_schema, p_fn_name, p_arg_names, p_arg_types,
                               p_return_type, p_statement, p_options, '', NULL, NULL, NULL),
        p_endpoint);
END
$fn$;

-- SHOW MODEL name: a remote model's keys (Redshift's for BYOM remote inference), any
-- other model's from show_model.
CREATE OR REPLACE FUNCTION mlproxy.show_any_model(p_schema text, p_name text)
RETURNS TABLE ("Key" text, "Value" text) LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    v_id bigint := mlproxy.visible_model_id(p_schema, p_name);
    v_endpoint text;
    m record;
BEGIN
    SELECT x.endpoint INTO v_endpoint FROM mlproxy.models x WHERE x.id OPERATOR(pg_catalog.=) v_id;
    IF v_endpoint IS NULL THEN
        RETURN QUERY SELECT * FROM mlproxy.show_model(p_schema, p_name);
        RETURN;
    END IF;
    SELECT * INTO m FROM mlproxy.visible_models x WHERE x.id OPERATOR(pg_catalog.=) v_id;
    RETURN QUERY
    SELECT kv.k, kv.v FROM (
        VALUES (1, 'Model Name', m.model_name),
               (2, 'Schema Name', m.schema_name),
               (3, 'Owner', m.owner),
               (4, 'Creation Time',
                pg_catalog.to_char(m.created_at AT TIME ZONE 'UTC', 'Dy, DD.MM.YYYY HH24:MI:SS')),
               (5, 'Model State', m.state),
               (6, '', ''),
               (7, 'PARAMETERS:', ''),
               (8, 'Endpoint', pg_catalog.regexp_replace(v_endpoint, '(://)[^/@]*@', '***@')),
               (9, 'Target Model', m.options -> 'given' ->> 'target_model'),
               (10, 'Function Name', m.function_name),
               (11, 'Inference Type', 'Remote'),
               (12, 'Function Parameter Types', (
                    SELECT pg_catalog.string_agg(coalesce(t.typname::text, a.x), ' ' ORDER BY a.n)
                      FROM pg_catalog.unnest(m.arg_types) WITH ORDINALITY AS a(x, n)
                      LEFT JOIN pg_catalog.pg_type t ON t.oid = pg_catalog.to_regtype(a.x))),
               (13, 'Function Return Type', m.return_type),
               (14, 'IAM Role', m.options ->> 'iam_role'),
               (15, 'Max Batch Rows', m.options -> 'given' ->> 'max_batch_rows')
    ) AS kv(s, k, v)
    WHERE kv.v IS NOT NULL
    ORDER BY kv.s;
END
$fn$;
"""
MIGRATIONS.append(_MIGRATION_REMOTE)

# A stub's message names its function: as RAISE's format string, a function named
# with a % (legal, quoted) made a body plpgsql refuses ("too few parameters specified
# for RAISE"), so CREATE MODEL failed. The message now goes in USING MESSAGE, which is
# not a format. Stubs made before keep their body (none can have a %); record_model's
# checks compare a new stub with this function, in the same transaction.
MIGRATIONS.append("""
CREATE OR REPLACE FUNCTION mlproxy.stub_body(p_fn_name text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT format('BEGIN RAISE EXCEPTION USING MESSAGE = %L, ERRCODE = %L, HINT = %L; END',
                  format('model function %s can only be evaluated through mlproxy', p_fn_name),
                  '0A000', 'Connect through the mlproxy port to use model functions.')
$fn$;
""")


async def migrate(conn) -> int:
    """Bring the catalog schema to the newest version; returns that version.

    `conn` is an asyncpg connection of the proxy's service identity. Safe to run from
    many proxies at once: the migrations run in one transaction under an advisory
    lock, and each is recorded in `mlproxy.schema_version`. What a migration warns
    about (rows it removed, models whose privileges it could not change) is logged.
    """
    def warned(_conn, message) -> None:
        if getattr(message, "severity_en", None) == "WARNING" or getattr(message, "severity", "") == "WARNING":
            log.warning("catalog migration: %s", message.message)

    conn.add_log_listener(warned)
    try:
        return await _migrate(conn)
    finally:
        conn.remove_log_listener(warned)


async def _migrate(conn) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE SCHEMA IF NOT EXISTS mlproxy;"
            "CREATE TABLE IF NOT EXISTS mlproxy.schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        current = await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM mlproxy.schema_version")
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO mlproxy.schema_version (version) VALUES ($1)", version)
        return len(MIGRATIONS)
