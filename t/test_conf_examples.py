"""The example configurations in conf.d/examples/ pass `nginx -t` with the
module, and their routing maps (regions, client keys) give the values they
document.

The shipped files name real hosts and real paths; to check them here, on a
machine without DNS and without root, each one is installed into a private
prefix laid out as in the Docker image (nginx.conf + llmroute/*.conf, see
conf.d/examples/README.md) with these substitutions, and nothing else:

  * `load_module modules/ngx_http_llmroute_module.so;` -> the module built
    in build/ (LLMROUTE_MODULE);
  * `server HOST:443` inside upstream{} -> `server 127.0.0.1:PORT` (nginx
    resolves upstream servers at load time and there is no DNS here);
  * `listen PORT;` -> `listen 127.0.0.1:FREE_PORT;` (nginx -t binds);
  * absolute `/tmp/` paths (pid, temp dirs) -> PREFIX/tmp/.
Provider keys are set to dummy values in nginx's environment.
"""

import re
import shutil
import subprocess

import pytest

from llmroute_harness import (
    MODULE_PATH, NGINX_BINARY, REPO_ROOT, free_port, get)

EXAMPLES = REPO_ROOT / "conf.d" / "examples"

KEY_VARS = ["OPENAI_API_KEY", "OPENAI_EU_API_KEY", "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "DASHSCOPE_API_KEY",
            "MISTRAL_API_KEY", "GROQ_API_KEY", "TOGETHER_API_KEY",
            "FIREWORKS_API_KEY", "OPENROUTER_API_KEY", "MOONSHOT_API_KEY",
            "ZHIPU_API_KEY", "MINIMAX_API_KEY"]
DUMMY_KEYS = {v: "sk-dummy-" + v.lower() for v in KEY_VARS}

INCLUDES = ["providers.conf", "models.conf", "regions.conf", "clients.conf",
            "anthropic.conf"]


def localize(text, prefix, upstream_port):
    """The documented substitutions (module docstring)."""
    # the example's own /tmp paths first: the repository itself (and so
    # the module's path) may live under /tmp
    text = text.replace(" /tmp/", " %s/tmp/" % prefix)
    text = text.replace("load_module modules/ngx_http_llmroute_module.so;",
                        "load_module %s;" % MODULE_PATH)

    def upstream(m):
        return re.sub(r"(?m)^(\s*server\s+)[A-Za-z0-9.-]+:443\b",
                      r"\g<1>127.0.0.1:%d" % upstream_port, m.group(0))

    text = re.sub(r"(?ms)^\s*upstream\s+\S+\s*\{.*?\}", upstream, text)
    text = re.sub(r"(?m)^(\s*listen\s+)\d+\s*;",
                  lambda m: "%s127.0.0.1:%d;" % (m.group(1), free_port()),
                  text)
    return text


def install(tmp_path, main_conf):
    """PREFIX/nginx.conf + PREFIX/llmroute/*.conf, localized."""
    prefix = tmp_path / "prefix"
    (prefix / "llmroute").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    (prefix / "logs").mkdir()
    port = free_port()
    for name in INCLUDES:
        (prefix / "llmroute" / name).write_text(
            localize((EXAMPLES / name).read_text(), prefix, port))
    shutil.copy(REPO_ROOT / "conf.d" / "log-json.conf",
                prefix / "llmroute" / "log-json.conf")
    conf = prefix / "nginx.conf"
    conf.write_text(localize((EXAMPLES / main_conf).read_text(), prefix,
                             port))
    return prefix, conf


def nginx_t(prefix, conf, env_keys):
    env = {"PATH": "/usr/sbin:/usr/bin:/bin"}
    env.update(env_keys)
    p = subprocess.run([NGINX_BINARY, "-t", "-p", str(prefix) + "/",
                        "-c", str(conf), "-e", "stderr"],
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace")


@pytest.fixture(autouse=True)
def module_built():
    if not MODULE_PATH.exists():
        pytest.fail("module not built: %s (run ./build.sh)" % MODULE_PATH,
                    pytrace=False)


@pytest.mark.parametrize("main_conf", ["nginx-minimal.conf",
                                       "nginx-gateway.conf",
                                       "nginx-claude-code.conf"])
def test_example_passes_nginx_t(tmp_path, main_conf):
    prefix, conf = install(tmp_path, main_conf)
    rc, out = nginx_t(prefix, conf, DUMMY_KEYS)
    assert rc == 0, out
    assert "test is successful" in out, out
    assert "[emerg]" not in out and "[warn]" not in out, out


def test_gateway_without_a_key_fails_with_its_name(tmp_path):
    """docs/deploy.md troubleshooting: a missing key fails nginx -t and the
    message names the variable and the env directive."""
    prefix, conf = install(tmp_path, "nginx-gateway.conf")
    keys = dict(DUMMY_KEYS)
    del keys["MISTRAL_API_KEY"]
    rc, out = nginx_t(prefix, conf, keys)
    assert rc != 0, out
    assert "MISTRAL_API_KEY" in out and "env MISTRAL_API_KEY;" in out, out
    assert "providers.conf:" in out, out


def test_catalog_covers_the_ten_providers():
    providers = re.findall(r"(?m)^llmroute_provider\s+(\S+)",
                           (EXAMPLES / "providers.conf").read_text())
    assert set(providers) >= {
        "openai", "anthropic", "gemini", "deepseek", "qwen", "mistral",
        "groq", "together", "fireworks", "openrouter"}, providers
    models = (EXAMPLES / "models.conf").read_text()
    for p in providers:
        assert re.search(r"(?m)^llmroute_model\s+%s\s" % re.escape(p),
                         models), "no model for provider %s" % p


def test_every_provider_has_regions_and_an_upstream():
    """Without regions= a provider serves every region, EU included."""
    text = (EXAMPLES / "providers.conf").read_text()
    upstreams = set(re.findall(r"(?m)^upstream\s+(\S+)\s*\{", text))
    for m in re.finditer(r"(?ms)^llmroute_provider\s+(\S+)\s+(\S+)(.*?);",
                         text):
        name, url, rest = m.groups()
        assert "regions=" in rest, name
        host = re.match(r"https://([^/]+)/", url).group(1)
        assert host in upstreams, (name, host)


def test_anthropic_providers_of_six_vendors():
    """anthropic.conf: Anthropic and the five cheap vendors, every one of
    format=anthropic at its documented .../v1/messages, each with a dated
    model group (checked like models.conf below)."""
    text = (EXAMPLES / "anthropic.conf").read_text()
    provs = dict(re.findall(
        r"(?m)^llmroute_provider\s+(\S+)\s+(\S+)[^;]*format=anthropic", text))
    assert set(provs) == {"anthropic", "deepseek", "moonshot", "zhipu",
                          "minimax", "qwen"}, provs
    assert all(u.endswith("/v1/messages") for u in provs.values()), provs
    models = text[text.index("# Anthropic -- as of"):]
    for p in provs:
        assert re.search(r"(?m)^llmroute_model\s+%s\s" % p, models), p
    for group in re.split(r"\n\s*\n", models):
        if "llmroute_model" in group:
            assert re.search(r"as of [A-Z][a-z]+ \d{4}", group), group
            assert "https://" in group, group


def test_model_groups_cite_date_and_source():
    """Each provider's model lines follow a comment saying as of when and
    from which pricing page."""
    text = (EXAMPLES / "models.conf").read_text()
    for group in re.split(r"\n\s*\n", text):
        if "llmroute_model" not in group:
            continue
        head = "\n".join(line for line in group.splitlines()
                         if line.startswith("#"))
        assert re.search(r"as of [A-Z][a-z]+ \d{4}", head), group
        assert "https://" in head, group
        for mid in re.findall(r"(?m)^llmroute_model\s+\S+\s+(\S+)", group):
            assert not mid.startswith("auto"), mid


# ------------------------------------------------------ maps, with plain nginx

MAPS_SERVER = """
map_hash_bucket_size 128;
include %(dir)s/regions.conf;
include %(dir)s/clients.conf;
server {
    listen 127.0.0.1:%%%%PORT%%%%;
    location = /region { return 200 "[$llm_region]"; }
    location = /client { return 200 "[$llm_client]"; }
}
"""


@pytest.fixture
def maps(nginx, tmp_path):
    """Plain nginx with regions.conf and clients.conf; the geo block reads
    ?addr= instead of the client address (127.0.0.1 in tests)."""
    d = tmp_path / "maps"
    d.mkdir()
    regions = (EXAMPLES / "regions.conf").read_text()
    assert "geo $llm_region_net {" in regions
    (d / "regions.conf").write_text(regions.replace(
        "geo $llm_region_net {", "geo $arg_addr $llm_region_net {"))
    shutil.copy(EXAMPLES / "clients.conf", d / "clients.conf")
    return nginx(MAPS_SERVER % {"dir": d}, module=None)


@pytest.mark.parametrize("addr,header,region", [
    ("10.10.1.2", None, "eu"),
    ("10.10.1.2", "us", "eu"),          # EU networks stay in the EU
    ("192.0.2.7", "ap", "eu"),
    ("10.20.0.1", None, "us"),
    ("10.20.0.1", "EU", "eu"),          # others may ask for a region
    ("10.30.0.1", "", "ap"),
    ("203.0.113.5", None, ""),          # unknown network: any provider
    ("203.0.113.5", "us-east-1", "us"),
])
def test_region_map(maps, addr, header, region):
    headers = {} if header is None else {"X-LLM-Region": header}
    r = get(maps.port, "/region?addr=" + addr, headers=headers)
    assert r.status == 200
    assert r.body.decode() == "[%s]" % region


@pytest.mark.parametrize("auth,team", [
    ("Bearer sk-llmr-search-7f3c9a1e5b2d4c6f8a0e1b3d", "team-search"),
    ("Bearer sk-llmr-batch-9e8d7c6b5a4f3e2d1c0b9a8f", "team-batch"),
    ("Bearer sk-llmr-search-wrong", ""),
    (None, ""),
])
def test_client_map(maps, auth, team):
    headers = {} if auth is None else {"Authorization": auth}
    r = get(maps.port, "/client", headers=headers)
    assert r.body.decode() == "[%s]" % team
