/* test_conn_reaper.c: core/conn_reaper on socket pairs: a connection late with its headers or
 * too slow with its body is shut down (its peer reads end of file), a connection in its handler
 * or keeping the pace is left alone. Waits poll against a deadline. */
#include "t.h"

#include "core/clock.h"
#include "core/conn_reaper.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Whether the server side of the pair was shut down within `ms`: our end reads end of file. */
static int
shut_within(int peer, int ms)
{
    struct pollfd p = {peer, POLLIN, 0};
    char c;

    if (poll(&p, 1, ms) <= 0)
        return 0;
    return recv(peer, &c, 1, MSG_DONTWAIT) == 0;
}

TEST(unit_conn_reaper_closes_late_headers_only)
{
    struct conn_reaper *r = NULL;
    struct sp_error err = {0};
    int late[2], busy[2];

    ASSERT_OK(conn_reaper_start(100, 1000, &r, &err));
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, late));
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, busy));
    struct conn_track *tl = conn_reaper_add(r, late[0]);
    struct conn_track *tb = conn_reaper_add(r, busy[0]);
    conn_track_phase(tb, CONN_HANDLER); /* a slow handler is never the client's fault */
    ASSERT(shut_within(late[1], 5000));
    ASSERT(!shut_within(busy[1], 400));
    conn_reaper_remove(r, tl);
    conn_reaper_remove(r, tb);
    conn_reaper_stop(r);
    for (int i = 0; i < 2; i++) {
        close(late[i]);
        close(busy[i]);
    }
}

TEST(unit_conn_reaper_closes_a_body_under_the_minimum_rate)
{
    struct conn_reaper *r = NULL;
    struct sp_error err = {0};
    int slow[2], fast[2];
    long long start;

    ASSERT_OK(conn_reaper_start(100, 1000, &r, &err));
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, slow));
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, fast));
    struct conn_track *ts = conn_reaper_add(r, slow[0]);
    struct conn_track *tf = conn_reaper_add(r, fast[0]);
    conn_track_phase(ts, CONN_BODY);
    conn_track_phase(tf, CONN_BODY);
    /* the fast one reports 100 kB at once: far above 1000 B/s for the whole test */
    conn_track_body(tf, 100 * 1000);
    conn_track_body(ts, 10);
    start = (long long)sp_mono_ms();
    ASSERT(shut_within(slow[1], 5000));
    ASSERT((long long)sp_mono_ms() - start >= 90); /* not before the grace period */
    ASSERT(!shut_within(fast[1], 300));
    conn_reaper_remove(r, ts);
    conn_reaper_remove(r, tf);
    conn_reaper_stop(r);
    for (int i = 0; i < 2; i++) {
        close(slow[i]);
        close(fast[i]);
    }
}
