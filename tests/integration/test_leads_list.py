"""GET /leads and one lead per person (#11) against the real binary: keyset pages that neither
skip nor repeat a lead while other clients add leads, each filter, `q` as a case-insensitive
prefix of the name, email and phone (its digits), the 400s, and the 409 of a capture of a known
person, 20 of them at once giving exactly one 201 and one welcome per channel.

Each test starts one server; requests made from several threads use a fresh connection each
(harness.http_request), a shared Client not being thread-safe.
"""
import threading
import urllib.parse

from harness import assert_eq, create_lead, http_request, parallel, wait_until

STATUSES = "new, contacted, replied, converted, dead"


def get_list(srv, **query):
    r = srv.get("/leads?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote))
    assert_eq(r.status, 200, "GET /leads?%s: %r" % (query, r))
    return r.json()


def names(srv, **query):
    """The names of every lead the query lists, following nextCursor page after page."""
    out, cursor = [], None
    for _ in range(1000):
        q = dict(query)
        if cursor:
            q["cursor"] = cursor
        page = get_list(srv, **q)
        out.extend(item["name"] for item in page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            return out
    raise AssertionError("no last page")


def bad(srv, query, *messages):
    r = srv.get("/leads?" + query)
    assert_eq((r.status, r.json()), (400, {"message": list(messages), "error": "Bad Request",
                                           "statusCode": 400}), "GET /leads?" + query)


def test_list_pages_filters_and_search(env):
    # No workers: statuses stay as the test sets them (new, or replied after a reply).
    srv = env.serve("--no-worker")
    people = [("Ana Silva", "ana.silva@example.com", "+351 912 000 001"),
              ("anabela Costa", "ANABELA@Example.org", None),
              ("\u00c9mile Zola", "emile@example.fr", "+33 6 12 34 56 78"),
              ("Bruno Ana", "bruno@ana.example", "+1 (631) 555-0101"),
              ("Carla", None, "+1 631 555 0102"),
              ("Diego", "diego@example.com", "+44 20 7946 0000")]
    made = [create_lead(srv, n, email=e, phone=p) for n, e, p in people]
    for lead in (made[1], made[4]):  # a reply moves the lead to replied
        frm = lead["email"] or lead["phone"]
        ch = "email" if lead["email"] else "whatsapp"
        content = {"from": frm, "subject": "Re", "body": "hi"} if ch == "email" else \
            {"from": frm, "text": "hi"}
        r = srv.post("/leads/%s/reply" % lead["id"], {"channel": ch, "messageContent": content})
        assert_eq(r.status, 201, "reply %r" % (r,))
    newest_first = [n for n, _, _ in reversed(people)]

    # The items are the leads as POST /leads answered them (the replied ones changed since).
    page = get_list(srv, limit=2)
    assert_eq(page["items"], [made[5], made[4] | {"status": "replied",
                                                   "updatedAt": page["items"][1]["updatedAt"]}],
              "first page")
    assert isinstance(page["nextCursor"], str) and len(page["nextCursor"]) == 22, page
    for limit in (1, 4, 100):
        assert_eq(names(srv, limit=limit), newest_first, "all leads, pages of %d" % limit)

    # Each filter; q is a prefix of the name, email or phone digits, case-insensitive.
    assert_eq(names(srv, status="replied"), ["Carla", "anabela Costa"], "status")
    assert_eq(names(srv, q="ANA"), ["anabela Costa", "Ana Silva"], "q name")
    assert_eq(names(srv, q="\u00e9MI"), ["\u00c9mile Zola"], "q name, accents folded")
    assert_eq(names(srv, q="Anabela@EX"), ["anabela Costa"], "q email")
    assert_eq(names(srv, q="bruno@ana"), ["Bruno Ana"], "q email, not the name")
    assert_eq(names(srv, q="+1 (631) 555"), ["Carla", "Bruno Ana"], "q phone digits")
    assert_eq(names(srv, q="1631555-01"), ["Carla", "Bruno Ana"], "q phone, other format")
    assert_eq(names(srv, q="silva"), [], "a prefix, not a substring")
    assert_eq(names(srv, q="ana", status="new"), ["Ana Silva"], "q and status")
    created = [m["createdAt"] for m in made]  # ISO 8601 with ms: they sort as text
    window = sorted(((c, i) for i, c in enumerate(created) if created[1] < c < created[4]),
                    reverse=True)
    assert_eq(names(srv, createdAfter=created[1], createdBefore=created[4]),
              [people[i][0] for _, i in window], "created window (exclusive bounds)")
    assert_eq(names(srv, createdAfter=created[5]), [], "after the newest")

    # Bad parameters: 400 naming each of them.
    bad(srv, "limit=0", "limit must be an integer from 1 to 100")
    bad(srv, "limit=101&status=open&sort=name", "property sort should not exist",
        "status must be one of the following values: " + STATUSES,
        "limit must be an integer from 1 to 100")
    bad(srv, "q=%20", "q should not be empty")
    bad(srv, "createdAfter=yesterday&cursor=not-a-cursor",
        "createdAfter must be a valid ISO 8601 date string", "cursor is not valid")
    bad(srv, "q=a&q=b", "q must be given once")

    # Pages walked while other clients add leads: every lead there before the walk is listed
    # exactly once, and no lead twice.
    before = set(m["id"] for m in made)
    for i in range(24):
        before.add(create_lead(srv, "Old %02d" % i, email="old%02d@example.com" % i)["id"])
    stop = threading.Event()
    added = []

    def writer():
        i = 0
        while not stop.is_set() and i < 500:
            r = http_request(srv.port, "POST", "/leads",
                             {"name": "New %03d" % i, "email": "new%03d@example.com" % i})
            assert r.status == 201, r
            added.append(r.json()["id"])
            i += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        seen, cursor = [], None
        wait_until(lambda: len(added) >= 3, 10, "the writer under way")
        for _ in range(1000):
            q = {"limit": 3}
            if cursor:
                q["cursor"] = cursor
            page = get_list(srv, **q)
            seen.extend(item["id"] for item in page["items"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
    finally:
        stop.set()
        t.join(30)
    assert len(added) > 3, "leads were added during the walk"
    assert_eq(len(seen), len(set(seen)), "no lead listed twice")
    assert_eq(before - set(seen), set(), "every lead there before is listed")
    srv.stop()


def test_one_lead_per_person(env):
    srv = env.serve()
    ana = create_lead(srv, "Ana", email="ana@example.com", phone="+351 912 345 678")
    conflict = {"message": "Lead already exists", "error": "Conflict", "statusCode": 409,
                "leadId": ana["id"]}
    for body in ({"name": "Ana 2", "email": "ANA@Example.COM"},
                 {"name": "Ana 3", "email": "ana@EXAMPLE.com", "phone": "+1 555 0000"},
                 {"name": "Ana 4", "phone": "351912345678"},
                 {"name": "Ana 5", "email": "other@example.com", "phone": "+351-(912)-345.678"}):
        r = srv.post("/leads", body)
        assert_eq((r.status, r.json()), (409, conflict), "POST %r" % (body,))
    r = srv.post("/leads", "name=Ana+6&email=Ana%40example.com",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_eq((r.status, r.json()), (409, conflict), "form body")
    # Blanks around an email make it no email (as in the NestJS build): refused, not matched.
    r = srv.post("/leads", {"name": "Ana 7", "email": " ana@example.com "})
    assert_eq(r.status, 400, "padded email %r" % (r,))

    # 20 identical captures at once (half of them spelled differently): exactly one 201, and
    # the others name its lead.
    bodies = [{"name": "Zed", "email": "zed@example.com", "phone": "+44 7700 900123"}
              if i % 2 else {"name": "Zed", "email": "ZED@example.com", "phone": "447700900123"}
              for i in range(20)]
    rs = parallel(lambda b: http_request(srv.port, "POST", "/leads", b), bodies, threads=20)
    for r in rs:
        assert not isinstance(r, Exception), r
    created = [r for r in rs if r.status == 201]
    assert_eq(len(created), 1, "201s among %r" % ([r.status for r in rs],))
    zed = created[0].json()["id"]
    assert_eq(sorted(set(r.status for r in rs)), [201, 409], "statuses")
    assert_eq(set(r.json()["leadId"] for r in rs if r.status == 409), {zed}, "leadId")

    # Nothing of the refused captures was stored or sent: two leads, a welcome per channel.
    assert_eq(env.db("SELECT COUNT(*) FROM leads")[0][0], 2, "leads stored")
    assert_eq(env.db("SELECT COUNT(*) FROM messages")[0][0], 4, "messages stored")
    wait_until(lambda: len(env.sink()) >= 4, 15, "the four welcomes sent")
    wait_until(lambda: all(j["state"] == "completed" for lid in (ana["id"], zed)
                           for j in srv.get("/leads/" + lid).json()["jobs"]),
               15, "every job completed")
    z = created[0].json()
    assert_eq(sorted((s["channel"], s["to"]) for s in env.sink()),
              sorted([("email", "ana@example.com"), ("whatsapp", "+351 912 345 678"),
                      ("email", z["email"]), ("whatsapp", z["phone"])]), "deliveries")
    srv.stop()
