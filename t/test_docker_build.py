"""docker/build-module.sh, natively: the module built from nginx source with
--with-compat (what the Docker image does against the official image's
nginx) must be loaded by this machine's /usr/sbin/nginx.

The source is NGINX_SOURCE (a source dir, tarball or URL) when set;
otherwise the upstream tarball of Debian's nginx source package of the
installed version, fetched with `apt-get source --download-only` through a
private sources.list (deb-src entries for the same mirrors as
/etc/apt/sources.list.d/debian.sources): nothing on the system is changed.
It is cached in build/nginx-src/.  The test skips, with the reason, when
the source cannot be obtained (no network, no apt).
"""

import glob
import os
import re
import shutil
import subprocess

import pytest

from llmroute_harness import NGINX_BINARY, REPO_ROOT, get

CACHE = REPO_ROOT / "build" / "nginx-src"
SCRIPT = REPO_ROOT / "docker" / "build-module.sh"


def installed_version():
    p = subprocess.run([NGINX_BINARY, "-v"], stderr=subprocess.PIPE,
                       stdout=subprocess.PIPE)
    m = re.search(r"nginx/(\d+\.\d+\.\d+)", p.stderr.decode())
    return m.group(1) if m else None


def deb_src_list():
    """deb-src lines for the mirrors, suites and keyring of debian.sources"""
    lines = []
    path = "/etc/apt/sources.list.d/debian.sources"
    if not os.path.exists(path):
        return lines
    for stanza in open(path).read().split("\n\n"):
        f = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                f[k.strip()] = v.strip()
        if "deb" not in f.get("Types", "").split() or "URIs" not in f:
            continue
        opt = ("[signed-by=%s] " % f["Signed-By"]) if "Signed-By" in f \
            else ""
        for suite in f.get("Suites", "").split():
            lines.append("deb-src %s%s %s %s" % (
                opt, f["URIs"], suite, f.get("Components", "main")))
    return lines


def fetch_debian_source(version):
    """Path of nginx_VERSION.orig.tar.gz, or (None, reason)."""
    found = glob.glob(str(CACHE / ("nginx_%s.orig.tar.gz" % version)))
    if found:
        return found[0], None
    if shutil.which("apt-get") is None:
        return None, "apt-get not available"
    srcs = deb_src_list()
    if not srcs:
        return None, "no /etc/apt/sources.list.d/debian.sources to mirror"
    (CACHE / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (CACHE / "sources.list").write_text("\n".join(srcs) + "\n")
    opts = ["-o", "Dir::Etc::SourceList=%s" % (CACHE / "sources.list"),
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "Dir::State::Lists=%s" % (CACHE / "lists"),
            "-o", "Debug::NoLocking=1"]
    p = subprocess.run(["apt-get", *opts, "update"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300)
    if p.returncode != 0:
        return None, "apt-get update (deb-src) failed: %s" % \
            p.stdout.decode()[-300:]
    p = subprocess.run(["apt-cache", *opts, "showsrc", "nginx"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    versions = [v for v in re.findall(r"(?m)^Version: (\S+)",
                                      p.stdout.decode())
                if v.startswith(version + "-")]
    if not versions:
        return None, "no nginx %s source package on the mirrors" % version
    # the newest revision first; its files may be missing from the mirror
    # (BUILD.md: 1.22.1-9+deb12u9 is there when deb12u11 is not)
    for v in sorted(set(versions), reverse=True):
        p = subprocess.run(["apt-get", *opts, "source", "--download-only",
                            "nginx=%s" % v], cwd=CACHE,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
        found = glob.glob(str(CACHE / ("nginx_%s.orig.tar.gz" % version)))
        if p.returncode == 0 and found:
            return found[0], None
    return None, "apt-get source nginx=%s failed: %s" % (
        versions, p.stdout.decode()[-300:])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    version = installed_version()
    if version is None:
        pytest.skip("%s not runnable" % NGINX_BINARY)
    source = os.environ.get("NGINX_SOURCE")
    if not source:
        source, reason = fetch_debian_source(version)
        if source is None:
            pytest.skip("cannot get nginx %s source: %s" % (version, reason))
    out = tmp_path_factory.mktemp("module")
    p = subprocess.run([str(SCRIPT), source, str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=900)
    assert p.returncode == 0, p.stdout.decode()[-3000:]
    assert ("for nginx %s" % version) in p.stdout.decode()
    so = out / "ngx_http_llmroute_module.so"
    assert so.exists()
    return so


HTTP = """
llmroute_zone llmroute:1m;
llmroute_provider local http://127.0.0.1:9/v1/chat/completions;
llmroute_model local compat-check tier=simple input=0.10 output=0.40;
server {
    listen 127.0.0.1:%%PORT%%;
    location = /v1/models { llmroute_models; }
    location /v1/chat/completions {
        llmroute on;
        proxy_pass $llmroute_url;
    }
}
"""


def test_debian_nginx_loads_the_compat_build(built, nginx):
    ngx = nginx(HTTP, start=False, module=built)
    rc, err = ngx.check()
    assert rc == 0, err
    assert "not binary compatible" not in err
    ngx.start()
    r = get(ngx.port, "/v1/models")
    assert r.status == 200
    assert b"compat-check" in r.body


def test_script_refuses_a_non_source_dir(tmp_path):
    p = subprocess.run([str(SCRIPT), str(tmp_path), str(tmp_path / "o")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.returncode != 0
    assert b"not an nginx source tree" in p.stdout
