#!/usr/bin/env python3
# A replay file like a vendor export: N trades over S symbols, evenly spread over the H hours
# that end now (past-dated), CSV with a header, timestamps in ms, seeded (the same file every run).
# usage: gen_replay.py [N=2000000] [SYMBOLS=100] [HOURS=48] > ticks.csv
import random, sys, time
n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
symbols = int(sys.argv[2]) if len(sys.argv) > 2 else 100
hours = float(sys.argv[3]) if len(sys.argv) > 3 else 48
rng = random.Random(22)
end = int(time.time() * 1000)
start = end - int(hours * 3_600_000)
step = (end - start) / n
price = [100.0 + 10 * i for i in range(symbols)]
out = sys.stdout
out.write("ts,symbol,price,size,side\n")
lines = []
for i in range(n):
    s = rng.randrange(symbols)
    price[s] = max(0.01, price[s] * (1 + rng.gauss(0, 0.0005)))
    side = "buy" if rng.random() < 0.5 else "sell"
    lines.append(f"{start + int(i * step)},S{s:03},{price[s]:.4f},{rng.randint(1, 500)},{side}\n")
    if len(lines) == 100_000:
        out.writelines(lines)
        lines.clear()
out.writelines(lines)
