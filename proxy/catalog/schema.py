"""The model catalog's schema in the upstream database, and its migrations.

Everything about a model lives in schema `mlproxy` of the database it was created
in, so every proxy in front of that database sees the same models. Privileges are
Postgres's own:

- A model's SQL function exists as a stub owned by its creator. Creating it needs
  CREATE on the schema; GRANT/REVOKE EXECUTE on it is how a model is shared; only
  its owner (or a member of the owning role) can drop it, and with it the model.
- `register_model` and `drop_model` are SECURITY INVOKER functions run on the
  client's own session, so the stub and the catalog row are created (or removed)
  in one statement, under the client's identity: nothing is ever half-written.
- Row-level security lets a role insert only rows it owns and delete only rows of
  roles it is a member of. Training results are written by the proxy's service
  connection (the table owner). The artifact column is not readable by PUBLIC, nor
  (migration 5) the columns naming the training data and storage; SHOW MODEL and the
  system views read `mlproxy.visible_models`, which shows each role only the models
  it may see, and those columns only to their owner.

Migrations are numbered; `migrate` applies the missing ones under an advisory lock,
so proxies starting at the same moment do not race.
"""

from __future__ import annotations

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
    # 5: SHOW MODEL in full, and Redshift's system views, each showing only the
    # models the querying role may see (see visible_models). Replaces 1's show_model
    # and show_models whatever an earlier migration made of them.
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
                     'as_written', coalesce(m.options -> 'as_written', '{}') - 'from_table')
       END AS options,
       -- Redshift's is_refreshable: known for a model trained FROM a table (does it
       -- still exist, may the role read it); NULL for one trained from a query.
       CASE WHEN m.options -> 'as_written' ? 'from_table' THEN
            coalesce(pg_catalog.has_table_privilege(
                pg_catalog.to_regclass(m.options -> 'as_written' ->> 'from_table'), 'SELECT')::integer, 0)
       END AS is_refreshable
  FROM mlproxy.models m,
       LATERAL (SELECT pg_catalog.to_regprocedure(m.function_signature) AS fn,
                       coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r
                                  WHERE r.rolname = current_user), false)
                       OR coalesce((SELECT pg_catalog.pg_has_role(r.oid, 'MEMBER')
                                      FROM pg_catalog.pg_roles r WHERE r.rolname = m.owner), false)
                       AS is_owner) a
 WHERE a.is_owner OR coalesce(pg_catalog.has_function_privilege(a.fn, 'EXECUTE'), false);

DROP FUNCTION IF EXISTS mlproxy.show_model(text, text);
DROP FUNCTION IF EXISTS mlproxy.show_models();

-- SHOW MODEL name: Redshift's keys in Redshift's order, then what mlproxy knows
-- besides. A model the role may not see does not exist for it (42704), as a
-- table in a schema it cannot see. Clauses the statement gave are echoed as
-- written (options.as_written); the owner-only keys are NULL for others and left out.
CREATE FUNCTION mlproxy.show_model(p_schema text, p_name text)
RETURNS TABLE ("Key" text, "Value" text) LANGUAGE plpgsql STABLE SECURITY INVOKER AS $fn$
DECLARE
    m record;
    w jsonb;
    d jsonb;
    p jsonb;
BEGIN
    SELECT * INTO m FROM mlproxy.visible_models x
     WHERE x.model_name = p_name
       AND CASE WHEN p_schema IS NULL THEN x.schema_name = ANY (pg_catalog.current_schemas(false))
                ELSE x.schema_name = p_schema END
     ORDER BY pg_catalog.array_position(pg_catalog.current_schemas(false), x.schema_name::name)
     LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" does not exist', p_name USING ERRCODE = '42704';
    END IF;
    w := coalesce(m.options -> 'as_written', '{}');
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
        SELECT 28, h.n::integer, h.pair ->> 0, h.pair ->> 1
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
     WHERE x.model_name = v_name
       AND CASE WHEN v_schema IS NULL THEN x.schema_name = ANY (pg_catalog.current_schemas(false))
                ELSE x.schema_name = v_schema END
     ORDER BY pg_catalog.array_position(pg_catalog.current_schemas(false), x.schema_name::name)
     LIMIT 1;
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
""",
]


async def migrate(conn) -> int:
    """Bring the catalog schema to the newest version; returns that version.

    `conn` is an asyncpg connection of the proxy's service identity. Safe to run from
    many proxies at once: the migrations run in one transaction under an advisory
    lock, and each is recorded in `mlproxy.schema_version`.
    """
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
