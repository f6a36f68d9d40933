"""pytest fixtures and hooks of the integration and interop suites (harness.py describes them).

- `env`: a fresh harness.Env per test, cleaned up whatever the outcome.
- `shared_pg`, `shared_redis`: the run's servers (session scope): the ones named by the files
  $SALESPAD_PG_URL_FILE / $SALESPAD_REDIS_URL_FILE (CTest's `pg` and `redis` fixtures), else,
  outside CI, a throwaway server started for this run and stopped at its end. Under CI=true a
  missing URL file fails the tests that need it (never a skip).
- A failed test's report gets the tail of every process's stderr log (any fixture value with a
  log_tails() method: the Env, the interop context).
- A run whose tests were all skipped exits 77, CTest's SKIP_RETURN_CODE (pytest says 0).
"""

import os
import shutil
import tempfile

import pytest

import harness

SKIP_STATUS = 77
_outcomes = {"passed": 0, "failed": 0, "skipped": 0}


def _shared_server(kind, url_env, mode, server_cls):
    """Yields the server named by the file $url_env, or a throwaway one (not under CI=true)."""
    path = os.environ.get(url_env, "")
    if path and os.path.exists(path):
        yield server_cls.from_url_file(path)
        return
    if harness.ci():
        pytest.fail("%s under CI=true needs %s (%r) to name a running server"
                    % (mode, url_env, path), pytrace=False)
    parent = tempfile.mkdtemp(prefix="salespad-it-%s-" % kind)
    print("%s not set (or missing): starting a throwaway server in %s for this run"
          % (url_env, parent))
    try:
        srv = server_cls.launch(os.path.join(parent, kind))
        yield srv
        srv.destroy()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_pg():
    yield from _shared_server("pg", "SALESPAD_PG_URL_FILE", "SALESPAD_DB=postgres",
                              harness.PgServer)


@pytest.fixture(scope="session")
def shared_redis():
    yield from _shared_server("redis", "SALESPAD_REDIS_URL_FILE", "SALESPAD_QUEUE=redis",
                              harness.RedisServer)


@pytest.fixture(scope="session")
def salespad_bin():
    if not os.path.exists(harness.BIN):
        pytest.fail("salespad binary not found at %s (set SALESPAD_BIN)" % harness.BIN,
                    pytrace=False)
    return harness.BIN


@pytest.fixture
def env(request, salespad_bin):
    """A fresh Env on this run's database and queue (SALESPAD_DB, SALESPAD_QUEUE)."""
    pg = request.getfixturevalue("shared_pg") if harness.BACKEND == "postgres" else None
    rs = request.getfixturevalue("shared_redis") if harness.QUEUE == "redis" else None
    e = harness.Env(request.node.name, pg=pg, redis_srv=rs)
    yield e
    e.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds the log tails of the test's processes to the report of a failed test (before the
    fixtures' teardown removes them)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when == "teardown":
        return
    for name, value in getattr(item, "funcargs", {}).items():
        log_tails = getattr(value, "log_tails", None)
        if callable(log_tails):
            text = log_tails()
            if text:
                report.sections.append(("log tails (%s)" % name, text))


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        _outcomes[report.outcome] += 1


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == pytest.ExitCode.OK and _outcomes["skipped"] and \
            not _outcomes["passed"] and not _outcomes["failed"]:
        session.exitstatus = SKIP_STATUS
