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
  connection (the table owner). The artifact column is not readable by PUBLIC.

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
    # 6 (after 4 and 5 when the branches meet): a trained model's Shapley values,
    # Redshift's EXPLAIN_MODEL document as the training worker computed it.
    """
ALTER TABLE mlproxy.models ADD COLUMN explanations jsonb;
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
