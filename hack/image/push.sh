#!/usr/bin/env bash
# Pushes the image `npm run image` built (the OCI layout dist/image, described by
# dist/image-build.json) to a registry BY DIGEST, then tags it, and checks that the registry
# serves the very manifest whose digest install.yaml pins. skopeo (Debian package) does the copy;
# --preserve-digests makes it fail rather than re-compress or convert anything.
#
#   hack/image/push.sh [RECORD]            # RECORD default dist/image-build.json
# Environment: REPOSITORY (default: the record's), SKOPEO_DEST_FLAGS (e.g. "--dest-creds u:p"
# or "--dest-tls-verify=false"), SKOPEO_SRC_FLAGS (for the inspect, e.g. "--tls-verify=false").
set -euo pipefail
record="${1:-dist/image-build.json}"
field() { node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); process.stdout.write(String(r[process.argv[2]]))' "$record" "$1"; }
layout="$(field layout)"
tag="$(field tag)"
digest="$(field digest)"
repo="${REPOSITORY:-$(field repository)}"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "push.sh: $record: bad digest '$digest'" >&2; exit 1; }
# shellcheck disable=SC2086 # the flag variables are lists of words
skopeo copy --preserve-digests ${SKOPEO_DEST_FLAGS:-} "oci:$layout:$tag" "docker://$repo@$digest" >&2
# shellcheck disable=SC2086
skopeo copy --preserve-digests ${SKOPEO_DEST_FLAGS:-} "oci:$layout:$tag" "docker://$repo:$tag" >&2
# shellcheck disable=SC2086
got="sha256:$(skopeo inspect ${SKOPEO_SRC_FLAGS:-} --raw "docker://$repo@$digest" | sha256sum | cut -d' ' -f1)"
if [[ "$got" != "$digest" ]]; then
  echo "push.sh: the registry serves $got for $repo@$digest" >&2
  exit 1
fi
echo "$repo@$digest"
