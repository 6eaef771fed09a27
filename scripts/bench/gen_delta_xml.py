#!/usr/bin/env python3
"""Two thin devices for the thin_delta benchmark (thin_dump XML on stdout).

Device 0 maps --mappings virtual blocks (runs of sequential data blocks with
holes between them); device 1 is a snapshot of it in which --changed of the
mapped blocks were rewritten (moved to fresh data blocks), in clusters of
--cluster consecutive mapped blocks. Both devices have the same mapped keys,
so a restore packs them into leaves with the same boundaries.

usage: gen_delta_xml.py [--mappings 1000000] [--changed 0.01] [--cluster 1] [--seed 1]
"""
import argparse
import random
import sys


def runs(items):
    """items: sorted [(vblock, dblock)] -> XML mapping lines"""
    out, i, n = [], 0, len(items)
    while i < n:
        vb, db = items[i]
        j = i + 1
        while j < n and items[j][0] == vb + (j - i) and items[j][1] == db + (j - i):
            j += 1
        if j - i == 1:
            out.append('    <single_mapping origin_block="%d" data_block="%d" time="0"/>' % (vb, db))
        else:
            out.append('    <range_mapping origin_begin="%d" data_begin="%d" length="%d" time="0"/>'
                       % (vb, db, j - i))
        i = j
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mappings", type=int, default=1000000)
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--cluster", type=int, default=1)
    ap.add_argument("--run", type=int, default=64, help="mean run length of the origin")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    origin, vb, db = [], 0, 0
    while len(origin) < a.mappings:
        vb += rnd.randint(0, 4)
        ln = max(1, int(rnd.expovariate(1.0 / a.run)))
        for _ in range(min(ln, a.mappings - len(origin))):
            origin.append((vb, db))
            vb += 1
            db += 1
    snap = list(origin)
    nr_changed = int(len(origin) * a.changed)
    chosen = set()
    while len(chosen) < nr_changed:
        start = rnd.randrange(0, len(origin))
        for i in range(start, min(start + a.cluster, len(origin))):
            chosen.add(i)
    for i in sorted(chosen):
        snap[i] = (snap[i][0], db)
        db += 1
    w = sys.stdout.write
    w('<superblock uuid="" time="1" transaction="1" version="2" data_block_size="128" nr_data_blocks="%d">\n'
      % (db + 1024))
    for dev, items, ctime in ((0, origin, 0), (1, snap, 1)):
        w('  <device dev_id="%d" mapped_blocks="%d" transaction="0" creation_time="%d" snap_time="1">\n'
          % (dev, len(items), ctime))
        w("\n".join(runs(items)) + "\n")
        w('  </device>\n')
    w('</superblock>\n')


main()
