"""The benchmark's results as a console table and as Markdown (bench/RESULTS.md)."""

from __future__ import annotations

MEASURES = [
    ("floor", "floor: gunzip -c | psql \\copy into a typed table (logged, created beforehand)"),
    ("floor_unlogged", "floor, UNLOGGED table created in the COPY's transaction (extra)"),
    ("ours_first", "ours: Dagster run raw file -> staging -> final + checks, new month"),
    ("ours_reload", "ours: the same month again (its rows replaced)"),
    ("ours_cli_reload", "ours, reload by `dagster asset materialize` (the CLI a person types; extra)"),
    ("reference", "reference: Kestra SQL (TRUNCATE, COPY, UPDATE md5, MERGE)"),
]


def _rows(results: dict) -> list[tuple]:
    out = []
    pandas = results["pandas"]
    for label, e in results["sizes"].items():
        ours = e["ours_first"]["seconds"]
        for key, what in MEASURES:
            if key not in e:
                continue
            m = e[key]
            out.append(
                (
                    label,
                    key,
                    what,
                    m["seconds"],
                    m["rows_per_second"],
                    m.get("peak_rss_mb"),
                    m["seconds"] / ours,
                    _cpu(m),
                )
            )
        seconds = pandas["extrapolated_seconds"][label]
        scale = e["rows"] / pandas["rows"]
        cpu = _cpu(pandas)
        out.append(
            (
                label,
                "pandas",
                f"pandas read_csv + to_sql, {pandas['rows']:,} rows extrapolated",
                seconds,
                pandas["rows_per_second"],
                None,
                seconds / ours,
                None if cpu is None else (cpu[0] * scale if cpu[0] is not None else None, cpu[1] * scale),
            )
        )
    return out


def _cpu(m: dict) -> tuple | None:
    c = m.get("cpu_seconds")
    return None if c is None else (c.get("server"), c.get("client"))


def _fmt(value, spec: str, missing: str = "") -> str:
    return missing if value is None else format(value, spec)


def print_table(results: dict) -> None:
    print()
    print(
        f"{'size':5} {'measure':15} {'seconds':>9} {'rows/s':>11} {'peak RSS':>9} {'x ours':>7} "
        f"{'CPU s (db+client)':>18}"
    )
    for label, key, _what, seconds, rate, rss, rel, cpu in _rows(results):
        print(
            f"{label:5} {key:15} {seconds:9.2f} {rate:11,.0f} {_fmt(rss, '7.0f') + ' MB' if rss else '':>9} "
            f"{rel:7.2f} {_cpu_text(cpu):>18}"
        )
    print()
    for _name, t in results["targets"].items():
        state = {True: "met", False: "NOT met", None: t.get("status", "-")}[t["met"]]
        value = _fmt(t["value"], ".2f", "-")
        print(f"target {t['what']}: {value} (target {t['target']}): {state}")


def markdown(results: dict) -> str:
    m = results["machine"]
    s = m["postgres_settings"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.run`); the machine-readable copy of the latest run is "
        "`bench/results/latest.json` (not committed).",
        "",
        f"- run: {results['started_at']} ({results['seconds'] / 60:.0f} min), commit `{m['git_commit']}`, "
        f"`--repeat {results['args']['repeat']}` (the fastest sample counts)",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}; load average at start {_load(m['load_average_start'])}, at end "
        f"{_load(m.get('load_average_end'))} (the machine is shared: other work ran during the benchmark)",
        f"- PostgreSQL: {m['postgres'].split(' on ')[0]} ({'an external server (--postgres-url)' if results['args'].get('external_server') else 'the embedded server, started by the benchmark'}); "
        f"shared_buffers {s['shared_buffers']}, work_mem {s['work_mem']}, wal_level {s['wal_level']}, "
        f"data_checksums {s['data_checksums']}, max_parallel_workers_per_gather "
        f"{s['max_parallel_workers_per_gather']}",
        "",
        "Wall seconds decide the targets. The CPU seconds (all processes of the database server, and the "
        "measuring process with its children: psql and gunzip, or the Dagster process including its Python "
        "start) show the work done, which depends much less on what else the machine was running.",
        "",
        "| size | measure | seconds | rows/s | peak RSS | × ours (first load) | CPU s: database + client |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for label, _key, what, seconds, rate, rss, rel, cpu in _rows(results):
        lines.append(
            f"| {label} | {what.replace('|', chr(92) + '|')} | {seconds:.1f} | {rate:,.0f} | "
            f"{_fmt(rss, '.0f') + ' MB' if rss else ''} | {rel:.2f} | {_cpu_text(cpu)} |"
        )
    lines += [
        "",
        "Phases of our load (asset `duration_seconds`; the replace step also runs the checks):",
        "",
        "| size | run | download + verify | staging COPY | replace | final step incl. checks | process (with Python start) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for label, e in results["sizes"].items():
        for key in ("ours_first", "ours_reload", "ours_cli_reload"):
            if key not in e:
                continue
            o = e[key]
            final_step = next((v for k, v in o["steps"].items() if k.startswith("warehouse")), None)
            lines.append(
                f"| {label} {key.removeprefix('ours_').replace('_', ' ')} | {o['seconds']:.1f} | {o['phases']['raw_file']:.1f} | "
                f"{o['phases']['staging']:.1f} | {o['phases']['replace']:.1f} | "
                f"{_fmt(final_step, '.1f')} | {o['process_seconds']:.1f} |"
            )
    dbt = results.get("dbt")
    if dbt:
        g = dbt["green_ingest"]
        lines += [
            "",
            f"dbt build of {dbt['month']} for both colours (a Dagster run of the monthly models: "
            "staging views, fact_trips and the revenue mart rebuilt for the source month, with their "
            "tests as asset checks), against the ingest of that month:",
            "",
            "| measure | seconds | CPU s: database + client |",
            "|---|--:|--:|",
            f"| ingest, yellow ({results['sizes'][next(iter(results['sizes']))]['rows']:,} rows, our first load) "
            f"| {dbt['yellow_ingest_seconds']:.1f} | |",
            f"| ingest, green ({dbt['green_rows']:,} rows) | {g['seconds']:.1f} | {_cpu_text(_cpu(g))} |",
            f"| dbt, first build: creates fact_trips and the mart ({dbt['first_build']['checks_passed']} "
            f"checks passed, {dbt['first_build']['checks_failed']} failed) | "
            f"{dbt['first_build']['seconds']:.1f} | {_cpu_text(_cpu(dbt['first_build']))} |",
            f"| dbt, rebuild: the month replaced in the existing tables, the path every later month "
            f"takes ({dbt['dbt']['checks_passed']} checks passed, {dbt['dbt']['checks_failed']} failed; "
            f"the target's measure) | {dbt['seconds']:.1f} | {_cpu_text(_cpu(dbt['dbt']))} |",
        ]
    lines += [
        "",
        "Targets (the large month, same run):",
        "",
        "| target | value | required | |",
        "|---|--:|--:|---|",
    ]
    for t in results["targets"].values():
        state = {True: "met", False: "**not met**", None: t.get("status", "")}[t["met"]]
        lines.append(f"| {t['what']} | {_fmt(t['value'], '.2f', '—')} | {t['target']} | {state} |")
    lines.append("")
    return "\n".join(lines)


def _cpu_text(cpu) -> str:
    if cpu is None:
        return ""
    server, client = cpu
    return f"{_fmt(server, '.1f', '?')} + {client:.1f}"


def _load(value) -> str:
    return "—" if not value else " / ".join(f"{v:.1f}" for v in value)
