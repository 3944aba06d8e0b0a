#!/usr/bin/env bash
# npm run test:asan — builds the native addon with AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/Release/node_kvm.node and runs the KVM test suite against it.
#
# How, and why this way:
# - A direct g++ over native/*.cc (the flags binding.gyp uses, plus the sanitizers): it works offline, needs no
#   second node-gyp build folder, and only node_api.h (node's own headers, or node-api-headers) is needed.
# - node itself is not instrumented, so the ASan runtime must be loaded first: LD_PRELOAD=libasan.so.
# - ASAN_OPTIONS:
#     detect_leaks=0             node and V8 keep allocations alive until exit by design; LeakSanitizer would
#                                report thousands of uninstrumented "leaks" from them. Leaks of ours are covered
#                                by test/kvm/resources.test.ts (fd and RSS growth over 10,000 VM lifecycles).
#     allow_user_segv_handler=1  node/V8 install their own SIGSEGV handler (WebAssembly trap handling).
#     handle_segv=0              ...and a real wild access in the addon still kills the process, which fails.
#     log_path=...               every report goes to a file as well, so one from a child process (the CLI
#                                tests, the kill -9 test's VMM) fails this script even if its test tolerated
#                                the child's death.
#   halt_on_error stays on (ASan's default): the first error aborts. UBSan is made fatal the same way.
# - The script fails if the build fails, if vitest fails, or if any sanitizer report was written.
#
# `bash scripts/test-asan.sh --selftest` proves the detection path instead: it builds a tiny addon with a
# deliberate heap overflow and checks that loading it under the same options fails with an ASan report.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=build-asan/Release
LOGS=build-asan/logs
mkdir -p "$OUT" "$LOGS"
rm -f "$LOGS"/*

CXX=${CXX:-g++}
LIBASAN=$("$CXX" -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
  echo "test-asan: $CXX has no libasan.so (install the compiler's sanitizer runtime, e.g. libasan8)" >&2
  exit 1
fi

# node_api.h: node's own headers (as installed with node, or node-gyp's cache), else node-api-headers.
NODE_INC=""
for dir in \
  "$(dirname "$(dirname "$(command -v node)")")/include/node" \
  /usr/include/node /usr/local/include/node \
  "${HOME:-/root}/.cache/node-gyp/$(node -p 'process.versions.node')/include/node" \
  node_modules/node-api-headers/include; do
  if [ -f "$dir/node_api.h" ]; then
    NODE_INC=$dir
    break
  fi
done
if [ -z "$NODE_INC" ]; then
  echo "test-asan: node_api.h not found (install node's headers or run npm install)" >&2
  exit 1
fi
ADDON_API=$(node -p "require('node-addon-api').include_dir")
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
ASAN_OPTS="detect_leaks=0:allow_user_segv_handler=1:handle_segv=0:halt_on_error=1:abort_on_error=0:print_summary=1"

if [ "${1:-}" = "--selftest" ]; then
  dir=build-asan/selftest
  mkdir -p "$dir"
  rm -f "$dir"/log.*
  printf '%s\n' \
    '#include <node_api.h>' \
    '#include <cstdlib>' \
    '// Loading this addon writes one byte past an 8-byte heap block.' \
    'static napi_value Init(napi_env env, napi_value exports) {' \
    '  volatile char* p = static_cast<char*>(malloc(8));' \
    '  p[8] = 1;' \
    '  free(const_cast<char*>(p));' \
    '  return exports;' \
    '}' \
    'NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)' >"$dir/overflow.cc"
  # shellcheck disable=SC2086
  "$CXX" -shared -fPIC -g $SAN -I"$NODE_INC" "$dir/overflow.cc" -o "$dir/overflow.node"
  if env LD_PRELOAD="$LIBASAN" ASAN_OPTIONS="$ASAN_OPTS:log_path=$PWD/$dir/log" \
    node -e "require('./$dir/overflow.node')" 2>/dev/null; then
    echo "test-asan --selftest: FAILED: the overflowing addon loaded without an error" >&2
    exit 1
  fi
  if ! grep -q "heap-buffer-overflow" "$dir"/log.* 2>/dev/null; then
    echo "test-asan --selftest: FAILED: no AddressSanitizer report was written" >&2
    exit 1
  fi
  echo "test-asan --selftest: ok (the deliberate heap overflow was caught and reported)"
  exit 0
fi

echo "== building $OUT/node_kvm.node with -fsanitize=address,undefined ($NODE_INC)"
pids=()
objs=()
for src in native/*.cc; do
  obj="$OUT/$(basename "${src%.cc}").o"
  objs+=("$obj")
  # shellcheck disable=SC2086
  "$CXX" -std=c++17 -fPIC -pthread -O1 -g $SAN \
    -DNAPI_VERSION=9 -DNODE_ADDON_API_DISABLE_DEPRECATED -DNAPI_CPP_EXCEPTIONS \
    -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
    -I"$NODE_INC" -I"$ADDON_API" -c "$src" -o "$obj" &
  pids+=($!)
  # Two compiles at a time: this is a small host shared with other work.
  if [ "${#pids[@]}" -ge 2 ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
# shellcheck disable=SC2086
"$CXX" -shared -pthread $SAN -o "$OUT/node_kvm.node" "${objs[@]}"

echo "== building the TypeScript (the VM thread runs the compiled dist/ copy) and guest payloads"
npm run --silent build:ts
npm run --silent build:payloads

# LD_PRELOAD must reach every node process (vitest's forks, the CLI and VMM children tests spawn: they load the
# ASan-built addon, which needs the runtime first), but not the other programs tests run (dd, ip, mount...):
# uninstrumented tools trip over ASan's strict allocator (e.g. dd's aligned_alloc(4096, 1) is an ASan error).
# Every node process imports this module first (NODE_OPTIONS=--import), which drops LD_PRELOAD from the
# environment of a child unless it is node or its arguments run node (script -c "node ...", sh -c "node ...").
cat >build-asan/asan-children.mjs <<'JS'
import { createRequire, syncBuiltinESMExports } from 'node:module';
const cp = createRequire(import.meta.url)('node:child_process');
const runsNode = (s) => typeof s === 'string' && (s.includes(process.execPath) || /(^|[\s/])node(\s|$)/.test(s));
const isNode = (file, rest) => runsNode(file) || (Array.isArray(rest[0]) && rest[0].some(runsNode));
const clean = (options) => {
  const env = { ...(options.env ?? process.env) };
  delete env.LD_PRELOAD;
  return { ...options, env };
};
const wrap = (original) =>
  function (file, ...rest) {
    if (isNode(file, rest)) return original.call(this, file, ...rest);
    const i = Array.isArray(rest[0]) ? 1 : 0;
    if (rest[i] === undefined || rest[i] === null) rest[i] = {};
    else if (typeof rest[i] === 'function') rest.splice(i, 0, {});
    rest[i] = clean(rest[i]);
    return original.call(this, file, ...rest);
  };
for (const name of ['spawn', 'spawnSync', 'execFile', 'execFileSync', 'exec', 'execSync']) cp[name] = wrap(cp[name]);
syncBuiltinESMExports();
JS

echo "== vitest run test/kvm under ASan + UBSan"
status=0
env \
  NODE_OPTIONS="--import $PWD/build-asan/asan-children.mjs ${NODE_OPTIONS:-}" \
  NODE_KVM_ADDON="$OUT/node_kvm.node" \
  NODE_KVM_ASAN=1 \
  LD_PRELOAD="$LIBASAN" \
  ASAN_OPTIONS="$ASAN_OPTS:log_path=$PWD/$LOGS/asan" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$PWD/$LOGS/ubsan" \
  node node_modules/vitest/vitest.mjs run test/kvm "$@" || status=$?

reports=$(find "$LOGS" -type f | sort)
if [ -n "$reports" ]; then
  echo "== sanitizer reports:" >&2
  for r in $reports; do
    echo "--- $r" >&2
    cat "$r" >&2
  done
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "test-asan: the KVM tests failed under ASan (exit $status)" >&2
  exit "$status"
fi
echo "test-asan: KVM suite clean under AddressSanitizer + UndefinedBehaviorSanitizer"
