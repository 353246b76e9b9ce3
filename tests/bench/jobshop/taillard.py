"""Taillard's job-shop instance generator (E. Taillard, "Benchmarks for basic
scheduling problems", EJOR 64, 1993): durations uniform in 1..99 from a time seed,
each job's route a random permutation of the machines from a machine seed, both
from his portable linear congruential generator.

    python3 taillard.py ta03            # prints ta03 in OR-Library text
    python3 taillard.py 20 15 T M       # any size and seeds

SEEDS holds the published seeds of ta01-ta20; OPTIMA their makespans: ta01-ta10
are proven optima, ta11-ta20 the best known (since proven optimal for most). The
generator reproduces tests/bench/jobshop/instances/ta01.txt exactly."""
import sys

SEEDS = {
    "ta01": (15, 15, 840612802, 398197754), "ta02": (15, 15, 1314640371, 386720536),
    "ta03": (15, 15, 1227221349, 316176388), "ta04": (15, 15, 342269428, 1806358582),
    "ta05": (15, 15, 1603221416, 1501949241), "ta06": (15, 15, 1357584978, 1734077082),
    "ta07": (15, 15, 44531661, 1374316395), "ta08": (15, 15, 302545136, 2092186050),
    "ta09": (15, 15, 1153780144, 1393392374), "ta10": (15, 15, 73896786, 1544979948),
    "ta11": (20, 15, 533484900, 317419073), "ta12": (20, 15, 1894307698, 1474268163),
    "ta13": (20, 15, 874340513, 509669280), "ta14": (20, 15, 1124986343, 1209573668),
    "ta15": (20, 15, 1463788335, 529048107), "ta16": (20, 15, 1056908795, 25321885),
    "ta17": (20, 15, 195672285, 1717580117), "ta18": (20, 15, 961965583, 1353003786),
    "ta19": (20, 15, 1610169733, 1734469503), "ta20": (20, 15, 532794656, 998486810),
}
OPTIMA = {
    "ta01": 1231, "ta02": 1244, "ta03": 1218, "ta04": 1175, "ta05": 1224,
    "ta06": 1238, "ta07": 1227, "ta08": 1217, "ta09": 1274, "ta10": 1241,
    "ta11": 1357, "ta12": 1367, "ta13": 1342, "ta14": 1345, "ta15": 1339,
    "ta16": 1360, "ta17": 1462, "ta18": 1396, "ta19": 1332, "ta20": 1348,
}


class Unif:
    """Taillard's generator: x <- 16807 x mod (2^31 - 1), by Schrage's method."""

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, low, high):
        m, a, b, c = 2147483647, 16807, 127773, 2836
        k = self.seed // b
        self.seed = a * (self.seed % b) - k * c
        if self.seed < 0:
            self.seed += m
        return low + int(self.seed / m * (high - low + 1))


def generate(n, m, time_seed, machine_seed):
    """The instance as OR-Library text (machines from 0)."""
    t, r = Unif(time_seed), Unif(machine_seed)
    dur = [[t(1, 99) for _ in range(m)] for _ in range(n)]
    lines = [f"{n} {m}"]
    for j in range(n):
        route = list(range(m))
        for k in range(m):
            s = r(k, m - 1)
            route[k], route[s] = route[s], route[k]
        lines.append(" ".join(f"{route[k]} {dur[j][k]}" for k in range(m)))
    return "\n".join(lines) + "\n"


def instance(name):
    return generate(*SEEDS[name])


if __name__ == "__main__":
    if len(sys.argv) == 2:
        sys.stdout.write(instance(sys.argv[1]))
    elif len(sys.argv) == 5:
        sys.stdout.write(generate(*map(int, sys.argv[1:5])))
    else:
        sys.exit(__doc__)
