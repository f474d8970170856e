"""A few seconds of the benchmark harness: it starts its system, measures, and the books balance."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import ROOT


def test_bench_smoke_run_places_orders_and_balances_the_books(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["peak"]["checkouts_placed"] > 0
    assert report["books"] == {"ok": True, "problems": [], "orders_told_placed": report["books"]["orders_told_placed"]}
    assert report["limits"]["bare_json"]["requests_per_second"] > 0
    assert report["per_order"]["sql_statements"] > 0 and report["per_order"]["broker_messages"] > 0
    assert set(report["rss_mib"]) == {"gateway", "basket", "orders", "shipping", "payments"}
    assert "books: OK" in result.stdout
