# Pieces shared by the benchmark scripts that start a gateway nginx
# (run.sh, streams.sh); sourced, not run.  Expects die() and, once chosen,
# $mock_port.

# a free 127.0.0.1 port: random, below the kernel's ephemeral range (a
# port there can be any client socket's: bind() fails even though nothing
# listens, as a CI run after the test suite showed), used by no socket
pick_port() {
    local p i low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 11000 ] 2>/dev/null || low=32768
    for i in $(seq 1 50); do
        p=$((10000 + RANDOM % (low - 10000)))
        if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] \
           && [ "$p" != "${mock_port:-}" ]; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

# the two locations compared, for a server{} of the gateway's nginx.conf:
# llmroute to upstream "mockup" (+ $LOCATION_EXTRA), and the baseline, a
# plain proxy_pass with the same upstream pool and the same header work
gateway_locations() {
    cat <<LOCATIONS
        location /v1/chat/completions {
            llmroute on;
            ${LOCATION_EXTRA:-}
            proxy_pass \$llmroute_url;
            proxy_set_header Host \$llmroute_host;
            proxy_set_header Authorization \$llmroute_authorization;
            proxy_set_header Connection "";
        }

        location /plain/v1/chat/completions {
            proxy_pass http://mockup/v1/chat/completions;
            proxy_set_header Host mockup;
            proxy_set_header Authorization "Bearer sk-bench-provider-key";
            proxy_set_header Connection "";
        }
LOCATIONS
}
