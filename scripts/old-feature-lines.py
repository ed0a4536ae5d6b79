#!/usr/bin/env python3
"""Count the lines of maglevx/ that serve the features it had before issue 16.

Issue 16 asks that the redesigned package do "at least the same with fewer
lines for the old features".  The old features are what maglevx/ did at
BASE, where its .py/.pyx/.pyi/.pxd files had 5,813 lines.  Today those files,
and the modules split out of them, also hold the features of issues 11-15
and 17.  `git blame` gives every line the commit that last wrote it; a line
written by a commit of another issue (listed below, by hand, from their
messages) is that issue's.  Every other line counts as the old features':
the lines from before BASE, issue 16's own commits, merges and clean-ups.
That is the conservative side: an ambiguous line counts against us.

A clean-up that rewrites another issue's line makes it ours.  With
--refactors SINCE, the non-merge commits after SINCE (a simplifying pass,
no features) are given to `git blame --ignore-rev`, so that a rewritten
line keeps the issue of the line it replaced; a line only they wrote still
counts as ours.

Usage: python3 scripts/old-feature-lines.py [--refactors SINCE] [REV]
"""

from __future__ import annotations

import collections
import subprocess
import sys

BASE = "e4621dc"  # main when issue 16 was filed
SPLIT_OUT = ["maglevx/addresses.py", "maglevx/ipvs.py", "maglevx/listing.py"]
SPLIT_OUT += ["maglevx/_version.py"]
SOURCE = (".py", ".pyx", ".pyi", ".pxd")

# Commits that wrote another issue's feature into these files.  A merge is
# listed when it merged that issue's branch: the lines it wrote are the
# branch's feature fitted to main (f299937: realinputs, 2710849: decision).
OTHER_ISSUES = {
    "11": "a186717 db8560f 2f7d3cc 29293aa 2710849",
    "12": "c6c19d1 4bc955f 5e62764 5995df7 53da815 80c27ed c4feb7d 86d03c9 "
    "fcc859d 222c632 073c55d f299937 e23eea6",
    "13": "f961698 9f6742e 5b56d2b",
    "14": "109dabc e5402e6 ddff569 c70b52b 664e9e4 6cf075a b1dbb70",
    "15": "8444379",
    "17": "a894838 001ff0f 1265b5d ed7cebc ba9218c",
}


def git(*args: str) -> str:
    """The output of a git command in this checkout."""
    return subprocess.run(
        ["git", *args], check=True, capture_output=True, text=True
    ).stdout


def main() -> None:
    """Print the lines per issue of the old files at the revision asked."""
    args = sys.argv[1:]
    ignore: list[str] = []
    if args[:1] == ["--refactors"]:
        since, args = args[1], args[2:]
        rev = args[0] if args else "HEAD"
        commits = git("rev-list", "--no-merges", f"{since}..{rev}", "--", "maglevx")
        for c in commits.split():
            ignore += ["--ignore-rev", c]
    else:
        rev = args[0] if args else "HEAD"
    issue_of = {}
    for issue, commits in OTHER_ISSUES.items():
        for c in commits.split():
            issue_of[git("rev-parse", c).strip()] = issue
    old = [f for f in git("ls-tree", "-r", "--name-only", BASE, "maglevx").split()]
    files = [f for f in old + SPLIT_OUT if f.endswith(SOURCE)]
    present = set(git("ls-tree", "-r", "--name-only", rev, "maglevx").split())
    base_lines = sum(
        len(git("show", f"{BASE}:{f}").splitlines()) for f in old if f.endswith(SOURCE)
    )
    per_issue: collections.Counter[str] = collections.Counter()
    for f in files:
        if f not in present:
            continue
        for line in git(
            "blame", "--line-porcelain", "-w", *ignore, rev, "--", f
        ).splitlines():
            head = line.split(" ", 1)[0]
            if len(head) == 40 and all(ch in "0123456789abcdef" for ch in head):
                per_issue[issue_of.get(head, "old")] += 1
    total = sum(per_issue.values())
    print(f"{BASE}: {base_lines} lines in the files maglevx/ had then")
    print(f"{rev}: {total} lines in those files and the modules split out of them")
    for issue in sorted(k for k in per_issue if k != "old"):
        print(f"  issue {issue}: {per_issue[issue]}")
    print(f"  old features: {per_issue['old']} ({per_issue['old'] - base_lines:+d})")


if __name__ == "__main__":
    main()
