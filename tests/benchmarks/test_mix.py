"""The mix benchmark runs end to end on a tiny table (its figures are not checked
here: timing targets live in benchmarks/): every target ran the script in prepared
mode without a failed transaction, pgbench -r's statement latencies were read, and
PgBouncer is compared where it is installed (else the run says NOT RUN)."""

import json

from benchmarks.mix.run import main, statement_ms
from benchmarks.passthrough.servers import pgbouncer_program


def test_statement_latencies_are_read_from_pgbench_r():
    report = """\
statement latencies in milliseconds and failures:
         0.002           0  \\set id random(1, 20000)
         0.000           0  \\if :pick <= 10
         0.603           0  SELECT id, predict_bench(x0, c1) FROM bench WHERE id = :id;
         0.000           0  \\else
         0.269           0  SELECT x0, c1 FROM bench WHERE id = :id;
"""
    assert statement_ms(report, "predict_bench(x0, c1)") == {"model_ms": 0.603,
                                                              "plain_ms": 0.269}


def test_benchmark_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "mix.json"
    assert main(["--rows", "2000", "--train-rows", "2000", "--trees", "5", "--max-runtime", "5",
                 "--clients", "2", "--seconds", "1", "--model-percent", "50",
                 "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    expected = {"mlproxy", "mlproxy-const", "direct"} | (
        {"pgbouncer"} if pgbouncer_program() else set())
    assert {run["target"] for run in result["runs"]} == expected
    assert all(run["failed"] == 0 and run["transactions"] > 0 and run["mode"] == "prepared"
               for run in result["runs"])
    # With half the transactions calling the model, both statements ran on every target.
    assert all(run["model_ms"] > 0 and run["plain_ms"] > 0 for run in result["runs"])
    (row,) = result["table"]
    assert row["clients"] == 2 and row["mlproxy/mlproxy-const"] > 0
    assert (row["mlproxy/pgbouncer"] is not None) == bool(pgbouncer_program())
    assert "predict_bench(" in result["scripts"]["ml"] and "0.0::float8" in result["scripts"]["const"]
    printed = capsys.readouterr()
    assert "wrote" in printed.out
    if not pgbouncer_program():
        assert "PgBouncer NOT RUN" in printed.err
