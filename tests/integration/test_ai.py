"""AI answers from an OpenAI-compatible API (AI_PROVIDER=openai) against a stub on loopback.

Each test starts a stub chat-completions API (stubs.ModelStub: Python's http.server, in threads
of the test process, on a free loopback port) serving POST /v1/chat/completions and GET
/v1/models. It checks every request strictly (path, bearer key, content type, exactly the
members "model" and "messages", the configured model, a system message first naming the lead,
then the conversation's turns with roles "user"/"assistant" only, ending with the prospect's
newest message) and records each violation; the tests assert there were none. What it answers is
scripted in order: a documented completion whose content names the request number, an error
body with any status and Retry-After, a body that is not JSON, or an answer held past
AI_TIMEOUT_MS. The real salespad binary calls it over plain http (allowed for loopback hosts
only); the channels are the mock senders, so an answer is visible in GET /leads/:id and the sink.
"""
import json

from harness import HOST, assert_eq, create_lead, details, free_port, outbound, wait_until
from stubs import AI_KEY as KEY, AI_LEAD as LEAD, AI_MODEL as MODEL, openai
from stubs import ModelStub as Stub, start_model as start_stub


def answers(det, channel="whatsapp"):
    return [m for m in outbound(det) if m["channel"] == channel and m["kind"] == "ai_reply"]


def sent_answers(srv, lid, n=1, channel="whatsapp"):
    d = details(srv, lid)
    a = answers(d, channel)
    return d if len(a) >= n and all(m["status"] == "sent" for m in a) else None


def events(det, type_):
    return [e["payload"] for e in det["events"] if e["type"] == type_]


def reply(srv, lid, text, channel="whatsapp"):
    content = {"text": text} if channel == "whatsapp" else {"subject": "Re: hi", "body": text}
    r = srv.post("/leads/%s/reply" % lid, {"channel": channel, "messageContent": content})
    assert_eq(r.status, 201, "reply (%r)" % (r,))
    mid = r.json()["messageId"]
    assert_eq(r.json(), {"messageId": mid}, "the reply's response")
    return mid


def gen_jobs(det):
    return [j for j in det["jobs"] if j["name"] == "generate-reply"]


def test_answer_comes_from_the_model_with_the_conversation(env, request):
    stub = Stub()
    url = start_stub(request, stub)
    srv = env.serve(**openai(url))
    lid = create_lead(srv, LEAD, phone="+351912345678")["id"]
    wait_until(lambda: len(env.sink()) == 1, 10, "welcome sent")
    welcome = outbound(details(srv, lid))[0]["channelMessage"]["text"]

    mid = reply(srv, lid, "How much does it cost?")
    det = wait_until(lambda: sent_answers(srv, lid), 15, "answer sent")
    a = answers(det)[0]
    assert_eq(a["channelMessage"]["text"], "Stub answer 1.", "the model's words")
    assert_eq(a["channelMessage"]["to"], "+351912345678", "to the lead")
    assert_eq(stub.violations, [], "requests as the API documents them")
    assert_eq(stub.turns(0), [("assistant", welcome), ("user", "How much does it cost?")],
              "first conversation")
    assert_eq([j["messageId"] for j in gen_jobs(det)], [mid], "the generate-reply job")
    assert_eq((gen_jobs(det)[0]["state"], gen_jobs(det)[0]["attemptsMade"]), ("completed", 1),
              "job done")
    assert a["id"] in {l["messageId"] for l in env.sink()}, "answer in the sink"

    # The next reply carries the whole conversation, oldest first.
    reply(srv, lid, "And can we book a demo?")
    det = wait_until(lambda: sent_answers(srv, lid, 2), 15, "second answer sent")
    assert_eq(stub.turns(1), [("assistant", welcome), ("user", "How much does it cost?"),
                              ("assistant", "Stub answer 1."),
                              ("user", "And can we book a demo?")], "second conversation")
    assert_eq(sorted(m["channelMessage"]["text"] for m in answers(det)),
              ["Stub answer 1.", "Stub answer 2."], "both answers")
    assert_eq(events(det, "ai_reply_failed"), [], "no fallback")
    assert_eq(stub.violations, [], "requests as the API documents them")

    # The key stays out of the details, the configuration dump and the log.
    det = details(srv, lid)
    assert KEY not in json.dumps(det)
    out = env.run_cli("--print-config", **openai(url))
    assert_eq(out.returncode, 0, "--print-config: %s" % out.stderr)
    assert KEY not in out.stdout + out.stderr, out.stdout
    srv.stop()
    assert KEY not in srv.log(), "key in the log"


def test_email_answer_is_the_body(env, request):
    stub = Stub()
    url = start_stub(request, stub)
    srv = env.serve(**openai(url))
    lid = create_lead(srv, LEAD, email="ana@example.com")["id"]
    reply(srv, lid, "Tell me more", channel="email")
    det = wait_until(lambda: sent_answers(srv, lid, channel="email"), 15, "email answer sent")
    cm = answers(det, "email")[0]["channelMessage"]
    assert_eq((cm["to"], cm["subject"], cm["body"]),
              ("ana@example.com", "RE: hi", "Stub answer 1."), "email answer")
    assert_eq(stub.turns(0)[-1], ("user", "Tell me more"), "the email's body")
    assert_eq(stub.violations, [], "request shape")
    srv.stop()


def test_throttling_honours_retry_after(env, request):
    stub = Stub([("error", 429, json.dumps({"error": {"message": "Rate limit reached",
                                                      "type": "requests"}}),
                  [("Retry-After", "2")])])
    url = start_stub(request, stub)
    srv = env.serve(**openai(url))
    lid = create_lead(srv, LEAD, phone="+351912345678")["id"]
    reply(srv, lid, "Hello?")
    det = wait_until(lambda: sent_answers(srv, lid), 20, "answer sent")
    assert_eq(answers(det)[0]["channelMessage"]["text"], "Stub answer 2.", "the second answer")
    times = [r[0] for r in stub.requests]
    assert_eq(len(times), 2, "model calls")
    assert times[1] - times[0] >= 1.9, "Retry-After: 2 honoured (gap %.3f s)" % (
        times[1] - times[0])
    g = gen_jobs(det)[0]
    assert_eq((g["state"], g["attemptsMade"]), ("completed", 2), "generate-reply job")
    assert_eq(events(det, "ai_reply_failed"), [], "no fallback")
    srv.stop()


def test_errors_timeouts_and_bad_json_are_retried_then_template(env, request):
    stub = Stub([("raw", 500, "<html>upstream down</html>"),
                 ("raw", 200, "{\"choices\": ["),
                 ("slow", 3)])
    url = start_stub(request, stub)
    srv = env.serve(**openai(url, AI_TIMEOUT_MS=700))
    lid = create_lead(srv, LEAD, phone="+351912345678")["id"]
    mid = reply(srv, lid, "What is the price?")
    det = wait_until(lambda: sent_answers(srv, lid), 20, "fallback answer sent")
    a = answers(det)[0]
    assert_eq(len(stub.requests), 3, "three attempts")
    assert_eq(a["channelMessage"].get("intent"), "pricing", "the template answer")
    f = events(det, "ai_reply_failed")
    assert_eq(len(f), 1, "one ai_reply_failed event")
    assert_eq((f[0]["fallback"], f[0]["code"], f[0]["messageId"], f[0]["answerId"]),
              ("template", "ETIMEDOUT", mid, a["id"]), "the event")
    g = gen_jobs(det)[0]
    assert_eq((g["state"], g["attemptsMade"]), ("completed", 3), "generate-reply job")
    srv.stop()


def test_refused_key_falls_back_at_once_and_none_means_no_answer(env, request):
    refuse = ("error", 401, json.dumps({"error": {"message": "Incorrect API key provided",
                                                  "code": "invalid_api_key"}}), [])
    stub = Stub([refuse, ("error", 404, json.dumps({"error": {
        "message": "The model does not exist"}}), [])])
    url = start_stub(request, stub)
    srv = env.serve(**openai(url))
    lid = create_lead(srv, LEAD, phone="+351912345678")["id"]
    reply(srv, lid, "hi")
    det = wait_until(lambda: sent_answers(srv, lid), 15, "template answer sent")
    f = events(det, "ai_reply_failed")
    assert_eq([(p["code"], p["fallback"]) for p in f], [("EPERMANENT", "template")], "at once")
    assert f[0]["error"].startswith("ai: HTTP 401 Incorrect API key"), f
    assert_eq(len(stub.requests), 1, "one call")
    assert_eq(srv.log().count("config: AI_API_KEY"), 1, "refused key logged")
    srv.stop()

    srv = env.serve(**openai(url, AI_FALLBACK="none"))
    lid = create_lead(srv, LEAD, phone="+351987654321")["id"]
    reply(srv, lid, "hi")
    det = wait_until(lambda: (lambda d: d if events(d, "ai_reply_failed") else None)(
        details(srv, lid)), 15, "failure recorded")
    assert_eq([(p["code"], p["fallback"]) for p in events(det, "ai_reply_failed")],
              [("EPERMANENT", "none")], "no fallback")
    assert_eq(answers(det), [], "no answer")
    assert_eq(gen_jobs(det)[0]["state"], "failed", "generate-reply job failed")
    srv.stop()


def test_stop_request_gets_no_answer(env, request):
    stub = Stub()
    url = start_stub(request, stub)
    srv = env.serve(**openai(url))
    lid = create_lead(srv, LEAD, phone="+351912345678")["id"]
    stop_id = reply(srv, lid, "STOP")
    det = details(srv, lid)
    assert_eq(events(det, "ai_reply_skipped"),
              [{"messageId": stop_id, "channel": "whatsapp", "reason": "stop_requested"}],
              "skipped, in the reply's transaction")
    assert_eq(gen_jobs(det), [], "no generate-reply job")
    assert_eq(sorted(det.get("optOut", {})), ["whatsapp"], "opted out of the channel")
    # While opted out, a later reply there gets no answer either (do not contact) ...
    reply(srv, lid, "Hello again")
    det = details(srv, lid)
    assert_eq([e["reason"] for e in events(det, "ai_reply_skipped")],
              ["stop_requested", "opted_out"], "no answer while opted out")
    assert_eq(gen_jobs(det), [], "still no generate-reply job")
    # ... until the operator opts the lead back in: then a reply is answered, and the model
    # never saw a request for the stop message alone.
    assert_eq(srv.request("DELETE", "/leads/%s/opt-out?channel=whatsapp" % lid).status, 200,
              "opt back in")
    reply(srv, lid, "Sorry, I changed my mind: what does it cost?")
    det = wait_until(lambda: sent_answers(srv, lid), 15, "answer sent")
    assert_eq(len(stub.requests), 1, "one model call")
    assert_eq(len(answers(det)), 1, "one answer")
    srv.stop()


def test_check_providers(env, request):
    stub = Stub()
    url = start_stub(request, stub)
    out = env.run_cli("check-providers", **openai(url))
    assert_eq(out.returncode, 0, "exit status: %s %s" % (out.stdout, out.stderr))
    lines = out.stdout.splitlines()
    assert_eq(len(lines), 3, "one line per provider: %r" % lines)
    assert_eq(lines[0].split(), ["email:", "mock", "(nothing", "to", "check)"], "email")
    assert_eq(lines[1].split(), ["whatsapp:", "mock", "(nothing", "to", "check)"], "whatsapp")
    assert lines[2].startswith("ai:") and ": ok (key accepted, model %s listed)" % MODEL in \
        lines[2], lines[2]
    assert_eq((stub.models, len(stub.requests)), (1, 0), "listed the models, generated nothing")

    out = env.run_cli("check-providers", **openai(url, AI_API_KEY="sk-wrong"))
    assert_eq(out.returncode, 1, "a refused key fails: %s" % out.stdout)
    assert "FAILED: EPERMANENT: ai: HTTP 401 Incorrect API key provided" in out.stdout, out.stdout
    assert "sk-wrong" not in out.stdout + out.stderr

    out = env.run_cli("check-providers", **openai("http://%s:%d/v1" % (HOST, free_port())))
    assert_eq(out.returncode, 1, "nothing listening: %s" % out.stdout)
    assert "FAILED: EPROVIDER" in out.stdout, out.stdout

    out = env.run_cli("check-providers")
    assert_eq(out.returncode, 0, "all mocks")
    assert_eq(out.stdout.count("mock (nothing to check)"), 3, out.stdout)
