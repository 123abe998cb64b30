"""Command line: ``kerastrader backtest [CONFIG] [--data F] [--out D] [--model D] [--set k=v]``.

It parses, loads one config, calls one runner. A user's mistake (a bad path, key or data
file) ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

from kerastrader.errors import KerastraderError

log = logging.getLogger("kerastrader")

EXIT_USER_ERROR = 2


def _quiet_tensorflow() -> None:
    """Import TensorFlow without its C++ start-up chatter on the user's terminal.

    The oneDNN and CUDA notices are printed before absl logging is initialised, so no
    environment variable silences them; stderr's file descriptor is pointed at /dev/null for
    the import only. Python exceptions still propagate, and later TF errors still show.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment TOML (default: the built-in one)")
    parser.add_argument("--data", help="bars CSV to use instead of data.path")
    parser.add_argument("--out", help="write the run's files into this directory")
    parser.add_argument("--model", help="load this model artifact directory instead of training")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.epochs=2 (repeatable)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def run_backtest_command(args: argparse.Namespace) -> int:
    from kerastrader.config import load_config

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={_toml_string(args.data)}")
    cfg = load_config(args.config, overrides)
    if args.out:
        out = Path(args.out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{cfg['data']['symbol'].lower()}"
    if args.model and not Path(args.model).is_dir():
        raise KerastraderError(f"--model {args.model}: no such model directory")

    from kerastrader.backtest import run_experiment

    result = run_experiment(cfg, out, model_dir=args.model)
    s, r = result.metrics["strategy"], result.metrics["run"]
    log.info(
        "%s .. %s: %d bars, %d trades, final value %.2f, annual return %s, Sharpe %s",
        r["start"],
        r["end"],
        r["bars"],
        r["trades"],
        r["final_value"],
        _pct(s.get("annual_return")),
        _num(s.get("sharpe_ratio")),
    )
    print(f"Report: {out / 'report.html'}")
    return 0


def run_report_command(args: argparse.Namespace) -> int:
    """``report RUN_DIR`` rebuilds a page; ``report compare RUN_DIR RUN_DIR ...`` compares."""
    if args.runs[0] == "compare":
        from kerastrader.reports.compare import compare_runs

        dirs = args.runs[1:]
        out = Path(args.out) if args.out else Path("runs") / "compare.html"
        print(f"Report: {compare_runs(dirs, out)}")
        return 0
    if len(args.runs) != 1:
        raise KerastraderError("report takes one RUN_DIR (or: report compare RUN_DIR RUN_DIR ...)")
    from kerastrader.reports.report import render_report

    figures = False if args.no_figures else None
    print(f"Report: {render_report(args.runs[0], figures=figures)}")
    return 0


def run_ingest_command(args: argparse.Namespace) -> int:
    """Validate a bar file and add it to the store, all or nothing."""
    from kerastrader.feeds.frames import load_any
    from kerastrader.feeds.loader import default_symbol
    from kerastrader.feeds.store import BarStore

    bars = load_any(
        args.source, date_format=args.date_format, adjust=args.adjust, missing=args.missing
    )
    store = BarStore(args.store)
    symbol = args.symbol or default_symbol(args.source)
    result = store.ingest(bars, symbol, args.timeframe, replace=args.replace)
    print(
        f"{store.name}: {symbol} {args.timeframe}: {result.inserted} new, "
        f"{result.unchanged} unchanged, {result.replaced} replaced"
    )
    return 0


def run_leakage_command(args: argparse.Namespace) -> int:
    """Exit 0 when the pipeline cannot predict a random walk, 3 when it can (it leaks)."""
    from kerastrader.config import load_config
    from kerastrader.models.leakage import check_leakage

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={_toml_string(args.data)}")
    cfg = load_config(args.config, overrides)
    result = check_leakage(cfg, seed=args.seed)  # loads every configured symbol itself
    print(result.summary())
    return EXIT_LEAK if result.leaks else 0


EXIT_LEAK = 3


def run_paper_command(args: argparse.Namespace) -> int:
    """Paper trading through IB (or the simulated gateway with --simulate [--data FILE])."""
    from kerastrader.config import load_config

    cfg = load_config(args.config, list(args.overrides))

    def confirm(account: str) -> bool:
        from kerastrader.brokers.safety import confirm_live

        answer = input(f"LIVE trading on account {account}: type the account id to confirm: ")
        return confirm_live(answer, account)

    if args.out:
        out = Path(args.out)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{cfg['data']['symbol'].lower()}-paper"
    from kerastrader.runs.paper import run_paper

    result = run_paper(
        cfg,
        out,
        model_dir=args.model,
        simulate=(args.data or True) if args.simulate else None,
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        dry_run=args.dry_run,
        live=args.live,
        speed=args.speed,
        confirm=confirm if args.live else None,
        account=args.account,
        adopt_positions=args.adopt_positions,
    )
    r = result.metrics["run"]
    log.info("%s .. %s: %d fills, final value %.2f", r["start"], r["end"], r["fills"],
             r["final_value"])  # fmt: skip
    print(f"Report: {out / 'report.html'}")
    return 0


def run_sweep_command(args: argparse.Namespace) -> int:
    """Every combination of ``--grid`` values (or ``[sweep] grid``) as one job; see
    :mod:`kerastrader.sweeps.runner`."""
    from kerastrader.config import load_config
    from kerastrader.sweeps.runner import SweepOptions, run_sweep
    from kerastrader.sweeps.spec import parse_grid_arg

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={_toml_string(args.data)}")
    opts = SweepOptions.from_config(load_config(args.config, overrides)["sweep"])
    for text in args.grid:
        key, values = parse_grid_arg(text)
        opts.grid[key] = values
    for name in ("random", "seed", "executor", "address", "max_parallel", "cpus_per_job",
                 "memory_per_job", "retries", "metric"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            setattr(opts, name, value)
    opts.progress = not args.quiet
    opts.mlflow = args.mlflow
    if args.out:
        out = Path(args.out)
    else:
        out = Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-sweep"
    result = run_sweep(args.config, out, overrides, opts)
    st = result.statistics
    log.info("%d jobs: %d run, %d done already, %d failed", len(result.table), result.ran,
             result.skipped, result.failed)  # fmt: skip
    if "deflated_sharpe" in st:
        d = st["deflated_sharpe"]
        log.info(
            "best %s (%s %.3f): deflated Sharpe ratio %.3f over %d trials, PBO %s",
            st["best"], st["metric"], st["best_value"], d["dsr"], d["n_trials"],
            _num(st.get("pbo", {}).get("pbo")),
        )  # fmt: skip
    print(f"Sweep: {out / 'sweep.csv'}")
    print(f"Report: {out / 'sweep.html'}")
    return 1 if result.failed and result.failed == len(result.table) else 0


def run_forecast_command(args: argparse.Namespace) -> int:
    """Fit a sequence model on a book's periodic returns and forecast its paths; see
    :mod:`kerastrader.forecast.runner` for the files it writes."""
    from kerastrader.forecast.runner import run_forecast
    from kerastrader.forecast.spec import load_forecast_config

    cfg = load_forecast_config(args.config, list(args.overrides))
    if args.out:
        out = Path(args.out)
    else:
        out = Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-forecast"
    page = run_forecast(cfg, out)
    print(f"Forecast: {out / 'forecast.csv'}")
    print(f"Report: {page}")
    return 0


def run_study_command(args: argparse.Namespace) -> int:
    """Run a published study's faithful, honest and one-mistake runs and write its page."""
    from kerastrader.studies.page import write_page
    from kerastrader.studies.runner import run_study

    if args.page:  # write_page picks the page builder of the study's kind (study D: forecast)
        print(f"Study page: {write_page(args.page)}")
        return 0
    if not args.name:
        raise KerastraderError("kerastrader study NAME: name a study (a, b, c) or pass --page DIR")
    only = [n for part in args.only for n in part.split(",") if n] or None
    page = run_study(args.name, out=args.out, overrides=args.overrides, only=only)
    print(f"Study page: {page}")
    return 0


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment TOML (default: the built-in one)")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2",
        help="values to try, e.g. --grid strategy.enter=0.5,0.55 (repeatable; TOML values)",
    )  # fmt: skip
    parser.add_argument("--random", type=int, help="draw N combinations of the grid, not all")
    parser.add_argument("--seed", type=int, help="--random's seed (default 0)")
    parser.add_argument(
        "--executor",
        choices=("local", "ray", "serial"),
        help="process pool, Ray, or one by one (default: ray when installed)",
    )
    parser.add_argument("--address", help="a running Ray cluster, host:port (implies ray)")
    parser.add_argument("--max-parallel", type=int, help="jobs at once (default: every CPU)")
    parser.add_argument("--cpus-per-job", type=int, help="each job's CPU budget (default 1)")
    parser.add_argument(
        "--memory-per-job",
        type=int,
        metavar="MB",
        help="end (and retry once) a job whose process passes this",
    )
    parser.add_argument("--retries", type=int, help="retries of a job whose worker died (1)")
    parser.add_argument("--metric", help="rank jobs by this sweep.csv column (sharpe_ratio)")
    parser.add_argument(
        "--mlflow",
        nargs="?",
        const="mlruns",
        metavar="URI",
        help="log the sweep to MLflow (a tracking URI, or a folder; default mlruns/)",
    )
    parser.add_argument("--data", help="bars file to use instead of data.path")
    parser.add_argument("--out", help="the sweep's folder (default runs/<time>-sweep)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value for every job (repeatable)",
    )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _setup_logging(quiet: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
    logging.getLogger("kerastrader").setLevel(logging.WARNING if quiet else logging.INFO)


def build_parser(prog: str = "kerastrader") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    backtest = sub.add_parser("backtest", help="train (or load) a model, backtest it, report")
    add_backtest_arguments(backtest)
    backtest.set_defaults(handler=run_backtest_command)
    report = sub.add_parser(
        "report",
        help="rebuild a run's report.html from its files, or compare runs",
        description="kerastrader report RUN_DIR | kerastrader report compare RUN_DIR RUN_DIR ...",
    )
    report.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directory (or 'compare')")
    report.add_argument(
        "--out",
        help="compare: the page to write, or a folder (no suffix) for compare.html "
        "(default runs/compare.html)",
    )
    report.add_argument("--no-figures", action="store_true", help="skip pyfolio's tear sheets")
    report.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    report.set_defaults(handler=run_report_command)
    leak = sub.add_parser(
        "check-leakage", help="run the pipeline on a random walk: above chance means it leaks"
    )
    leak.add_argument("config", nargs="?", help="experiment TOML (default: the built-in one)")
    leak.add_argument("--data", help="bars whose shape the random walk copies")
    leak.add_argument("--seed", type=int, default=0, help="random walk seed")
    leak.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    leak.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    leak.set_defaults(handler=run_leakage_command)
    from kerastrader.feeds.store import DEFAULT_STORE

    paper = sub.add_parser("paper", help="paper-trade the strategy and model through IB")
    paper.add_argument("config", nargs="?", help="experiment TOML (default: the built-in one)")
    paper.add_argument("--host", help="IB Gateway / TWS host (default: paper.host)")
    paper.add_argument("--port", type=int, help="API port (default: paper.port, 4002)")
    paper.add_argument("--client-id", type=int, help="API client id (default: paper.client_id)")
    paper.add_argument(
        "--simulate",
        action="store_true",
        help="replay --data (default: the config's own bars, every instrument) through the "
        "simulated gateway",
    )
    paper.add_argument("--data", help="with --simulate: the bar file to replay")
    paper.add_argument(
        "--speed", type=float, default=0.0, help="--simulate: bars/s (0: lockstep, fastest)"
    )
    paper.add_argument("--model", help="the model artifact directory (default: train one)")
    paper.add_argument("--out", help="write the session's files into this directory")
    paper.add_argument("--dry-run", action="store_true", help="journal orders, never send")
    paper.add_argument(
        "--live", action="store_true", help="allow a live account and port, after confirmation"
    )
    paper.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value (repeatable)",
    )  # fmt: skip
    paper.add_argument("--account", help="one account of several (default: paper.account)")
    paper.add_argument(
        "--adopt-positions",
        action="store_true",
        help="at start, take IB's positions where they differ from the journal (default: stop)",
    )
    paper.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    paper.set_defaults(handler=run_paper_command)

    sweep = sub.add_parser("sweep", help="run every combination of config values as a job")
    add_sweep_arguments(sweep)
    sweep.set_defaults(handler=run_sweep_command)

    study = sub.add_parser(
        "study", help="reproduce a published study: original vs faithful vs honest, one page"
    )
    study.add_argument("name", nargs="?", help="a, b, c, a folder of examples/studies or a path")
    study.add_argument("--out", help="the study's folder (default runs/<time>-study-<name>)")
    study.add_argument("--only", action="append", default=[], metavar="RUN[,RUN]",
                       help="only these runs (and the runs they reuse)")  # fmt: skip
    study.add_argument("--page", metavar="DIR", help="rebuild DIR/study.html from its files")
    study.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                       help="override a value in every run (training.epochs=1)")  # fmt: skip
    study.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    study.set_defaults(handler=run_study_command)

    forecast = sub.add_parser(
        "forecast", help="forecast a book's value paths: point path, bands, rolling-origin errors"
    )
    forecast.add_argument("config", help="forecast TOML (e.g. examples/forecast.toml)")
    forecast.add_argument("--out", help="the forecast's folder (default runs/<time>-forecast)")
    forecast.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V",
                          help="override a forecast config value (training.epochs=5)")  # fmt: skip
    forecast.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    forecast.set_defaults(handler=run_forecast_command)

    ingest = sub.add_parser("ingest", help="validate a bar file and add it to the bar store")
    ingest.add_argument("source", help="CSV or Parquet file of bars")
    ingest.add_argument("--store", default=DEFAULT_STORE, help=f"SQLAlchemy URL ({DEFAULT_STORE})")
    ingest.add_argument("--symbol", help="symbol to store under (default: from the file name)")
    ingest.add_argument("--timeframe", default="1d", help="timeframe label (default 1d)")
    ingest.add_argument("--replace", action="store_true", help="overwrite bars that differ")
    ingest.add_argument("--date-format", default="iso", help="iso, dayfirst or a strftime pattern")
    ingest.add_argument("--adjust", action="store_true", help="adjust prices by Adj Close")
    ingest.add_argument("--missing", default="error", help="error, interpolate or drop")
    ingest.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    ingest.set_defaults(handler=run_ingest_command)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    _setup_logging(args.quiet)
    try:
        return args.handler(args)
    except KerastraderError as exc:
        print(f"kerastrader: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("kerastrader: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return dispatch(args)


def run_backtest_main(argv: list[str] | None = None) -> int:
    """``python run_backtest.py ...``: the backtest command without the sub-command word."""
    parser = argparse.ArgumentParser(prog="run_backtest.py", description=__doc__.splitlines()[0])
    add_backtest_arguments(parser)
    parser.set_defaults(handler=run_backtest_command)
    return dispatch(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
