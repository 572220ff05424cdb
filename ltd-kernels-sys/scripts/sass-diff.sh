#!/usr/bin/env bash
# Compares the machine code of every kernel in two builds, per (architecture, kernel):
#   identical       same instructions, operands and encodings (control bits included)
#   control-bits    same instruction text, different scheduling/control bits
#   registers-only  same instructions once register numbers (R, UR, P, UP, B) are erased
#   different       anything else (instruction counts and opcode histogram delta shown)
#   only-old / only-new
# plus a resource-usage line (REG, SHARED, ...) wherever those differ.
#
# Usage: sass-diff.sh OLD NEW [KERNEL_REGEX]
#   OLD, NEW: a .fatbin / .cubin file, or a directory (its *.fatbin and *.cubin files; a kernel
#   may move between files). Needs cuobjdump and nvdisasm on PATH (or CUOBJDUMP=...).
# Example:
#   scripts/sass-diff.sh ../old/out target/release/build/ltd-kernels-sys-*/out 'sparse_attn_fwd'
# Exit status: 0 if every kernel is identical, 1 otherwise.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
CUOBJDUMP=${CUOBJDUMP:-cuobjdump}
command -v "$CUOBJDUMP" >/dev/null || { echo "sass-diff: cuobjdump not found (set CUOBJDUMP or PATH)" >&2; exit 2; }

files_of() {
    if [[ -d $1 ]]; then
        find "$1" -maxdepth 1 \( -name '*.fatbin' -o -name '*.cubin' \) | sort
    else
        echo "$1"
    fi
}

dump() {  # all files of one side -> one text stream of SASS and resource usage
    local f
    for f in $(files_of "$1"); do
        echo "@@FILE $f"
        "$CUOBJDUMP" -sass "$f"
        echo "@@RES"
        "$CUOBJDUMP" -res-usage "$f"
    done
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dump "$1" >"$tmp/old.txt"
dump "$2" >"$tmp/new.txt"

python3 - "$tmp/old.txt" "$tmp/new.txt" "${3:-}" <<'EOF'
import re, sys, collections

INSTR = re.compile(r'/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;\s*/\* (0x[0-9a-f]{16}) \*/')
ENC2 = re.compile(r'^\s*/\* (0x[0-9a-f]{16}) \*/\s*$')

def parse(path):
    """{(arch, kernel): {'text': [...], 'enc': [...], 'res': str}}"""
    kernels = {}
    arch = None
    cur = None
    in_res = False
    for line in open(path):
        if line.startswith('@@FILE'):
            in_res = False
            continue
        if line.startswith('@@RES'):
            in_res = True
            continue
        m = re.match(r'arch = (\S+)', line)
        if m:
            arch = m.group(1)
            continue
        if in_res:
            m = re.match(r'\s*Function (\S+):', line)
            if m:
                cur = kernels.setdefault((arch, m.group(1)), {'text': [], 'enc': [], 'res': ''})
                continue
            if cur is not None and 'REG:' in line:
                cur['res'] = line.strip()
            continue
        m = re.match(r'\s*Function : (\S+)', line)
        if m:
            cur = kernels.setdefault((arch, m.group(1)), {'text': [], 'enc': [], 'res': ''})
            continue
        m = INSTR.search(line)
        if m and cur is not None:
            cur['text'].append(m.group(1))
            cur['enc'].append(m.group(2))
            continue
        m = ENC2.match(line)
        if m and cur is not None and cur['enc']:
            cur['enc'][-1] += m.group(1)
    return kernels

REG = re.compile(r'\b(U?R|U?P|B)(\d+|Z|T)\b')
def erase_regs(t):
    return REG.sub(lambda m: m.group(1) + ('#' if m.group(2).isdigit() else m.group(2)), t)

def opcode(t):
    t = re.sub(r'^@!?U?P\w+\s+', '', t)
    return t.split()[0] if t else ''

old, new = parse(sys.argv[1]), parse(sys.argv[2])
pat = re.compile(sys.argv[3]) if sys.argv[3] else None
counts = collections.Counter()
for key in sorted(set(old) | set(new), key=lambda k: (k[1], k[0])):
    arch, name = key
    if pat and not pat.search(name):
        continue
    o, n = old.get(key), new.get(key)
    if o is None or n is None:
        verdict, detail = ('only-new', '') if o is None else ('only-old', '')
    elif o['text'] == n['text'] and o['enc'] == n['enc']:
        verdict, detail = 'identical', ''
    elif o['text'] == n['text']:
        verdict, detail = 'control-bits', ''
    elif [erase_regs(t) for t in o['text']] == [erase_regs(t) for t in n['text']]:
        verdict, detail = 'registers-only', ''
    else:
        verdict = 'different'
        ho = collections.Counter(opcode(t) for t in o['text'])
        hn = collections.Counter(opcode(t) for t in n['text'])
        delta = {op: hn[op] - ho[op] for op in set(ho) | set(hn) if hn[op] != ho[op]}
        top = sorted(delta.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:8]
        eo = [erase_regs(t) for t in o['text']]
        en = [erase_regs(t) for t in n['text']]
        if not top and sorted(eo) == sorted(en):
            moved = sum(1 for a, b in zip(eo, en) if a != b)
            mix = 'same instructions, %d positions reordered' % moved
        else:
            mix = ' '.join('%s%+d' % kv for kv in top) or 'same opcode mix'
        detail = '%d -> %d instrs; %s' % (len(o['text']), len(n['text']), mix)
    counts[verdict] += 1
    res = ''
    if o is not None and n is not None and o['res'] != n['res']:
        res = '  [res %s -> %s]' % (o['res'], n['res'])
    print('%-15s %-7s %s%s%s' % (verdict, arch, name, ('  ' + detail) if detail else '', res))
print('summary: ' + ', '.join('%s %d' % kv for kv in sorted(counts.items())))
sys.exit(0 if set(counts) <= {'identical'} else 1)
EOF
