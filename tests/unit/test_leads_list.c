/* test_leads_list.c: the lead list (leads_list, GET /leads, #11) on the fake and on the real
 * stores: newest first by (created_at, insertion), keyset pages that neither skip nor repeat a
 * lead while leads are added, each filter (status, created window, q on the name, email and
 * phone), both plans of a search on SQL (the prefixes' index ranges, and the walk that tests
 * each lead: the tables here are sized so that both run), and the errors. */
#include "t.h"

#include "core/arena.h"
#include "fakes/t_env.h"

static int lead_n;

/* Stores a lead straight through the repo (no welcome): id ...-4000-8000-<n>. */
static void
put(struct t_env *env, const char *name, const char *email, const char *phone,
    enum lead_status status, int64_t at, char *id)
{
    struct sp_error err = {0};
    struct lead l;

    memset(&l, 0, sizeof(l));
    snprintf(l.id, sizeof(l.id), "00000000-0000-4000-8000-%012d", ++lead_n);
    l.name = name;
    l.email = email;
    l.phone = phone;
    l.status = status;
    l.created_at = at;
    l.updated_at = at;
    ASSERT_OK(lead_repo_lead_insert(env->repo, &l, &err));
    if (id)
        memcpy(id, l.id, sizeof(l.id));
}

static struct leads_list_query
query(int limit)
{
    struct leads_list_query q;

    memset(&q, 0, sizeof(q));
    q.created_after = LEAD_TIME_MIN - 1;
    q.created_before = LEAD_TIME_MAX + 1;
    q.limit = limit;
    return q;
}

/* Walks every page of q (q->after moves), appending "<name>," of each lead to out[cap];
 * returns the number of leads. */
static int
walk(struct t_env *env, struct leads_list_query *q, char *out, size_t cap)
{
    int total = 0;

    out[0] = '\0';
    for (int pages = 0; pages < 1000; pages++) {
        struct lead_list_page page;
        struct sp_error err = {0};
        struct lead *l;

        ASSERT_OK(leads_list(&env->deps, q, env->arena, &l, &page, &err));
        ASSERT(page.n <= q->limit);
        for (int i = 0; i < page.n; i++) {
            size_t len = strlen(out);
            snprintf(out + len, cap - len, "%s,", l[i].name);
        }
        total += page.n;
        if (!page.has_next)
            return total;
        ASSERT_EQ(q->limit, page.n);
        q->after = page.next;
    }
    t_fail(__FILE__, __LINE__, "no end after 1000 pages");
}

/* The names of every lead q lists, in order, with a page size of 1, 2 and 100: the same. */
static const char *
names(struct t_env *env, struct leads_list_query q, struct arena *a)
{
    char first[4096], again[4096];

    q.limit = 1;
    walk(env, &q, first, sizeof(first));
    for (int limit = 2; limit <= LEAD_LIST_MAX; limit += 98) {
        struct leads_list_query qq = q;
        qq.limit = limit;
        qq.after.seq = 0;
        walk(env, &qq, again, sizeof(again));
        ASSERT_STREQ(first, again);
    }
    return arena_strdup(a, first);
}

static int
count_items(const char *list)
{
    int n = 0;

    for (; *list; list++)
        n += *list == ',';
    return n;
}

TEST_ALL(unit_leads_list_newest_first_in_pages)
{
    struct t_env *env = t_env_new(backend);
    struct leads_list_query q = query(2);
    struct lead_list_page page;
    struct sp_error err = {0};
    char seen[4096];
    struct lead *l;

    /* ties on created_at: the later stored comes first */
    put(env, "a", "a@x.io", NULL, LEAD_STATUS_NEW, T_NOW, NULL);
    put(env, "b", "b@x.io", NULL, LEAD_STATUS_NEW, T_NOW + 1, NULL);
    put(env, "c", "c@x.io", NULL, LEAD_STATUS_NEW, T_NOW + 1, NULL);
    put(env, "d", "d@x.io", NULL, LEAD_STATUS_NEW, T_NOW + 1, NULL);
    put(env, "e", "e@x.io", NULL, LEAD_STATUS_NEW, T_NOW + 2, NULL);
    put(env, "f", "f@x.io", NULL, LEAD_STATUS_NEW, T_NOW - 5, NULL); /* a clock behind */
    put(env, "g", "g@x.io", NULL, LEAD_STATUS_NEW, T_NOW + 3, NULL);
    ASSERT_STREQ("g,e,d,c,b,a,f,", names(env, query(1), env->arena));

    /* Leads added while a client pages: every lead there before is listed exactly once; newer
     * ones are not (they are before the cursor), an older one is (after it). */
    ASSERT_OK(leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_EQ(2, page.n);
    ASSERT_STREQ("g", l[0].name);
    ASSERT_STREQ("e", l[1].name);
    ASSERT(page.has_next);
    ASSERT_EQ(T_NOW + 2, page.next.created_at);
    q.after = page.next;
    put(env, "h", "h@x.io", NULL, LEAD_STATUS_NEW, T_NOW + 9, NULL);
    put(env, "i", "i@x.io", NULL, LEAD_STATUS_NEW, T_NOW + 1, NULL); /* ties with b, c, d */
    put(env, "j", "j@x.io", NULL, LEAD_STATUS_NEW, T_NOW - 9, NULL);
    walk(env, &q, seen, sizeof(seen));
    ASSERT_STREQ("i,d,c,b,a,f,j,", seen);

    /* the end: no next page; an empty list */
    q = query(11);
    ASSERT_OK(leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_EQ(10, page.n);
    ASSERT_EQ(0, page.has_next);
    q = query(20);
    q.created_before = T_NOW - 100;
    ASSERT_OK(leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_EQ(0, page.n);
    ASSERT_EQ(0, page.has_next);
    t_env_free(env);
}

TEST_ALL(unit_leads_list_filters)
{
    struct t_env *env = t_env_new(backend);
    struct leads_list_query q;
    char id[SP_UUID_LEN + 1];
    struct lead_list_page page;
    struct sp_error err = {0};
    struct lead *l;

    put(env, "Ana Silva", "ana.silva@Example.com", "+351 912 000 001", LEAD_STATUS_NEW, T_NOW, id);
    put(env, "\xc3\x89mile Zola", "EZ@example.fr", NULL, LEAD_STATUS_CONTACTED, T_NOW + 10, NULL);
    put(env, "anabela", NULL, "+1 (555) 010-0001", LEAD_STATUS_REPLIED, T_NOW + 20, NULL);
    put(env, "Bruno", "bruno@ana.example", "+44 20 7946 0001", LEAD_STATUS_REPLIED, T_NOW + 30,
        NULL);
    put(env, "Zoe 3519", "zoe@example.com", "3519", LEAD_STATUS_DEAD, T_NOW + 40, NULL);

    /* the lead as stored comes back */
    q = query(1);
    q.q = "ana s";
    ASSERT_OK(leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_EQ(1, page.n);
    ASSERT_STREQ(id, l[0].id);
    ASSERT_STREQ("Ana Silva", l[0].name);
    ASSERT_STREQ("ana.silva@Example.com", l[0].email);
    ASSERT_STREQ("+351 912 000 001", l[0].phone);
    ASSERT_EQ(LEAD_STATUS_NEW, l[0].status);
    ASSERT_EQ(T_NOW, l[0].created_at);

    q = query(20);
    q.has_status = 1;
    q.status = LEAD_STATUS_REPLIED;
    ASSERT_STREQ("Bruno,anabela,", names(env, q, env->arena));
    q.status = LEAD_STATUS_CONVERTED;
    ASSERT_STREQ("", names(env, q, env->arena));

    /* the window's bounds are exclusive */
    q = query(20);
    q.created_after = T_NOW + 10;
    q.created_before = T_NOW + 40;
    ASSERT_STREQ("Bruno,anabela,", names(env, q, env->arena));
    q.created_after = T_NOW + 9;
    q.created_before = T_NOW + 11;
    ASSERT_STREQ("\xc3\x89mile Zola,", names(env, q, env->arena));
    q.created_after = T_NOW + 30;
    q.created_before = T_NOW + 30;
    ASSERT_STREQ("", names(env, q, env->arena));

    /* q: a prefix of the name (case-insensitive, accents folded), of the email (trimmed,
     * case-insensitive) or, for a phone-like q, of the phone's digits */
    q = query(20);
    q.q = "ANA";
    ASSERT_STREQ("anabela,Ana Silva,", names(env, q, env->arena));
    q.q = "  ana.SILVA@ex ";
    ASSERT_STREQ("Ana Silva,", names(env, q, env->arena));
    q.q = "\xc3\xa9MI"; /* éMI */
    ASSERT_STREQ("\xc3\x89mile Zola,", names(env, q, env->arena));
    q.q = "ez@";
    ASSERT_STREQ("\xc3\x89mile Zola,", names(env, q, env->arena));
    q.q = "+1 (555) 01";
    ASSERT_STREQ("anabela,", names(env, q, env->arena));
    q.q = "3519";
    ASSERT_STREQ("Zoe 3519,Ana Silva,", names(env, q, env->arena));
    q.q = "bruno@ana";
    ASSERT_STREQ("Bruno,", names(env, q, env->arena));
    q.q = "silva"; /* a prefix, not a substring */
    ASSERT_STREQ("", names(env, q, env->arena));
    q.q = "zoe 3"; /* not phone-like: names and emails only */
    ASSERT_STREQ("Zoe 3519,", names(env, q, env->arena));
    q.q = "%";
    ASSERT_STREQ("", names(env, q, env->arena));

    /* everything at once */
    q.q = "ana";
    q.has_status = 1;
    q.status = LEAD_STATUS_REPLIED;
    ASSERT_STREQ("anabela,", names(env, q, env->arena));
    q.created_before = T_NOW + 20;
    ASSERT_STREQ("", names(env, q, env->arena));
    t_env_free(env);
}

/* Enough leads that a search for a common prefix walks the list while a rare one reads index
 * ranges (sql_lead_repo.c list_plan: ranges while the index entries matching are fewer than
 * sqrt((limit + 1) leads) + 1, 13 for a page of 1 among 74 leads); both give the order of the
 * list, page after page. */
TEST_ALL(unit_leads_list_search_plans)
{
    struct t_env *env = t_env_new(backend);
    static const char *const last[] = {"Silva", "Santos", "Costa", "Alves"};
    struct leads_list_query q;
    char want[4096], name[64], email[64], phone[32];
    size_t len = 0;

    want[0] = '\0';
    for (int i = 0; i < 60; i++) { /* "Ana <last> <i>", newest last */
        snprintf(name, sizeof(name), "Ana %s %02d", last[i % 4], i);
        snprintf(email, sizeof(email), "ana%02d@example.com", i);
        snprintf(phone, sizeof(phone), "+351 9%d %07d", i % 10, i);
        put(env, name, email, phone, (enum lead_status)(i % 5), T_NOW + i / 2, NULL);
    }
    for (int i = 0; i < 14; i++) {
        snprintf(name, sizeof(name), "Bea %02d", i);
        snprintf(email, sizeof(email), "bea%02d@example.com", i);
        put(env, name, email, NULL, LEAD_STATUS_NEW, T_NOW + i, NULL);
    }
    /* ana: 60 names and 60 emails, of every status: the walk */
    q = query(1);
    q.q = "ana";
    for (int i = 59; i >= 0; i--)
        len += (size_t)snprintf(want + len, sizeof(want) - len, "Ana %s %02d,", last[i % 4], i);
    ASSERT_STREQ(want, names(env, q, env->arena));
    /* ana s: 30 (Silva, Santos), 6 of them dead: the ranges of that status */
    q.q = "ana s";
    q.has_status = 1;
    q.status = LEAD_STATUS_DEAD;
    len = 0;
    want[0] = '\0';
    for (int i = 59; i >= 0; i--)
        if (i % 4 < 2 && i % 5 == LEAD_STATUS_DEAD)
            len += (size_t)snprintf(want + len, sizeof(want) - len, "Ana %s %02d,", last[i % 4], i);
    ASSERT_STREQ(want, names(env, q, env->arena));
    /* ana: 24 replied: the walk along the status */
    q.q = "ana";
    q.status = LEAD_STATUS_REPLIED;
    len = 0;
    want[0] = '\0';
    for (int i = 59; i >= 0; i--)
        if (i % 5 == LEAD_STATUS_REPLIED)
            len += (size_t)snprintf(want + len, sizeof(want) - len, "Ana %s %02d,", last[i % 4], i);
    ASSERT_STREQ(want, names(env, q, env->arena));
    /* ana silva: 15 matches, just over the threshold: the walk */
    q.has_status = 0;
    q.q = "Ana Silva";
    len = 0;
    want[0] = '\0';
    for (int i = 56; i >= 0; i -= 4)
        len += (size_t)snprintf(want + len, sizeof(want) - len, "Ana Silva %02d,", i);
    ASSERT_STREQ(want, names(env, q, env->arena));
    /* phones: 60 start with 3519 (the walk), 6 with 35193 (the ranges) */
    q.q = "+351 9";
    ASSERT_EQ(60, count_items(names(env, q, env->arena)));
    q.q = "(351) 93";
    ASSERT_STREQ("Ana Santos 53,Ana Alves 43,Ana Santos 33,Ana Alves 23,Ana Santos 13,"
                 "Ana Alves 03,",
                 names(env, q, env->arena));
    /* 4 names (the ranges) */
    q.q = "bea 1";
    ASSERT_STREQ("Bea 13,Bea 12,Bea 11,Bea 10,", names(env, q, env->arena));
    t_env_free(env);
}

/* The search against a scan of every lead, over prefixes that take each path of the plans
 * (sql_lead_repo.c, list_search): buckets larger than a walk's budget (24 entries per row asked
 * for: 48 for a page of 1), prefixes common in their bucket (the walk fills the page), rare in
 * it (the probe, then the range), matching only the oldest leads (the walk comes short, then
 * the range), of one or two characters (the list's walk), of two characters in four bytes, with
 * a status, and a created window. Each is read with pages of 1, 2, 7 and 100. */
struct scan_lead {
    char name[48], email[64], phone[32];
    enum lead_status status;
    int64_t at;
};

static int
starts(const char *s, const char *prefix)
{
    return s != NULL && prefix != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* "<name>," of each lead q matches, newest first (ties: the later insert first). */
static void
scan(const struct scan_lead *ls, int n, const struct leads_list_query *q, char *out, size_t cap)
{
    char qn[64], qe[64], qp[64], ln[64], le[64], lp[64];
    const char *pn = lead_name_fold(q->q, qn, sizeof(qn));
    const char *pe = lead_email_norm(q->q, qe, sizeof(qe));
    const char *pp = lead_phone_query(q->q, qp, sizeof(qp));
    size_t len = 0;

    out[0] = '\0';
    for (int i = n - 1; i >= 0; i--) { /* created_at never decreases with i */
        const struct scan_lead *l = &ls[i];
        if ((q->has_status && l->status != q->status) || l->at <= q->created_after ||
            l->at >= q->created_before)
            continue;
        if (starts(lead_name_fold(l->name, ln, sizeof(ln)), pn) ||
            starts(lead_email_norm(l->email[0] ? l->email : NULL, le, sizeof(le)), pe) ||
            starts(lead_phone_norm(l->phone[0] ? l->phone : NULL, lp, sizeof(lp)), pp))
            len += (size_t)snprintf(out + len, cap - len, "%s,", l->name);
    }
}

TEST_ALL(unit_leads_list_search_against_scan)
{
    static const char *const first[] = {"Maria",      "Marta",   "Mario",         "Marco",
                                        "Ana",        "Anabela", "\xc3\x89milie", "\xc3\x89va",
                                        "Zo\xc3\xab", "Jo"};
    static const char *const last[] = {"Silva", "Santos", "Costa", "Alves"};
    static const char *const qs[] = {
        "mar", "maria",   "marta s",  "mar c",        "maria old",  "maria old 1",
        "ana", "ANABELA", "\xc3\xa9", "\xc3\xa9v",    "\xc3\xa9mi", "zo\xc3\xab",
        "jo",  "j",       "m",        "maria.silva1", "marco.",     "+351 93",
        "35",  "3519",    "+1 555",   "1555 01",      "zz",         "maria.old"};
    static const int limits[] = {1, 2, 7, 100};
    static struct scan_lead ls[600];
    static char want[1 << 16], got[1 << 16];
    struct t_env *env = t_env_new(backend);
    int n = (int)(sizeof(ls) / sizeof(ls[0]));

    for (int i = 0; i < n; i++) {
        struct scan_lead *l = &ls[i];
        const char *f = first[i % 10], *ln = last[i / 10 % 4];

        if (i < 100 || i == n - 10) /* a prefix common enough to walk, with one recent lead */
            snprintf(l->name, sizeof(l->name), "Maria Old %d", i);
        else if (i < 103) /* a name as long as a short prefix: a bucket of its own */
            snprintf(l->name, sizeof(l->name), "Jo");
        else
            snprintf(l->name, sizeof(l->name), "%s %s %d", f, ln, i);
        if (i % 7 != 0 && i >= 103)
            snprintf(l->email, sizeof(l->email), "%s.%s%d@example.com", i % 10 < 4 ? f : "x", ln,
                     i);
        else if (i % 7 != 0 && i < 100)
            snprintf(l->email, sizeof(l->email), "maria.old%d@example.com", i);
        if (i % 5 != 0)
            snprintf(l->phone, sizeof(l->phone), i % 3 ? "+351 9%d %07d" : "+1 555 %02d%05d",
                     i % 10, i);
        l->status = (enum lead_status)(i % 5);
        l->at = T_NOW + i / 3;
        put(env, l->name, l->email[0] ? l->email : NULL, l->phone[0] ? l->phone : NULL, l->status,
            l->at, NULL);
    }
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        for (int variant = 0; variant < 3; variant++) {
            struct leads_list_query q = query(1);

            q.q = qs[k];
            if (variant == 1) { /* a status */
                q.has_status = 1;
                q.status = (enum lead_status)(k % 5);
            } else if (variant == 2) { /* a window */
                q.created_after = T_NOW + 20;
                q.created_before = T_NOW + 100;
            }
            scan(ls, n, &q, want, sizeof(want));
            for (size_t j = 0; j < sizeof(limits) / sizeof(limits[0]); j++) {
                struct leads_list_query qq = q;

                qq.limit = limits[j];
                walk(env, &qq, got, sizeof(got));
                if (strcmp(want, got) != 0)
                    t_fail(__FILE__, __LINE__, "q=%s variant %d limit %d: want %s got %s", q.q,
                           variant, limits[j], want, got);
            }
        }
    }
    /* the data has the shapes the comment names (the lists above are compared, whatever their
     * length): buckets bigger than a page of 1's budget, a prefix matching only old leads and
     * more than a page of 1 probes, and a bucket of names as long as the prefix */
    {
        struct leads_list_query q = query(1);

        q.q = "mar";
        scan(ls, n, &q, want, sizeof(want));
        ASSERT(count_items(want) > 200);
        q.q = "maria old";
        scan(ls, n, &q, want, sizeof(want));
        ASSERT_EQ(101, count_items(want));
        q.q = "jo";
        scan(ls, n, &q, want, sizeof(want));
        ASSERT(count_items(want) > 48);
        ASSERT(strncmp(want, "Jo ", 3) == 0);
    }
    t_env_free(env);
}

TEST_ALL(unit_leads_list_errors)
{
    struct t_env *env = t_env_new(backend);
    struct leads_list_query q;
    struct lead_list_page page;
    struct sp_error err = {0};
    struct lead *l;

    put(env, "Ana", "ana@example.com", NULL, LEAD_STATUS_NEW, T_NOW, NULL);
    q = query(0);
    ASSERT_EQ(SP_EINVAL, leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_STREQ("limit must be an integer from 1 to 100", err.msg);
    sp_error_clear(&err);
    q = query(101);
    ASSERT_EQ(SP_EINVAL, leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    sp_error_clear(&err);
    q = query(10);
    q.q = " \t ";
    ASSERT_EQ(SP_EINVAL, leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_STREQ("q", err.field);
    ASSERT_STREQ("q should not be empty", err.msg);
    sp_error_clear(&err);
    q.q = "an\x01";
    ASSERT_EQ(SP_EINVAL, leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_STREQ("q", err.field);
    sp_error_clear(&err);
    q = query(10);
    q.after.seq = 1;
    q.after.created_at = LEAD_TIME_MAX + 1;
    ASSERT_EQ(SP_EINVAL, leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_STREQ("cursor is not valid", err.msg);
    sp_error_clear(&err);

    /* a cursor far in the past or the future is a position like any other */
    q.after.created_at = LEAD_TIME_MIN;
    ASSERT_OK(leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_EQ(0, page.n);
    q.after.created_at = LEAD_TIME_MAX;
    ASSERT_OK(leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_EQ(1, page.n);

    /* storage failures pass through */
    q = query(10);
    q.q = "an";
    fault_plan_arm(&env->faults, 1, SP_EUNAVAIL);
    ASSERT_EQ(SP_EUNAVAIL, leads_list(&env->deps, &q, env->arena, &l, &page, &err));
    ASSERT_EQ(0, page.n);
    ASSERT(l == NULL);
    ASSERT_STREQ("lead_list", env->faults.last_op);
    t_env_free(env);
}
