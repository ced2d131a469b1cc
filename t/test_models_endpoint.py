"""GET /v1/models (`llmroute_models;`): the catalog in OpenAI's list
format."""

from llmroute_harness import assert_no_keys, get, request

CATALOG_IDS = {"small-1", "mid-1", "big-1"}


def models(resp):
    assert resp.status == 200, resp
    ctype = (resp.header("Content-Type") or "").split(";")[0].strip()
    assert ctype == "application/json", resp.headers
    assert resp.header("Content-Length") == str(len(resp.body)) or \
        resp.header("Transfer-Encoding") == "chunked", resp.headers
    assert_no_keys(resp)
    doc = resp.json()
    assert doc["object"] == "list", doc
    assert isinstance(doc["data"], list), doc
    for m in doc["data"]:
        assert m["object"] == "model", m
        assert isinstance(m["id"], str) and m["id"], m
        assert isinstance(m["owned_by"], str) and m["owned_by"], m
    return doc["data"]


def test_models_lists_catalog(routed):
    r = routed()
    data = models(get(r.port, "/v1/models"))
    ids = {m["id"] for m in data}
    assert len(ids) == len(data), data          # each model listed once
    assert CATALOG_IDS <= ids, ids
    # nothing else but other names the router accepts for them
    assert ids - CATALOG_IDS <= {
        "auto", "auto:simple", "auto:moderate", "auto:complex",
        "cheap/small-1", "premium/mid-1", "premium/big-1"}, ids
    assert r.provider_requests() == []        # served by nginx itself


def test_models_follows_catalog(routed):
    catalog = """
    llmroute_zone llmroute:1m;
    llmroute_provider cheap   %%CHEAP_URL%% key_env=TEST_KEY_A;
    llmroute_provider premium %%PREMIUM_URL%% key_env=TEST_KEY_B;
    llmroute_model cheap   tiny-2.5 tier=simple   input=0.05 output=0.10 context=8k;
    llmroute_model premium mid-1    tier=moderate input=1.00 output=4.00 context=128k;
"""
    r = routed(catalog=catalog)
    ids = {m["id"] for m in models(get(r.port, "/v1/models"))}
    assert {"tiny-2.5", "mid-1"} <= ids, ids
    assert not {"small-1", "big-1"} & ids, ids


def test_models_head(routed):
    r = routed()
    resp = request(r.port, "HEAD", "/v1/models")
    assert resp.status == 200, resp
    assert resp.body == b""


def test_read_only_endpoints_refuse_other_methods(routed):
    """/v1/models and /metrics answer GET and HEAD only (405 otherwise, the
    body discarded); ?format=json is honoured by /metrics."""
    r = routed(server_extra="location = /metrics { llmroute_metrics; }")
    for path in ("/v1/models", "/metrics", "/metrics?format=json"):
        assert request(r.port, "POST", path, b"{}").status == 405, path
        assert request(r.port, "HEAD", path).status == 200, path
    assert get(r.port, "/metrics?format=json").json()
    assert "# TYPE llmroute_requests_total counter" in get(
        r.port, "/metrics").text()
