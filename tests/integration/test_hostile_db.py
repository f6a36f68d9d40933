"""A hostile database (hardening issue, point 5): faults of the database underneath a running
service are answered (503 with Retry-After, /ready 503, a log line), never hung on, never
silently lost, and the service recovers by itself once the fault is gone.

- Another process holds the SQLite write lock: a capture waits at most DB_BUSY_TIMEOUT_MS in
  total, then 503; /health answers at once. On PostgreSQL a row or table lock held by another
  session is the same case (lock_timeout).
- The database's directory is removed: 503 and /ready 503, and when the directory comes back
  empty no new, unmigrated database is created in it. Moved away and back: it works again.
- The database file made read-only (`chattr +i`: the tests run as root, for whom a mode of 0444
  means nothing; the immutable flag stops root too): 503 and /ready 503, then 201 again once the
  flag is cleared, with no restart (the writer connection is reopened).
- Every file of the database made immutable (the -shm file SQLite maps in memory included):
  no crash (a write to that mapping would be a SIGBUS), an error in the log, 503, recovery.

The SQLite cases need `chattr` on the temp dir's filesystem (ext-family) and are skipped
without it; they are skipped on PostgreSQL, the PostgreSQL case on SQLite."""
import os
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from harness import assert_eq, create_lead, http_request, wait_until

BUSY_MS = 1000
SLACK_S = 1.5  # scheduling on a loaded 2-core machine


def assert_503(r, what):
    assert_eq(r.status, 503, "%s status (%r)" % (what, r))
    ra = r.header("Retry-After")
    assert ra is not None and ra.strip().isdigit() and int(ra) >= 1, \
        "%s Retry-After header: %r" % (what, ra)


def post_lead(port, i=0, timeout=30.0):
    return http_request(port, "POST", "/leads", {"name": "Hostile %d" % i,
                                                 "email": "h%d@example.com" % i},
                        timeout=timeout)


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def chattr(flag, *paths):
    """Sets or clears the immutable flag on the paths that exist; False if unsupported."""
    paths = [p for p in paths if os.path.exists(p)]
    r = subprocess.run(["chattr", flag] + paths, capture_output=True, text=True)
    return r.returncode == 0


def require_chattr(env):
    probe = os.path.join(env.dir, "chattr-probe")
    open(probe, "w").close()
    try:
        if shutil.which("chattr") is None or not chattr("+i", probe):
            pytest.skip("chattr +i is not available on %s" % env.dir)
        chattr("-i", probe)
    finally:
        os.unlink(probe)


def sqlite_files(path):
    return [path, path + "-wal", path + "-shm"]


def concurrent_captures(port, n):
    """n captures at once; returns [(response, seconds)]."""
    out = [None] * n

    def one(i):
        out[i] = timed(lambda: post_lead(port, i))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


# ---- the write lock held by another process ------------------------------------------------


def test_sqlite_write_lock_held_elsewhere_is_answered_within_the_busy_timeout(env):
    env.require_backend("sqlite", "holds SQLite's write lock from another process")
    srv = env.serve(DB_BUSY_TIMEOUT_MS=BUSY_MS)
    create_lead(srv, email="first@example.com")
    holder = sqlite3.connect(env.db_path, timeout=10, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        results = concurrent_captures(srv.port, 8)
        health, health_s = timed(lambda: http_request(srv.port, "GET", "/health"))
        for r, secs in results:
            assert_503(r, "POST /leads while another process holds the write lock")
            assert secs <= BUSY_MS / 1000.0 + SLACK_S, \
                "a capture waited %.2fs (DB_BUSY_TIMEOUT_MS=%d)" % (secs, BUSY_MS)
        assert_eq(health.status, 200, "GET /health")
        assert health_s < 0.5, "GET /health took %.2fs" % health_s
    finally:
        if holder.in_transaction:
            holder.rollback()
        holder.close()
    r = post_lead(srv.port, 99)
    assert_eq(r.status, 201, "POST /leads once the lock is released (%r)" % (r,))
    assert srv.alive()


# ---- the database directory removed ---------------------------------------------------------


def serve_in_subdir(env, *args, **kw):
    data = os.path.join(env.dir, "data")
    os.mkdir(data)
    path = os.path.join(data, "sp.db")
    env.db_path = path  # env.db() peeks at it
    url = "sqlite:" + path
    return data, path, env.serve(*args, DATABASE_URL=url, **kw), url


def test_sqlite_database_directory_removed_is_never_silently_lost(env):
    env.require_backend("sqlite", "removes the database file")
    data, path, srv, url = serve_in_subdir(env)
    wrk = env.worker(DATABASE_URL=url)
    create_lead(srv, email="first@example.com")

    shutil.rmtree(data)
    r = post_lead(srv.port, 1)
    assert_503(r, "POST /leads with the database directory removed")
    assert_503(http_request(srv.port, "GET", "/ready"), "GET /ready with the directory removed")

    # The directory comes back empty: still 503, and no fresh unmigrated file is used.
    os.mkdir(data)
    for i in range(3):
        assert_503(post_lead(srv.port, 10 + i), "POST /leads with an empty directory back")
    assert_503(http_request(srv.port, "GET", "/ready"), "GET /ready with an empty directory")
    if os.path.exists(path):
        con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        try:
            tables = con.execute("SELECT name FROM sqlite_master").fetchall()
        finally:
            con.close()
        assert_eq(tables, [], "tables of a database created after start")
    for p in (srv, wrk):
        assert p.alive(), "%s died:\n%s" % (p.name, p.log_tail())
        wait_until(lambda p=p: "was removed" in p.log(), 5, "%s to log the removal" % p.name)


def test_sqlite_database_directory_moved_back_works_again(env):
    env.require_backend("sqlite", "moves the database file")
    data, path, srv, url = serve_in_subdir(env)
    create_lead(srv, email="first@example.com")
    os.rename(data, data + ".away")
    try:
        assert_503(post_lead(srv.port, 1), "POST /leads with the directory moved away")
    finally:
        os.rename(data + ".away", data)
    wait_until(lambda: post_lead(srv.port, 2).status == 201, 10,
               "POST /leads 201 once the directory is back")
    assert_eq(http_request(srv.port, "GET", "/ready").status, 200, "GET /ready")


# ---- read-only and immutable files ----------------------------------------------------------


def test_sqlite_read_only_database_is_not_ready_and_the_writer_recovers(env):
    env.require_backend("sqlite", "makes the database file read-only")
    require_chattr(env)
    # API only: no worker has opened the writer connection yet, so the first write opens it
    # on a read-only file.
    srv = env.serve("--no-worker")
    try:
        assert chattr("+i", env.db_path)
        assert_503(post_lead(srv.port, 1), "POST /leads on a read-only database")
        assert_503(http_request(srv.port, "GET", "/ready"), "GET /ready on a read-only database")
    finally:
        chattr("-i", env.db_path)
    wait_until(lambda: post_lead(srv.port, 2).status == 201, 10,
               "POST /leads 201 once the database is writable again")
    assert_eq(http_request(srv.port, "GET", "/ready").status, 200, "GET /ready")


def test_sqlite_immutable_files_do_not_crash_the_process(env):
    env.require_backend("sqlite", "makes SQLite's files immutable")
    require_chattr(env)
    srv = env.serve(JOB_BACKOFF_MS=50)
    wrk = env.worker()
    for i in range(3):
        create_lead(srv, name="Before %d" % i, email="b%d@example.com" % i)
    files = sqlite_files(env.db_path)
    try:
        assert chattr("+i", *files)
        os.sync()  # writes the mapped -shm pages back: the next write to them faults
        deadline = time.monotonic() + 1.5
        i = 0
        while time.monotonic() < deadline:
            assert_503(post_lead(srv.port, 100 + i), "POST /leads on immutable files")
            i += 1
        assert_503(http_request(srv.port, "GET", "/ready"), "GET /ready on immutable files")
        for p in (srv, wrk):
            assert p.alive(), "%s died (rc %r):\n%s" % (p.name, p.popen.returncode,
                                                        p.log_tail())
    finally:
        chattr("-i", *files)
    for p in (srv, wrk):
        assert any(" error " in l and "not writable" in l for l in p.log().splitlines()), \
            "%s logged no error:\n%s" % (p.name, p.log_tail())
    wait_until(lambda: post_lead(srv.port, 500).status == 201, 10,
               "POST /leads 201 once the files are writable again")
    assert_eq(http_request(srv.port, "GET", "/ready").status, 200, "GET /ready")
    for p in (srv, wrk):
        assert p.alive(), "%s died after recovery:\n%s" % (p.name, p.log_tail())


# ---- PostgreSQL: a lock held by another session --------------------------------------------


def test_postgres_lock_wait_is_bounded(env):
    env.require_backend("postgres", "holds a PostgreSQL table lock")
    srv = env.serve(DB_BUSY_TIMEOUT_MS=BUSY_MS)
    create_lead(srv, email="first@example.com")
    conn = env.pg.connect(env.pg_db)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE")
        results = concurrent_captures(srv.port, 4)
        for r, secs in results:
            assert_503(r, "POST /leads while another session locks the table")
            assert secs <= BUSY_MS / 1000.0 + SLACK_S, \
                "a capture waited %.2fs (DB_BUSY_TIMEOUT_MS=%d)" % (secs, BUSY_MS)
        health, health_s = timed(lambda: http_request(srv.port, "GET", "/health"))
        assert_eq(health.status, 200, "GET /health")
        assert health_s < 0.5, "GET /health took %.2fs" % health_s
    finally:
        conn.rollback()
        conn.close()
    assert_eq(post_lead(srv.port, 99).status, 201, "POST /leads once the lock is released")
