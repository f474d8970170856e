"""A few seconds of the benchmark harness: it starts its system, measures, and the books balance;
it says how it is doing on stderr while it runs, and draws its chart next to its report."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from matplotlib.image import imread

from tests.support import ROOT

PROGRESS = re.compile(
    r"bench +(?P<elapsed>\d+)s  (?P<phase>.+?) +(?P<when>begins|\d+s in phase)  "
    r"placed +(?P<placed>\d+)  rate +(?P<rate>[\d.]+)/s  errors (?P<errors>\d+)"
)
PHASES = ("start the system", "stack limits", "catalogue", "peak", "half load", "reads", "books", "stop the system")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    assert set(report["rss_mib"]) == {"gateway", "basket", "orders", "shipping", "payments", "customers"}
    assert "books: OK" in result.stdout

    # Progress: a line as each phase starts, in order, and every second (--smoke) meanwhile.
    lines = [match.groupdict() for match in map(PROGRESS.fullmatch, result.stderr.splitlines()) if match]
    starts = [line["phase"] for line in lines if line["when"] == "begins"]
    assert starts == list(PHASES), result.stderr[-3000:]
    assert sum(line["phase"] == "peak" for line in lines) >= 3  # the 3 s peak: it begins, then every second
    assert [int(line["elapsed"]) for line in lines] == sorted(int(line["elapsed"]) for line in lines)
    placed = [int(line["placed"]) for line in lines]
    assert placed == sorted(placed)
    assert any(float(line["rate"]) > 0 for line in lines if line["phase"] == "peak")
    last = lines[-1]
    assert int(last["placed"]) == report["peak"]["checkouts_placed"] + report["half_load"]["checkouts_placed"]
    assert int(last["errors"]) == report["peak"]["failed_count"] + report["half_load"]["failed_count"]

    # The chart: a PNG beside the report that decodes to the figure's size.
    chart = out.with_suffix(".png")
    assert report["chart"] == str(chart)
    assert chart.read_bytes().startswith(PNG_SIGNATURE)
    assert imread(chart).shape[:2] == (1000, 1200)
