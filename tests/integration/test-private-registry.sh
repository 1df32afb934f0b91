#!/usr/bin/env bash
# Private images from a real origin (issue 17, item 3): Debian's docker-registry
# (distribution v2) with `auth: htpasswd`, which asks for Basic credentials for
# the whole registry; skopeo pushes a generated image to it with the
# credentials. A real containerd (`ctr content fetch --user`) pulls it through
# layerd. The containerd hosts file names a registry where nothing listens
# (127.0.0.1:$PD): a pull that succeeds went through layerd. What is proven:
# - cold: layerd challenges, containerd answers with the pull's credentials,
#   layerd fetches from the registry with them and caches everything;
# - warm: no blob GET at the registry (its access log), at most one
#   authorization check (a HEAD) once auth_verdict_ttl is past;
# - a client without or with wrong credentials gets 401 and not one byte of
#   the private manifest or blobs (checked on the bytes received);
# - with the registry stopped, inside auth_outage_grace, the cached image is served.
# (A public and a private repository on one origin: test-private.sh, whose
# fixture has per-repository auth; distribution's htpasswd covers everything.)
. "$(dirname "$0")/lib.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "containerd needs root"
require_tools containerd ctr docker-registry skopeo setpriv curl /usr/bin/python3

USER_OK=alice PASS_OK='s3cret-Pa55' PASS_BAD='wrong-pass'
PO=$(free_port) PA=$(free_port) PD=$(free_port)
REG=127.0.0.1:$PD
DIAG_FILES=("$T/layerd.log" "$T/origin.log" "$T/skopeo.log" "$T/ctrd/log")

# ---- the origin: docker-registry with htpasswd ---------------------------------------------
# A bcrypt line from the standard library (crypt(3) gives "$2b$"; distribution's
# bcrypt takes any minor version), so no apache2-utils is needed.
htpasswd_line() {
  /usr/bin/python3 -W ignore -c \
    'import crypt, sys; print(sys.argv[1] + ":" + crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH)))' "$1" "$2"
}
htpasswd_line "$USER_OK" "$PASS_OK" >"$T/htpasswd"
check "the htpasswd line is bcrypt" grep -q "^$USER_OK:\\\$2b\\\$" "$T/htpasswd"
registry origin "$PO" "auth:
  htpasswd:
    realm: layerd-test
    path: $T/htpasswd"
check "the registry starts" wait_port "$PO"
anon_v2=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PO/v2/")
user_v2=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -u "$USER_OK:$PASS_OK" "http://127.0.0.1:$PO/v2/")
check "the registry asks for credentials ($anon_v2) and takes the bcrypt line ($user_v2)" \
  test "$anon_v2:$user_v2" = 401:200
oci_layout "$T/priv" --layers 262144,1048576 >"$T/priv.digests"
mapfile -t PRIV <"$T/priv.digests"
skopeo_copy --dest-creds "$USER_OK:$PASS_OK" --dest-tls-verify=false --preserve-digests \
  "oci:$T/priv:v1" "docker://127.0.0.1:$PO/team/app:v1"
checkd "skopeo pushes the image with the credentials" test $? = 0

# ---- layerd, and containerd pointed at it ----------------------------------------------
write_spec "$T/spec.yaml" "$PA" "$T/cache" <<YAML
registries:
  "$REG":
    origin: http://127.0.0.1:$PO
    auth_verdict_ttl: 1s
YAML
layerd_serve "$T/layerd.log" "$T/spec.yaml"
check "layerd starts" wait_port "$PA"
layerd_hosts "$T/hosts" "$REG"
containerd_start "$T/ctrd"
check "containerd starts" wait_for 20 ctrd_up

# blob_gets: the registry's blob GETs so far (its access log); checks: its manifest and blob requests.
blob_gets() { requests "$T/origin.log" 0 | grep -c '"GET /v2/team/app/blobs/'; }
checks_count() { requests "$T/origin.log" 0 | grep -cE '"(GET|HEAD) /v2/team/app/(manifests|blobs)/'; }

# ---- cold, warm, other clients (lib.sh) ----------------------------------------------------
private_cold "the registry"
private_warm "the registry"
private_others 3
checkd "no credential in layerd's log or cache directory" \
  eval 'absent -r -e "$PASS_OK" -e "$PASS_BAD" "$T/layerd.log" "$T/cache" && grep -q auth=passthrough "$T/layerd.log"'

# ---- the registry down, inside auth_outage_grace ---------------------------------------------
stop "$REGISTRY_PID"
check "the registry is stopped" refuses "$PO"
private_grace "$T/layerd.log" 3

stop "$LAYERD_PID"
finish
