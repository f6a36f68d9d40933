#!/usr/bin/env python3
"""seed_leads.py: N leads straight into a migrated, empty database with SQL, for the list bench
(scripts/bench.sh): seed_leads.sqlite.sql or seed_leads.postgres.sql, one INSERT ... SELECT.

    seed_leads.py sqlite PATH N
    seed_leads.py postgres PSQL URL N     (PSQL: the psql binary)

To load fast, the leads table's secondary indexes are dropped first and made again after the
rows are in, from their own stored definitions (sqlite_master, pg_indexes): the schema ends as
the migrations made it. Then ANALYZE, as a database that has lived a while would have its
statistics. SQLite writes without a journal (a throwaway file; the service puts it back in WAL
mode when it opens it). Prints "seeded N leads in S s" on stdout.
"""
import os
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def seed_sqlite(path, n):
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1000000")
        con.execute("PRAGMA temp_store=MEMORY")
        con.execute("BEGIN")
        idx = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                          " AND tbl_name = 'leads' AND sql IS NOT NULL").fetchall()
        for name, _ in idx:
            con.execute('DROP INDEX "%s"' % name)
        with open(os.path.join(HERE, "seed_leads.sqlite.sql")) as f:
            con.execute(f.read(), {"n": n})
        for _, sql in idx:
            con.execute(sql)
        con.execute("COMMIT")
        con.execute("ANALYZE")
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def seed_postgres(psql, url, n):
    base = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]
    defs = subprocess.run(base + ["-At", "-c",
                                  "SELECT indexname, indexdef FROM pg_indexes"
                                  " WHERE tablename = 'leads' AND indexname NOT IN"
                                  " (SELECT conname FROM pg_constraint"
                                  "  WHERE conrelid = 'leads'::regclass)"],
                          check=True, capture_output=True, text=True).stdout.split("\n")
    idx = [line.split("|", 1) for line in defs if line]
    script = ["SET maintenance_work_mem = '256MB';", "BEGIN;"]
    script += ['DROP INDEX "%s";' % name for name, _ in idx]
    script += ["\\i " + os.path.join(HERE, "seed_leads.postgres.sql")]
    script += [sql + ";" for _, sql in idx]
    script += ["COMMIT;", "VACUUM ANALYZE leads;"]
    subprocess.run(base + ["-v", "n=%d" % n, "-f", "-"], input="\n".join(script) + "\n",
                   check=True, capture_output=True, text=True)


def main(argv):
    t0 = time.monotonic()
    if len(argv) == 4 and argv[1] == "sqlite":
        n = int(argv[3])
        seed_sqlite(argv[2], n)
    elif len(argv) == 5 and argv[1] == "postgres":
        n = int(argv[4])
        seed_postgres(argv[2], argv[3], n)
    else:
        sys.exit(__doc__)
    print("seeded %d leads in %.1f s" % (n, time.monotonic() - t0))


if __name__ == "__main__":
    try:
        main(sys.argv)
    except subprocess.CalledProcessError as e:
        sys.exit("seed_leads.py: %s failed: %s" % (e.cmd[0], (e.stderr or "").strip()[-500:]))
