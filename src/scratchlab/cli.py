"""scratchlab's command line. Commands are thin: each parses its arguments and calls one function.

    scratchlab list [-v]
    scratchlab show NAME                  every config field: type, default, --quick value, meaning
    scratchlab run NAME [--config FILE] [--set key=value ...] [--quick] [--seed N] [--device auto|cpu|cuda]
                        [--out DIR] [--resume | --overwrite]      (`run NAME --help`: NAME's fields too)
    scratchlab run --config RUN_DIR/config.json                   a saved run again, as it was
    scratchlab sweep NAME [--grid key=v1,v2 ...] [--seeds N] [--config FILE] [--set key=value ...]
                          [--executor serial|local|ray] [--workers N] [--quick] [--resume | --overwrite] [--out DIR]
    scratchlab reproduce [--quick] [--out DIR] [--only NAME ...]
    scratchlab sample RUN_DIR --n N --out FILE.npz
    scratchlab predict RUN_DIR "text" | - | --file FILE
    scratchlab generate RUN_DIR [--prompt TEXT] [--length N] [--temperature T] [--greedy] [--seed S]
    scratchlab add 100111 110010 [--trace]
    scratchlab data [list | fetch NAME]
    scratchlab export RUN_DIR --tensorboard         event files from metrics.jsonl (a sweep: each of its runs)
    scratchlab info                                 CPU features, the kernels' variant and build, versions, threads
    scratchlab --version

Errors are one line naming the problem (`--debug` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from pathlib import Path

MAX_SAMPLES = 100_000  # `sample --n`: enough for any metric here; more is a typo, not a request
HELP_EXAMPLE = ("palindrome", ("model=gru", "lr=3e-4"))  # `run --help`'s example (tests/test_cli_help.py runs it)


def _cmd_list(args: argparse.Namespace) -> int:
    from scratchlab import experiments
    from scratchlab.run import confdoc

    exps = experiments.load_all()
    width = max(len(n) for n in exps) if exps else 0
    for name in sorted(exps):
        e = exps[name]
        print(f"{name:<{width}}  {e.help}")
        if args.verbose:
            print(confdoc.table(confdoc.describe(e.config(), e.quick), indent="    ") + "\n")
    return 0


def experiment_help(name: str) -> str:
    """NAME's help line and the table of its config fields (`show NAME`, `run NAME --help`)."""
    from scratchlab import experiments
    from scratchlab.run import confdoc

    e = experiments.get(name)
    text = textwrap.fill(f"{name}: {e.help}", shutil.get_terminal_size().columns - 2) + "\n"
    if e.plan is not None:
        plan = e.plan(e.config())
        text += (f"A multi-run experiment: {plan.experiment} in {len(plan.variants)} variants x {plan.seeds} seeds "
                 "(by default), aggregated.\n")
    head = "config fields (--set KEY=VALUE or --config FILE; QUICK: the value --quick uses where it differs):"
    return (f"{text}\n{textwrap.fill(head, shutil.get_terminal_size().columns - 2)}\n"
            f"{confdoc.table(confdoc.describe(e.config(), e.quick))}\n")


def _cmd_show(args: argparse.Namespace) -> int:
    print(experiment_help(args.name), end="")
    return 0


def _config_file(args: argparse.Namespace) -> list[str] | dict:
    """`--config FILE` and `--set`: the overrides, in that order; NAME, --seed and --quick from the file (a run
    directory's config.json) where the command line leaves them out."""
    from scratchlab import experiments
    from scratchlab.run import config as C

    settings, fields = C.read_file(args.config) if args.config else ({}, {})
    saved = settings.get("experiment")
    if args.name is None and saved is None:
        raise ValueError("give an experiment NAME (see `scratchlab list`) or --config RUN_DIR/config.json"
                         if args.config is None else f"--config {args.config}: not a run's config.json (no "
                         "'experiment'); give the experiment NAME too")
    if args.name is not None and saved is not None and saved != args.name:
        raise C.ConfigError(f"--config {args.config}: holds a config of {saved!r}, not {args.name!r}")
    args.name = args.name or saved
    args.seed = settings.get("seed", 0) if args.seed is None else args.seed
    args.quick = bool(settings.get("quick", False)) if args.quick is None else args.quick
    if not args.config:
        return args.set
    exp = experiments.get(args.name)
    base = exp.config() if not args.quick else C.apply_overrides(exp.config(), exp.quick)
    return C.file_overrides(base, fields, f"--config {args.config}") | dict(C._split(o) for o in args.set)


def _cmd_run(args: argparse.Namespace) -> int:
    from scratchlab.runner import run_experiment

    overrides = _config_file(args)
    run, summary = run_experiment(args.name, overrides, quick=args.quick, seed=args.seed, device=args.device,
                                  out=args.out, resume=args.resume, overwrite=args.overwrite,
                                  progress=not args.no_progress, executor=args.executor, workers=args.workers)
    if _rank():  # under torchrun, rank 0 reports the run
        return 0
    _print_summary(summary)
    print(f"run directory: {run.path}")
    return 1 if summary.get("failed") else 0


def _print_summary(summary: dict) -> None:
    """The final numbers; a sweep's as its table (variant, n, mean +- std of each headline metric)."""
    if "variants" in (summary or {}):
        from scratchlab.sweep import stats

        for v in summary["variants"]:
            cells = ", ".join(f"{k} {stats.fmt(m)}" for k, m in list(v["metrics"].items())[:4])
            failed = f", {v['failed']} FAILED" if v["failed"] else ""
            print(f"  {v['name']}: n = {v['n']}{failed}; {cells}")
        summary = {k: v for k, v in summary.items() if k != "variants"}
    width = max((len(k) for k in summary), default=0)
    for key, value in summary.items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {text if len(text) < 200 else text[:200] + ' ...'}")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from scratchlab.run import config as C
    from scratchlab.runner import sweep

    overrides = _config_file(args)  # the sweep records its overrides as the text of --set options
    sets = overrides if isinstance(overrides, list) else [f"{k}={C._show(v)}" for k, v in overrides.items()]
    run, summary = sweep(args.name, args.grid, args.seeds, sets, quick=args.quick, seed=args.seed,
                         device=args.device, out=args.out, resume=args.resume, overwrite=args.overwrite,
                         executor=args.executor, workers=args.workers, ray_address=args.ray_address)
    _print_summary(summary)
    print(f"sweep directory: {run.path} (table.md, summary.json, errorbars.png)")
    if summary["failed"]:
        print(f"scratchlab sweep: {summary['failed']} of {summary['runs']} runs failed; their errors are in "
              f"summary.json and each run's error.txt; --resume retries them", file=sys.stderr)
        return 1
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from scratchlab.runner import reproduce

    out = args.out or ("runs/reproduce-quick" if args.quick else "runs/reproduce")
    if args.report_only:
        from scratchlab.runner import rewrite_report

        print(f"report: {rewrite_report(out, quick=args.quick)}")
        return 0
    path, ok = reproduce(out, quick=args.quick, seed=args.seed, device=args.device, only=args.only,
                         progress=not args.no_progress, executor=args.executor, workers=args.workers)
    print(f"report: {path}")
    return 0 if ok else 1


def _hooked_experiment(run_dir: str, kind: str):
    from scratchlab import experiments
    from scratchlab.run.rundir import RunDir

    saved = RunDir(run_dir).read_json("config.json")
    if not isinstance(saved, dict) or not isinstance(saved.get("experiment"), str):
        raise ValueError(f"{run_dir}/config.json: expected an object with an 'experiment' name, found {saved!r:.80}")
    exp = experiments.get(saved["experiment"])
    fn = getattr(exp, kind)
    if fn is None:
        raise ValueError(f"{run_dir}: experiment {exp.name!r} has no `{kind}`; "
                         f"these do: {[n for n, e in experiments.EXPERIMENTS.items() if getattr(e, kind)]}")
    return fn


def _cmd_sample(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from scratchlab.run.rundir import atomic_write_bytes

    if not 1 <= args.n <= MAX_SAMPLES:
        raise ValueError(f"--n: expected a number of samples in 1..{MAX_SAMPLES}, got {args.n}")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory; give a file name such as {out / 'samples.npz'}")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: folder {out.parent} does not exist")
    arrays = _hooked_experiment(args.run_dir, "sample")(Path(args.run_dir), args.n)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(out, buffer.getbuffer())
    print(f"wrote {out}: " + ", ".join(f"{k} {v.dtype} {tuple(v.shape)}" for k, v in arrays.items()))
    return 0


def _read_text(args: argparse.Namespace) -> str:
    """The text to classify: the argument, standard input for `-`, or `--file` (UTF-8)."""
    if (args.text is None) == (args.file is None):
        raise ValueError('give the text as one argument, "-" to read standard input, or --file FILE')
    if args.file is not None:
        try:
            return Path(args.file).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"--file {args.file}: not UTF-8 text (byte {e.start})") from None
    return sys.stdin.read() if args.text == "-" else args.text


def _cmd_predict(args: argparse.Namespace) -> int:
    fn = _hooked_experiment(args.run_dir, "predict")
    print(fn(Path(args.run_dir), _read_text(args)))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    fn = _hooked_experiment(args.run_dir, "generate")
    print(fn(Path(args.run_dir), args.prompt, args.length, None if args.greedy else args.temperature, args.seed))
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    from scratchlab.rnn.adder import BinaryAdderRNN

    for s in (args.a, args.b):
        if not s or set(s) - {"0", "1"}:
            raise ValueError(f"add: expected binary numbers written with 0 and 1, got {s!r}")
    adder = BinaryAdderRNN()
    a, b = int(args.a, 2), int(args.b, 2)
    if args.trace:
        print(adder.format_trace(a, b))
    print(format(adder.add(a, b), "b"))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from scratchlab.data import registry

    if args.action == "list":
        for name, d in sorted(registry.DATASETS.items()):
            print(f"{name:<16} {'offline' if d.offline else 'download':<9} {d.description}")
        return 0
    for split in ("train", "test"):
        data = registry.load(args.name, split)
        print(f"{args.name} {split}: {len(data)} examples, {data.source}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from scratchlab.rnn.info import report

    print(report(load=not args.no_build))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from scratchlab.run import events

    if not args.tensorboard:
        raise ValueError("export: say which format to write: --tensorboard (the only one so far)")
    done = events.export(args.run_dir)
    for path, n in done:
        print(f"{path}: {n} events")
    print(f"wrote TensorBoard event files for {len(done)} run{'s' * (len(done) != 1)}; view them with "
          f"`tensorboard --logdir {args.run_dir}`")
    return 0


class _RunHelp(argparse.Action):
    """-h/--help of `run` and `sweep`: the options, then NAME's config fields when NAME came before it."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0,
                         help="show this help (after NAME: with NAME's config fields) and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        name = getattr(namespace, "name", None)
        text, usage = parser.format_help(), parser.format_usage()
        if name is not None:
            try:  # the usage, NAME's fields, then the options
                text = f"{usage}\n{experiment_help(name)}{text.removeprefix(usage)}"
            except KeyError as e:
                parser.print_help()
                parser.exit(2, f"{parser.prog}: error: {e.args[0]}\n")
        print(text, end="")
        parser.exit()


class _Version(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0,
                         help="show scratchlab's version (and git commit, in a checkout) and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import version

        from scratchlab.run.rundir import source_git

        git = source_git()
        where = f" (git {git['commit'][:12]}{', with uncommitted changes' if git['dirty'] else ''})" if git else ""
        print(f"scratchlab {version('scratchlab')}{where}")
        parser.exit()


def _config_option(s: argparse.ArgumentParser, what: str) -> None:
    s.add_argument("--config", metavar="FILE",
                   help=f"config fields from a JSON or YAML file (YAML needs PyYAML): a mapping of fields, or a run "
                        f"directory's config.json, which also gives NAME, --seed and --quick; {what}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scratchlab", description=__doc__.split("\n")[0])
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list the registered experiments")
    s.add_argument("-v", "--verbose", action="store_true", help="also show each experiment's config fields")
    s.set_defaults(fn=_cmd_list)

    s = sub.add_parser("show", help="an experiment's config fields: type, default, --quick value and meaning")
    s.add_argument("name", help="experiment name (see `scratchlab list`)")
    s.set_defaults(fn=_cmd_show)

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline in seconds")
        s.add_argument("--seed", type=_seed, default=0, help="seed for every RNG, 0 <= N < 2**63 (default 0)")
        s.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
        s.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch and BLAS (default: torch's, one per core); on a machine shared "
                            "with other jobs, 1 avoids threads spinning against each other")

    def executors(s: argparse.ArgumentParser, what: str) -> None:
        s.add_argument("--executor", choices=["serial", "local", "ray"], default="local",
                       help=f"{what}: serial (this process), local (a process pool; default) or ray")
        s.add_argument("--workers", type=int, default=0,
                       help="processes of the local pool or Ray tasks at once (default 0: one per core)")

    def reuse(s: argparse.ArgumentParser, what: str) -> None:
        again = s.add_mutually_exclusive_group()
        again.add_argument("--resume", action="store_true", help=f"continue the {what} in --out")
        again.add_argument("--overwrite", action="store_true", help=f"delete the {what} already in --out, then run")

    s = sub.add_parser("run", help="run one experiment into a run directory", add_help=False,
                       epilog="`scratchlab run NAME --help` (or `scratchlab show NAME`) lists NAME's config fields")
    s.add_argument("-h", "--help", action=_RunHelp)
    s.add_argument("name", nargs="?", help="experiment name (see `scratchlab list`; may come from --config)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config field, e.g. `scratchlab run {HELP_EXAMPLE[0]} "
                        f"{' '.join('--set ' + o for o in HELP_EXAMPLE[1])}`")
    _config_option(s, "--set applies on top")
    s.add_argument("--out", help="run directory (default runs/NAME/STAMP)")
    reuse(s, "run (from its last.pt)")
    executors(s, "where a multi-run experiment's runs go")
    common(s)
    s.set_defaults(seed=None, quick=None)  # not given: a run's config.json may set them (else 0 and off)
    s.set_defaults(fn=_cmd_run)

    s = sub.add_parser("sweep", help="run an experiment over a grid of settings and several seeds; aggregate",
                       add_help=False)
    s.add_argument("-h", "--help", action=_RunHelp)
    s.add_argument("name", nargs="?", help="experiment name (see `scratchlab list`; may come from --config)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a config field and its values; several --grid make every combination")
    s.add_argument("--seeds", type=int, default=5, help="runs per setting, seeds --seed, --seed + 1, ... (default 5)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    _config_option(s, "every run uses them; --grid and --set apply on top")
    s.add_argument("--out", help="sweep directory (default runs/NAME-sweep/STAMP)")
    s.add_argument("--ray-address", help="with --executor ray: join this running cluster (default: start one here)")
    reuse(s, "sweep (finished runs are kept, interrupted ones continue, failed ones rerun)")
    executors(s, "where the runs go")
    common(s)
    s.set_defaults(seed=None, quick=None)  # not given: a run's config.json may set them (else 0 and off)
    s.set_defaults(fn=_cmd_sweep)

    s = sub.add_parser("reproduce", help="run every experiment and write report.html")
    s.add_argument("--out", help="output folder (default runs/reproduce[-quick])")
    s.add_argument("--only", nargs="+", metavar="NAME", help="only these experiments")
    s.add_argument("--report-only", action="store_true",
                   help="write report.html again from --out's runs (entries.json), running nothing")
    executors(s, "where the runs go")
    common(s)
    s.set_defaults(fn=_cmd_reproduce)

    s = sub.add_parser("sample", help="draw samples from a trained generative model")
    s.add_argument("run_dir")
    s.add_argument("--n", type=int, default=64, help=f"number of samples, 1..{MAX_SAMPLES} (default 64)")
    s.add_argument("--out", required=True, help="output .npz file")
    s.set_defaults(fn=_cmd_sample)

    s = sub.add_parser("predict", help="classify a text with a trained sentiment model")
    s.add_argument("run_dir")
    s.add_argument("text", nargs="?", help='the text; "-" reads it from standard input')
    s.add_argument("--file", help="read the text from this file (UTF-8)")
    s.set_defaults(fn=_cmd_predict)

    s = sub.add_parser("generate", help="write text with a trained language model (char-lm)")
    s.add_argument("run_dir")
    s.add_argument("--prompt", default="", help="the text to start from (default: the corpus's first character)")
    s.add_argument("--length", type=int, default=300, help="characters to write after the prompt (default 300)")
    s.add_argument("--temperature", type=float, default=1.0,
                   help="sample from softmax(logits / T): below 1 safer, above 1 wilder (default 1.0)")
    s.add_argument("--greedy", action="store_true", help="always the most likely next character (no sampling)")
    s.add_argument("--seed", type=_seed, default=0, help="seed of the sampling (default 0)")
    s.set_defaults(fn=_cmd_generate)

    s = sub.add_parser("add", help="add two binary numbers with the hand-set RNN")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--trace", action="store_true", help="print the hidden state at every step")
    s.set_defaults(fn=_cmd_add)

    s = sub.add_parser("data", help="list datasets, or fetch/check one")
    s.add_argument("action", choices=["list", "fetch"])
    s.add_argument("name", nargs="?")
    s.set_defaults(fn=_cmd_data)

    s = sub.add_parser("export", help="write an existing run's metrics for another tool (TensorBoard)")
    s.add_argument("run_dir", help="a run directory, or a sweep's (every run in it)")
    s.add_argument("--tensorboard", action="store_true",
                   help="TensorBoard event files from metrics.jsonl, replacing any already there")
    s.set_defaults(fn=_cmd_export)

    s = sub.add_parser("info", help="the CPU's features, the recurrent kernels' variant and build, versions, threads")
    s.add_argument("--no-build", action="store_true", help="report the build's status without building or loading it")
    s.set_defaults(fn=_cmd_info)
    for s in sub.choices.values():
        s.add_argument("--debug", action="store_true", help="on an error, show the traceback")
    return p


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text}")
    return value


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    if n < 1:
        raise SystemExit(f"scratchlab: error: --threads must be at least 1, got {n}")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)  # NumPy's BLAS (the autograd engine)


def _one_line(e: BaseException) -> str:
    """An exception as one line: its message (the first line of it), prefixed by its kind unless ours says it all."""
    from scratchlab.run.config import ConfigError
    from scratchlab.train.loop import NonFiniteLoss

    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    if isinstance(e, OSError) and e.strerror:  # "path: cause", without "[Errno 28]"
        msg = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    if isinstance(e, MemoryError):
        msg = f"out of memory{': ' + msg if msg else ''}; try a smaller batch or model (--set ...)"
    first = msg.strip().splitlines()[0] if msg.strip() else ""
    plain = (ConfigError, NonFiniteLoss, KeyError, ValueError, FileNotFoundError, OSError, MemoryError)
    text = first if isinstance(e, plain) and first else f"{type(e).__name__}: {first or 'no message'}"
    return text + ("" if first == msg.strip() else " (more with --debug)")


def _rank() -> int:
    """This process's rank in a torchrun run (0 when there is none): only rank 0 prints the run's results.
    Read from the environment as train.distributed.World.from_env reads it, without importing torch."""
    import os

    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def _said_by_rank0(e: Exception, rank: int) -> bool:
    """A NaN stops every rank of a torchrun run at the same step, and rank 0 reports it: the others stay quiet."""
    if not rank:
        return False
    from scratchlab.train.loop import NonFiniteLoss

    return isinstance(e, NonFiniteLoss)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _set_threads(getattr(args, "threads", None))
    from scratchlab.run.config import ConfigError

    rank = _rank()
    try:
        code = args.fn(args)
    except KeyboardInterrupt:
        if not rank:
            print("interrupted", file=sys.stderr)
        code = 130
    except Exception as e:  # one line naming the problem; --debug for the traceback
        if args.debug:
            raise
        if not _said_by_rank0(e, rank):
            print(f"scratchlab {args.command}: error: {f'[rank {rank}] ' if rank else ''}{_one_line(e)}",
                  file=sys.stderr)
        code = 2 if isinstance(e, ConfigError) else 1
    if argv is None:
        sys.exit(code)
    return code
