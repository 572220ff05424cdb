"""The order of the Flex search, without torch: which earlier configurations a cell starts from
and how the kernel-option pass shares the time budget between cells.

A cell key is `<layout>_s<seq>_d<head_dim>` (`fixed_b64_s16384_d128`). Cells of one layout and
head dim at different sequence lengths have the same tiles and usually the same fastest kernel
options, so a cell without configurations of its own from an earlier run starts from a sibling's,
and the option pass tries a sibling's winning options first. The option pass goes round-robin over
the cells (every cell's first candidate, then every cell's second, ...), so a spent budget leaves
each cell its likeliest candidates rather than the last cells none.
"""
import re

_KEY = re.compile(r"^(?P<layout>.+)_s(?P<seq>\d+)_d(?P<d>\d+)$")


def split_key(key):
    """`(layout, seq, head_dim)` of a cell key.

    >>> split_key("bigbird_b128_s16384_d64")
    ('bigbird_b128', 16384, 64)
    """
    m = _KEY.match(key)
    if not m:
        raise ValueError(f"cell key {key!r} is not <layout>_s<seq>_d<head_dim>")
    return m["layout"], int(m["seq"]), int(m["d"])


def siblings(key, keys):
    """The other keys of `keys` with `key`'s layout and head dim, nearest sequence length first
    (the shorter one first on a tie).

    >>> siblings("fixed_b64_s16384_d128",
    ...          ["fixed_b64_s4096_d128", "fixed_b64_s4096_d64", "fixed_b64_s8192_d128"])
    ['fixed_b64_s8192_d128', 'fixed_b64_s4096_d128']
    """
    layout, seq, d = split_key(key)
    same = [k for k in keys if k != key and split_key(k)[0] == layout and split_key(k)[2] == d]
    return sorted(same, key=lambda k: (abs(split_key(k)[1] - seq), split_key(k)[1]))


def with_borrowed(prior, keys):
    """`prior` (`{cell key: {pass: (tile, options)}}`) with, for each key of `keys` that has no
    entry of a pass, the nearest sibling's entry of that pass; returns `(prior, borrowed)` where
    `borrowed` is the set of `(key, pass)` filled in. `prior` itself is not changed.

    >>> p = {"fixed_b16_s4096_d64": {"fwd": ((64, 16), {"fwd_num_warps": 4})}}
    >>> full, borrowed = with_borrowed(p, ["fixed_b16_s4096_d64", "fixed_b16_s16384_d64"])
    >>> full["fixed_b16_s16384_d64"]["fwd"]
    ((64, 16), {'fwd_num_warps': 4})
    >>> sorted(borrowed)
    [('fixed_b16_s16384_d64', 'fwd')]
    """
    full = {k: dict(v) for k, v in prior.items()}
    borrowed = set()
    for key in keys:
        own = full.setdefault(key, {})
        for sib in siblings(key, list(prior)):
            for p, conf in prior[sib].items():
                if p not in own:
                    own[p] = conf
                    borrowed.add((key, p))
        if not own:
            del full[key]
    return full, borrowed


def preferred_first(candidates, preferred):
    """`candidates` with the ones in `preferred` moved to the front (in `preferred`'s order),
    the rest in their order; entries of `preferred` not among `candidates`, and repeats, are
    ignored.

    >>> preferred_first([{"a": 1}, {"a": 2}, {"a": 3}], [{"a": 3}, {"a": 9}, {"a": 3}])
    [{'a': 3}, {'a': 1}, {'a': 2}]
    """
    front = []
    for p in preferred:
        if p in candidates and p not in front:
            front.append(p)
    return front + [c for c in candidates if c not in front]


def round_robin(iterables):
    """Yields the first item of each iterable, then the second of each, ..., skipping those
    already exhausted. The iterables are advanced lazily, one item at a time.

    >>> list(round_robin([iter("ab"), iter(""), iter("xyz")]))
    ['a', 'x', 'b', 'y', 'z']
    """
    live = [iter(it) for it in iterables]
    while live:
        still = []
        for it in live:
            try:
                yield next(it)
            except StopIteration:
                continue
            still.append(it)
        live = still
