#!/bin/sh
# Regenerates bpf/include/vmlinux.h from a kernel's BTF (default: the running kernel).
# CO-RE relocations make the result portable: the header only has to name the types and
# fields the programs use; libbpf fixes offsets against the target kernel at load time.
set -eu
btf="${1:-/sys/kernel/btf/vmlinux}"
out="$(dirname "$0")/../bpf/include/vmlinux.h"
bpftool btf dump file "$btf" format c > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out from $btf ($(wc -l < "$out") lines)"
