"""The mutation score of the numerical core: mutmut over losses/, ops/, metrics.py,
data/partial_labels.py and the methods' loss and state functions.

  pip install -e ".[mutation]"
  python scripts/mutation_score.py                       # runs (resumes) mutmut, writes the report
  python scripts/mutation_score.py --rerun_survivors     # after adding tests: the survivors (and
                                                         # the mutants no test called) again
  python scripts/mutation_score.py --report_only         # the report of the results so far

mutmut (pyproject.toml `[tool.mutmut]`) copies the package into `mutants/`, mutates one operator,
constant, string or call argument at a time, and runs, per mutant, only the tests that call the
mutated function (it records them once from the core's fast test files), fastest first, until one
fails. This script says which functions are in scope (`scope`): every function of `losses/`,
`ops/`, `metrics.py` and `data/partial_labels.py`; in `methods/`, every function but the config
plumbing (`PLUMBING`: default configs, validation, model construction, parameter groups,
sharding, weight loading). It resumes: a mutant with a result is not run again unless `--rerun_survivors` asks.

The report (`--out`, default docs/results/mutation.md) gives per group and per module the mutants,
killed (a test failed or timed out), survived, equivalent (a survivor triaged as equivalent in
`--equivalent`, docs/results/mutation_equivalent.json: the function, the line before and after,
and the reason), and the kill rate killed / (mutants - equivalent); then every untriaged survivor
with its diff. Not run by CI (hours on 2 cores).
"""

import argparse
import ast
import datetime
import difflib
import fnmatch
import glob
import json
import os
import re
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mlrpl_jax import cli, errors
from mlrpl_jax.metric_writer import atomic_write_json

# Groups of the report: (name, module glob). The first four carry the 90 % target.
GROUPS = (
    ("losses", "mlrpl_jax.losses.*"),
    ("ops", "mlrpl_jax.ops.*"),
    ("metrics", "mlrpl_jax.metrics"),
    ("partial_labels", "mlrpl_jax.data.partial_labels"),
    ("methods", "mlrpl_jax.methods.*"),
)
TARGET_GROUPS = ("losses", "ops", "metrics", "partial_labels")
# methods/: functions that build configs, models and shardings rather than compute losses or state.
PLUMBING = (
    "default_config", "*_default_config", "*_config", "make_model", "validate", "*_validate",
    "_validate_*", "check", "check_*", "_fail", "param_groups", "state_sharding", "_method",
    "blend_keys", "kmeans_keys", "loss_name", "resolved_*", "__init__", "__post_init__", "get",
    "load_*", "backbone_groups", "no_validation", "frozen_towers", "_get", "_put",
)  # fmt: skip
MUTANTS = os.path.join(ROOT, "mutants")
MANGLED = re.compile(r"^(?P<module>[\w.]+)\.x(?:ǁ(?P<cls>\w+)ǁ|_)(?P<fn>\w+?)__mutmut_(?P<n>\d+)$")


def parse_name(name: str) -> tuple[str, str]:
    """('mlrpl_jax.losses.partial_bce', 'partial_bce') of 'mlrpl_jax.losses.partial_bce.x_partial_bce__mutmut_3'
    (a method: 'Class.method')."""
    m = MANGLED.match(name)
    if m is None:
        raise ValueError(f"not a mutmut mutant name: {name!r}")
    fn = f"{m['cls']}.{m['fn']}" if m["cls"] else m["fn"]
    return m["module"], fn


def group_of(module: str) -> str | None:
    for group, pattern in GROUPS:
        if fnmatch.fnmatchcase(module, pattern):
            return group
    return None


def in_scope(name: str) -> bool:
    module, fn = parse_name(name)
    group = group_of(module)
    if group is None:
        return False
    if group == "methods":
        return not any(fnmatch.fnmatchcase(fn.split(".")[-1], p) for p in PLUMBING)
    return True


def scope_patterns() -> list[str]:
    """mutmut name patterns of every in-scope function (mutmut runs nothing else)."""
    patterns = [f"{g}.*" if not g.endswith("*") else g for _, g in GROUPS[:4]]
    for path in sorted(glob.glob(os.path.join(ROOT, "mlrpl_jax", "methods", "*.py"))):
        module = "mlrpl_jax.methods." + os.path.basename(path)[:-3]
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            plumbing = any(fnmatch.fnmatchcase(getattr(node, "name", ""), p) for p in PLUMBING)
            if isinstance(node, ast.FunctionDef) and not node.decorator_list and not plumbing:
                patterns.append(f"{module}.x_{node.name}__mutmut_*")
    return patterns


STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          37: "caught by type check", None: "not checked"}  # fmt: skip


def read_results(mutants_dir: str = MUTANTS) -> dict[str, str]:
    """{mutant name: status} of every in-scope mutant mutmut generated (its .meta files)."""
    out = {}
    for meta in glob.glob(
        os.path.join(mutants_dir, "mlrpl_jax", "**", "*.py.meta"), recursive=True
    ):
        with open(meta) as f:
            codes = json.load(f)["exit_code_by_key"]
        for name, code in codes.items():
            if in_scope(name):
                out[name] = STATUS.get(code, "suspicious")
    return out


def _functions(path: str) -> dict[str, str]:
    """{name: source} of every function in a Python file, methods included (dedented)."""
    with open(path) as f:
        source = f.read()
    lines = source.splitlines()
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = textwrap.dedent("\n".join(lines[node.lineno - 1 : node.end_lineno]))
    return out


def diffs_of(names: list[str], mutants_dir: str = MUTANTS) -> dict[str, str]:
    """{name: the mutant's unified diff} (what `mutmut show` prints, without needing mutmut): mutmut
    writes each function's original as `<mangled>__mutmut_orig` beside its mutants
    `<mangled>__mutmut_<n>` in the mutated module under `mutants_dir`; the diff is theirs."""
    modules = {}
    for meta in glob.glob(
        os.path.join(mutants_dir, "mlrpl_jax", "**", "*.py.meta"), recursive=True
    ):
        with open(meta) as f:
            for name in json.load(f)["exit_code_by_key"]:
                modules[name] = meta[: -len(".meta")]
    functions, out = {}, {}
    for name in names:
        path = modules[name]
        if path not in functions:
            functions[path] = _functions(path)
        mangled = name.rpartition(".")[2]
        orig = mangled.rpartition("__mutmut_")[0] + "__mutmut_orig"
        fn = parse_name(name)[1].split(".")[-1]
        before = functions[path][orig].replace(f"def {orig}(", f"def {fn}(", 1)
        after = functions[path][mangled].replace(f"def {mangled}(", f"def {fn}(", 1)
        out[name] = "\n".join(difflib.unified_diff(
            before.splitlines(), after.splitlines(), path, path, lineterm=""))  # fmt: skip
    return out


def message_patterns() -> list[re.Pattern]:
    """pyproject.toml's `[tool.mutmut] do_not_mutate_patterns` (lines holding only message text)."""
    try:
        from tomllib import loads  # Python 3.11+
    except ImportError:
        from toml import loads  # what mutmut reads pyproject.toml with before 3.11

    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        patterns = loads(f.read())["tool"]["mutmut"].get("do_not_mutate_patterns", [])
    return [re.compile(p) for p in patterns]


def _removed_and_added(diff: str) -> tuple[list[str], list[str]]:
    """The lines a unified diff removes and adds (without their -/+ marks)."""
    lines = diff.splitlines()
    return ([ln[1:] for ln in lines if ln.startswith("-") and not ln.startswith("---")],
            [ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")])  # fmt: skip


def on_excluded_lines(diff: str, patterns: list[re.Pattern]) -> bool:
    """Whether every line the mutant changes is one mutmut no longer mutates (`message_patterns`):
    mutants generated before the patterns were set, left out of the score."""
    minus = _removed_and_added(diff)[0]
    return bool(minus) and all(any(p.search(ln) for p in patterns) for ln in minus)


def changed_lines(diff: str) -> tuple[str, str]:
    """(the line before, the line after) of a one-line mutant's diff, stripped."""
    minus, plus = _removed_and_added(diff)
    return " / ".join(ln.strip() for ln in minus), " / ".join(ln.strip() for ln in plus)


def load_equivalent(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        entries = json.load(f)
    for i, e in enumerate(entries):
        missing = {"function", "from", "to", "reason"} - set(e)
        if missing or not e["reason"].strip():
            raise errors.InputError(f"{path}: entry {i} needs function, from, to and a reason.")
    return entries


def triage(name: str, diff: str, equivalent: list[dict]) -> dict | None:
    module, fn = parse_name(name)
    before, after = changed_lines(diff)
    for e in equivalent:
        if e["function"] == f"{module}.{fn}" and e["from"] == before and e["to"] == after:
            return e
    return None


def run_mutmut(names: list[str], max_children: int, log: str) -> None:
    """`mutmut run` of `names` (patterns or mutant names), its output appended to `log`."""
    env = dict(os.environ)
    env["MLRPL_JAX_TEST_CACHE_DIR"] = os.path.join(MUTANTS, ".jax_cache")
    env.pop("XLA_FLAGS", None)
    os.makedirs(env["MLRPL_JAX_TEST_CACHE_DIR"], exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n# {datetime.datetime.now().isoformat(timespec='seconds')}: mutmut run "
                f"--max-children {max_children} ({len(names)} names or patterns)\n")  # fmt: skip
        f.flush()
        done = subprocess.run(
            ["mutmut", "run", "--max-children", str(max_children), *names],
            cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"mutmut run exited with {done.returncode}; its output: {log}")


def counts(statuses: list[str], equivalent: int) -> dict:
    killed = sum(s in ("killed", "timeout") for s in statuses)
    total = len(statuses)
    scored = total - equivalent - statuses.count("not checked")
    return {
        "mutants": total,
        "killed": killed,
        "equivalent": equivalent,
        "survived": statuses.count("survived") - equivalent,
        "no_tests": statuses.count("no tests"),
        "not_checked": statuses.count("not checked"),
        "other": total - killed - statuses.count("survived") - statuses.count("no tests")
        - statuses.count("not checked"),
        "kill_rate": round(100.0 * killed / scored, 1) if scored else None,
    }  # fmt: skip


def report(results: dict[str, str], equivalent_path: str, mutants_dir: str = MUTANTS):
    """(markdown, summary) of `results`; the survivors' diffs as `diffs_of` reads them."""
    equivalent = load_equivalent(equivalent_path)
    diffs = diffs_of(sorted(results), mutants_dir)
    patterns = message_patterns()
    excluded = {n for n in results if on_excluded_lines(diffs[n], patterns)}
    results = {n: s for n, s in results.items() if n not in excluded}
    survivors = sorted(n for n, s in results.items() if s == "survived")
    triaged, untriaged = {}, []
    for name in survivors:
        diff = diffs[name]
        entry = triage(name, diff, equivalent)
        if entry is None:
            untriaged.append((name, diff))
        else:
            triaged[name] = entry
    by_group, by_module = {}, {}
    for name in results:
        module, _ = parse_name(name)
        by_group.setdefault(group_of(module), []).append(name)
        by_module.setdefault(module, []).append(name)

    def row(label, names):
        c = counts([results[n] for n in names], sum(n in triaged for n in names))
        rate = "-" if c["kill_rate"] is None else f"{c['kill_rate']:.1f} %"
        return c, (f"| {label} | {c['mutants']} | {c['killed']} | {c['equivalent']} | {c['survived']} "
                   f"| {c['no_tests']} | {c['not_checked'] + c['other']} | {rate} |")  # fmt: skip

    head = ("| | mutants | killed | equivalent | survived | no test calls it | not run / other "
            "| kill rate |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    summary = {"groups": {}, "modules": {}}
    lines = ["## Per group", "", head]
    for group, _ in GROUPS:
        if group in by_group:
            c, text = row(
                group + (" (target 90 %)" if group in TARGET_GROUPS else ""), by_group[group]
            )
            summary["groups"][group] = c
            lines.append(text)
    lines += ["", "## Per module", "", head]
    for module in sorted(by_module):
        c, text = row(f"`{module}`", by_module[module])
        summary["modules"][module] = c
        lines.append(text)
    lines += ["", f"## Survivors not triaged ({len(untriaged)})", ""]
    for name, diff in untriaged:
        before, after = changed_lines(diff)
        lines += [f"`{name}`", "", "```diff", f"- {before}", f"+ {after}", "```", ""]
    lines += [f"## Survivors triaged as equivalent ({len(triaged)})", "",
              "| mutant | change | why it is equivalent |", "|---|---|---|"]  # fmt: skip
    for name, e in sorted(triaged.items()):
        lines.append(f"| `{name}` | `{e['from']}` → `{e['to']}` | {e['reason']} |")
    summary["untriaged_survivors"] = [n for n, _ in untriaged]
    summary["message_text_mutants_left_out"] = len(excluded)
    return "\n".join(lines) + "\n", summary


# What the mutants and the tests that judge them are made from: a change elsewhere (the report
# this script writes, notes) does not make the results describe another code.
SOURCES = ("mlrpl_jax", "tests", "configs", "pyproject.toml", "scripts/mutation_preload.txt")


def git_commit(root: str = ROOT) -> str:
    """HEAD's short hash, with ' (with uncommitted changes)' if `SOURCES` differ from it."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *SOURCES],
                           cwd=root, capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_children", type=int, default=os.cpu_count() or 1,
                        help="mutants run at once (default: one per core)")  # fmt: skip
    parser.add_argument("--rerun_survivors", action="store_true",
                        help="run the survivors and the mutants no test called again (after adding tests)")  # fmt: skip
    parser.add_argument("--report_only", action="store_true", help="write the report; run nothing")
    parser.add_argument("--only", nargs="*", default=None, metavar="PATTERN",
                        help="mutant name patterns to run (fnmatch), within the scope")  # fmt: skip
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "mutation.md"))
    parser.add_argument("--mutants_dir", default=MUTANTS,
                        help="where mutmut's results are read (--report_only; mutmut itself "
                        "always works in ./mutants)")  # fmt: skip
    parser.add_argument("--equivalent",
                        default=os.path.join(ROOT, "docs", "results", "mutation_equivalent.json"))  # fmt: skip
    args = parser.parse_args()
    with cli.user_errors():
        if args.max_children < 1:
            raise errors.InputError(f"--max_children={args.max_children}: must be 1 or more.")
        load_equivalent(args.equivalent)  # a malformed triage file fails before hours of work
        if args.report_only and not os.path.isdir(args.mutants_dir):
            raise errors.RunDirError(
                f"{args.mutants_dir}: no mutmut results yet (run without --report_only)."
            )
        if not args.report_only and os.path.abspath(args.mutants_dir) != MUTANTS:
            raise errors.InputError(
                f"--mutants_dir: mutmut runs in {MUTANTS}; only --report_only reads another "
                "directory."
            )
        if not args.report_only:
            try:
                import mutmut  # noqa: F401
            except ImportError:
                raise errors.InputError(
                    "mutmut is not installed: pip install -e '.[mutation]'."
                ) from None
            log = os.path.join(MUTANTS, "mutation_log.txt")
            os.makedirs(MUTANTS, exist_ok=True)
            start = time.time()
            results = read_results()
            if not results:  # first run: mutmut generates the mutants and runs the scope
                names = scope_patterns() if args.only is None else args.only
            else:
                wanted = ("survived", "no tests") if args.rerun_survivors else ("not checked",)
                names = [n for n, s in sorted(results.items()) if s in wanted
                         and (args.only is None or any(fnmatch.fnmatchcase(n, p) for p in args.only))]  # fmt: skip
            with open(os.path.join(MUTANTS, "source_commit.txt"), "w") as f:
                f.write(git_commit() + "\n")  # what the mutants are made from (the report says)
            if names:
                print(f"mutmut run: {len(names)} names or patterns; log: {log}", flush=True)
                run_mutmut(names, args.max_children, log)
            print(f"mutmut took {time.time() - start:.0f} s", flush=True)
        results = read_results(args.mutants_dir)
        if not results:
            raise errors.RunDirError(f"{args.mutants_dir}: no in-scope mutant found.")
        body, summary = report(results, args.equivalent, args.mutants_dir)
        source = os.path.join(args.mutants_dir, "source_commit.txt")
        commit = "unknown"
        if os.path.exists(source):
            with open(source) as f:
                commit = f.read().strip()
        header = (
            "# Mutation score of the numerical core\n\n"
            f"Produced by `python scripts/mutation_score.py` (mutmut, configured in pyproject.toml "
            f"`[tool.mutmut]`) on the code and tests of commit {commit}, "
            f"{datetime.date.today().isoformat()}. Each mutant changes one operator, constant, "
            "string or argument of one function and is run against the fast tests that call that "
            "function (mutmut's per-test statistics over the core's test files), fastest first; "
            "'killed' means one of them failed (or ran past mutmut's time limit). Equivalent "
            "mutants (no test can tell them apart; the reasons are below) leave the denominator. "
            "Lines that hold only message text are not mutated (pyproject.toml "
            "`do_not_mutate_patterns`: such a mutant rewords an error; the tests match what an "
            "error must name, and the mutants of the `raise` line itself stay)"
        )
        left_out = summary["message_text_mutants_left_out"]
        header += (f"; {left_out} mutant(s) made on such lines before that rule are left out.\n\n"
                   if left_out else ".\n\n")  # fmt: skip
        pending = sum(c["not_checked"] for c in summary["groups"].values())
        total = sum(c["mutants"] for c in summary["groups"].values())
        if pending:
            header += (f"**Partial:** {pending} of the {total} mutants in scope have not "
                       "run yet (`python scripts/mutation_score.py` resumes).\n\n")  # fmt: skip
        head = git_commit()
        if commit != "unknown" and head.split()[0] != commit.split()[0]:
            header += (f"**Since then** the code and tests have changed (now {head}): a survivor "
                       "below may be killed by a newer test; `python scripts/mutation_score.py "
                       "--rerun_survivors` runs them again.\n\n")  # fmt: skip
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as f:
            f.write(header + body)
        os.replace(args.out + ".tmp", args.out)
        atomic_write_json(os.path.splitext(args.out)[0] + ".json", summary)
        for group, c in summary["groups"].items():
            print(f"{group}: {c['killed']}/{c['mutants'] - c['equivalent']} killed "
                  f"({c['kill_rate']} %), {c['survived']} survived, {c['no_tests']} without tests")  # fmt: skip
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
