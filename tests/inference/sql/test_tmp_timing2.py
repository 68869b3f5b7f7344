import time, psycopg

def test_timing2(suite):
    with suite.direct() as d:
        d.execute("CREATE TEMP TABLE zz (a0 float8, a1 float8, a2 text, p float8)")
        d.execute("CREATE INDEX ON zz ((ARRAY[a0::text, a1::text, a2]))")
        out = {}
        for name, sql in [
            ("do_delete", "DO $x$BEGIN IF to_regclass('pg_temp.zz') IS NULL THEN CREATE TEMP TABLE zz (a0 float8, p float8); ELSE DELETE FROM pg_temp.zz; END IF; END$x$"),
            ("do_check", "DO $x$BEGIN PERFORM mlproxy.check_execute(ARRAY['public.predict_price(integer, double precision, text)']::text[], ARRAY['predict_price']::text[]); END$x$"),
            ("select_check", "SELECT mlproxy.check_execute(ARRAY['public.predict_price(integer, double precision, text)']::text[], ARRAY['predict_price']::text[])"),
            ("delete", "DELETE FROM pg_temp.zz"),
            ("input", "SELECT DISTINCT rooms::float8, area, city FROM houses WHERE id = 5"),
            ("lookup", "SELECT id FROM houses WHERE id = 5 AND (SELECT m.p FROM pg_temp.zz m WHERE ARRAY[m.a0::text, m.a1::text, m.a2] = ARRAY[rooms::float8::text, area::text, city] LIMIT 1) > 0"),
        ]:
            n = 200
            t = time.perf_counter()
            for i in range(n):
                d.execute(sql, prepare=False)
            out[name] = round((time.perf_counter() - t) / n * 1e6)
        print("\nDIRECT us", out)
