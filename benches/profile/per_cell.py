#!/usr/bin/env python3
"""Per missed cell: the targets it misses (a peer run's table.md) beside where its time goes (a
profile's summary.md, from summarize.py), one markdown table, for the performance log.

    python3 benches/profile/per_cell.py TABLE.md SUMMARY.md [SUMMARY.md ...] > per-cell.md

TABLE.md is benches/peers/run-all.sh's table (its "Targets" list names the misses); each
SUMMARY.md is benches/profile/summarize.py's output for some of the same bench cells. A cell
takes its profile from the first SUMMARY.md that has it; with more than one, a last column names
that file as given. A cell no profile has is reported with "(not profiled)" in its profile
columns, never dropped; a table without a "Targets" list or a "Backward" table is an error.
"""
import re
import sys


def rows(text, first_header):
    """The body rows of the first markdown table whose header row starts with `first_header`,
    each a dict from header name to cell text."""
    out, inside, names = [], False, []
    for line in text.splitlines():
        if line.startswith("| " + first_header + " |") and not inside:
            inside, names = True, [c.strip() for c in line.strip().strip("|").split("|")]
            continue
        if inside:
            if not line.startswith("|"):
                if out:
                    return out
                continue
            if line.startswith("|---"):
                continue
            out.append(dict(zip(names, (c.strip() for c in line.strip().strip("|").split("|")))))
    return out


def cell_key(layout, s, d):
    """'fixed b16', '4096', '64' -> 'fixed_b16_s4096_d64' (summarize.py's cell names)."""
    return f"{layout.replace(' ', '_')}_s{s}_d{d}"


def misses(table):
    """Cell key -> the miss text of the table's Targets list."""
    m = {}
    found = False
    for line in table.splitlines():
        if line.startswith("Targets"):
            found = True
        hit = re.match(r"- (\S+ b\d+) S (\d+) D (\d+): (.*)$", line)
        if found and hit:
            m[cell_key(hit.group(1), hit.group(2), hit.group(3))] = hit.group(4)
    if not found:
        sys.exit("per_cell.py: TABLE.md has no 'Targets' list (is it run-all.sh's table.md?)")
    return m


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip().splitlines()[3].strip())
    table = open(sys.argv[1], encoding="utf-8").read()
    summaries = sys.argv[2:]
    missed = misses(table)
    key = lambda r: cell_key(r["layout"], r["S"], r["D"])  # noqa: E731
    fwd = {key(r): r for r in rows(table, "layout")}
    if "\nBackward" not in table:
        sys.exit("per_cell.py: TABLE.md has no 'Backward' table (is it run-all.sh's table.md?)")
    bwd = {key(r): r for r in rows(table.split("\nBackward", 1)[1], "layout")}
    prof, source = {}, {}
    for path in summaries:
        for r in rows(open(path, encoding="utf-8").read(), "cell"):
            if r["cell"] not in prof:
                prof[r["cell"]], source[r["cell"]] = r, path
    many = len(summaries) > 1
    print("| cell | misses | fwd eff | bwd eff | fwd main µs (tensor / issue / occupancy %) | fwd top stalls "
          "| bwd main µs + aux µs (tensor / issue / occupancy %) | bwd top stalls |" + (" profile |" if many else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if many else ""))
    for k in fwd:
        if k not in missed:
            continue
        f, b, p = fwd[k], bwd.get(k, {}), prof.get(k)
        feff, beff = f["efficiency"], b.get("efficiency", "")
        if p:
            fcol = f"{p['fwd main µs']} ({p['fwd: tensor % / issue % / occupancy %']})"
            bcol = f"{p['bwd main µs']} + {p['bwd aux µs']} ({p['bwd: tensor % / issue % / occupancy %']})"
            fst, bst = p["fwd top stalls"], p["bwd top stalls"]
        else:
            fcol = bcol = fst = bst = "(not profiled)"
        tail = f" {source.get(k, '')} |" if many else ""
        print(f"| {k} | {missed[k]} | {feff} | {beff} | {fcol} | {fst} | {bcol} | {bst} |{tail}")
    met = [k for k in fwd if k not in missed]
    print()
    print(f"Cells meeting every target: {len(met)} of {len(fwd)}" + (f" ({', '.join(met)})." if met else "."))


if __name__ == "__main__":
    main()
