"""Kill rate of ``make mutate`` (mutmut) from its ``mutants/**/*.meta`` files, per module, as JSON.

Why a script: mutmut's own ``results`` lists mutants one by one; the rate a reviewer asks for ("at least 90%
killed, survivors listed") needs the tally by module and the survivors' names in one file that can be
committed beside the results.

Verdicts are mutmut's own (``mutmut.stats.status_by_exit_code``). Counted as killed: the tests failed,
timed out, crashed, or the type checker caught the mutant; survived: the tests passed; not covered: no test
ran the mutated function; suspicious and not-yet-run mutants are listed apart.
``rate = killed / (killed + survived + not covered)``.

Survivors no test can tell from the original are argued equivalent, with a reason each, in
``docs/mutation-equivalent.toml``; the report pairs every survivor with its reason, lists the unexplained
ones (the goal: none), flags entries that name no survivor (stale after the code moved: re-check them) and
gives the score over the non-equivalent mutants as well, the usual mutation score.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
SURVIVED = {"survived"}
NOT_COVERED = {"no tests"}
NOT_RUN = {"not checked", "check was interrupted by user", "skipped"}


def verdict(exit_code: int | None) -> str:
    """killed / survived / not_covered / not_run / suspicious, from mutmut's status of ``exit_code``."""
    from mutmut.stats import status_by_exit_code

    status = status_by_exit_code[exit_code]
    for name, group in (("killed", KILLED), ("survived", SURVIVED), ("not_covered", NOT_COVERED),
                        ("not_run", NOT_RUN)):
        if status in group:
            return name
    return "suspicious"


def tally(root: Path) -> dict[str, Any]:
    modules: dict[str, dict[str, object]] = {}
    for meta in sorted(root.rglob("*.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        verdicts = {k: verdict(v) for k, v in codes.items()}
        c = Counter(verdicts.values())
        survivors = sorted(k for k, v in verdicts.items() if v in ("survived", "not_covered", "suspicious"))
        modules[str(meta.relative_to(root)).removesuffix(".meta")] = {**c, "mutants": len(codes),
                                                                       "survivors": survivors}
    tot: Counter[str] = Counter()
    for m in modules.values():
        tot.update({k: v for k, v in m.items() if k in ("killed", "survived", "not_covered", "not_run", "suspicious")})
    judged = tot["killed"] + tot["survived"] + tot["not_covered"]
    return {"total": dict(tot), "kill_rate": tot["killed"] / judged if judged else None, "modules": modules}


def load_equivalent(path: Path) -> dict[str, str]:
    """Mutant name -> reason, from ``[[group]]`` tables of ``reason`` and ``mutants``."""
    if not path.exists():
        return {}
    reasons: dict[str, str] = {}
    for group in tomllib.loads(path.read_text())["group"]:
        for name in group["mutants"]:
            if name in reasons:
                raise ValueError(f"{path}: {name} listed twice")
            reasons[name] = group["reason"]
    return reasons


def explain(rep: dict[str, Any], reasons: dict[str, str]) -> dict[str, Any]:
    """Add the equivalence verdicts to a :func:`tally` report."""
    survivors = [name for m in rep["modules"].values() for name in m["survivors"]]
    alive = set(survivors)
    equivalent = {n: reasons[n] for n in survivors if n in reasons}
    tot = rep["total"]
    judged = tot.get("killed", 0) + tot.get("survived", 0) + tot.get("not_covered", 0)
    rest = judged - len(equivalent)
    return {**rep, "equivalent": equivalent,
            "unexplained": sorted(n for n in survivors if n not in reasons),
            "stale_equivalent": sorted(n for n in reasons if n not in alive),
            "score_without_equivalent": tot.get("killed", 0) / rest if rest else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", type=Path, default=Path("mutants"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--equivalent", type=Path, default=Path("docs/mutation-equivalent.toml"),
                   help="survivors argued equivalent, with reasons (default: docs/mutation-equivalent.toml)")
    args = p.parse_args()
    if not args.mutants.is_dir():
        print(f"{args.mutants} does not exist: run `make mutate` first", file=sys.stderr)
        return 2
    rep = explain(tally(args.mutants), load_equivalent(args.equivalent))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(rep, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(args.out)
    t = rep["total"]
    rate = rep["kill_rate"]
    print(f"mutants {sum(t.values())}: killed {t.get('killed', 0)}, survived {t.get('survived', 0)}, "
          f"not covered {t.get('not_covered', 0)}, suspicious {t.get('suspicious', 0)}, not run "
          f"{t.get('not_run', 0)}; kill rate "
          f"{'n/a' if rate is None else f'{100 * rate:.1f}%'}; argued equivalent {len(rep['equivalent'])}, "
          f"unexplained {len(rep['unexplained'])}, stale equivalence entries {len(rep['stale_equivalent'])} "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
