"""The score of a mutmut run (scripts/mutation.sh), with equivalent mutants left out.

    python scripts/mutation_score.py .mutmut-cache docs/testing.md [module ...]

Equivalent mutants are the rows of the table under "## Equivalent mutants" in
docs/testing.md: | module | original line | mutated line | reason |, the lines as
`mutmut show` prints them, stripped, in backticks (a pipe in them written \\|). Prints every surviving mutant's
diff, a line per module (for a module run on a sample of its mutants,
MUTATION_SAMPLE, with the 95% interval of its score), and last
`mutation score: K/N killed (P%)`.
"""

from __future__ import annotations

import math
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

KILLED = {"ok_killed", "ok_suspicious", "bad_timeout"}  # a test failed, or the mutant hung


def equivalents(doc: Path) -> set[tuple[str, str, str]]:
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    section = text.split("## Equivalent mutants", 1)[1] if "## Equivalent mutants" in text else ""
    out = set()
    for row in section.splitlines():
        # cells are split at unescaped pipes; code containing a pipe writes it as \|
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        if len(cells) >= 4 and cells[1].startswith("`"):
            out.add((cells[0].strip("`"), cells[1].strip("`").strip(), cells[2].strip("`").strip()))
    return out


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's 95% interval for a proportion k/n: what a sample of mutants says of all of them
    (the sample is drawn without replacement, so this is slightly wide)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mutant_lines(mutant_id: int) -> tuple[str, str]:
    """(original, mutated) line of a mutant, from mutmut's own diff."""
    diff = subprocess.run([sys.executable, "-m", "mutmut", "show", str(mutant_id)], capture_output=True,
                          text=True, check=True).stdout
    minus = [l[1:].strip() for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    plus = [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    return " ".join(minus).strip(), " ".join(plus).strip()


def main(argv: list[str]) -> int:
    cache, doc, modules = Path(argv[0]), Path(argv[1]), argv[2:]
    db = sqlite3.connect(cache)
    rows = db.execute("SELECT m.id, m.status, s.filename FROM Mutant m JOIN Line l ON m.line = l.id "
                      "JOIN SourceFile s ON l.sourcefile = s.id").fetchall()
    eq = equivalents(doc)
    total_k = total_n = 0
    for module in modules:
        mine = [(i, st) for i, st, f in rows if Path(f).stem == module]
        counts = Counter(st for _, st in mine)
        excluded = 0
        survivors = []
        for i, st in mine:
            if st in KILLED or st in ("skipped", "untested"):
                continue
            orig, mut = mutant_lines(i)
            if (module, orig, mut) in eq:
                excluded += 1
            else:
                survivors.append((i, orig, mut))
        k = sum(counts[s] for s in KILLED)
        n = k + len(survivors)
        for i, orig, mut in survivors:
            print(f"survived {module} #{i}:\n  - {orig}\n  + {mut}")
        not_run = counts["skipped"] + counts["untested"]
        sample = ""
        if not_run and n:
            lo, hi = wilson(k, n)
            sample = f"; a sample: the module's score is in [{100 * lo:.1f}%, {100 * hi:.1f}%] (95%)"
        print(f"{module}: {k}/{n} killed, {excluded} equivalent left out, "
              f"{not_run} not run ({dict(counts)}){sample}")
        total_k += k
        total_n += n
    pct = 100.0 * total_k / total_n if total_n else 0.0
    print(f"mutation score: {total_k}/{total_n} killed ({pct:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
