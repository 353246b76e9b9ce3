#!/usr/bin/env bash
# The GPU check: builds gpu/ on its own (tests/gpu as a standalone CMake project: no
# libwebsockets, LMDB or jansson needed), checks the parity test's comparison, runs
# every kind's parity test on every GPU against the CPU, times the kernels, and
# writes a report under $OUT (./device-report when OUT is unset):
#   report.txt   what a person reads: the device, each kind's parity, the timings
#   report.json  the same for programs: {"device", "result", "parity": [...], "bench": [...], "steps": [...]}
#   parity.json, bench.json, build.log, run.log   the raw material
# Every step runs under `timeout`, within KILN_CHECK_SECONDS (default 450) in all,
# so that the whole check ends in under 8 minutes on an H100.
#
# Exit status: 0 when every kind agreed with the CPU on every GPU, 1 when parity
# failed or a step broke, 77 when there was no GPU to compare (everything skipped;
# the report says so). Runs the same without a GPU: it builds (nvcc compiles the
# kernels when it is installed), then skips the GPU steps.
#
# Environment: OUT, KILN_CHECK_SECONDS, KILN_CHECK_BUILD (build folder, default
# build-gpu-tests), CUDA_ARCH (default: the GPU's compute capability, else
# "80-real;90-real;90-virtual").
set -u

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-./device-report}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
build=${KILN_CHECK_BUILD:-$root/build-gpu-tests}

# The GPU machine has no Debian -dev packages. Where the checkout carries some as
# .deb files in .gpudeps/ (image.relief's decoders: see tests/gpu/README.md), they
# are unpacked into a private prefix that CMake's pkg-config and the loader use.
if compgen -G "$root/.gpudeps/*.deb" >/dev/null; then
        deps=$(mktemp -d)
        for f in "$root"/.gpudeps/*.deb; do dpkg -x "$f" "$deps"; done
        export PKG_CONFIG_SYSROOT_DIR=$deps
        export PKG_CONFIG_PATH=$deps/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/usr/share/pkgconfig
        export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
# cuBLAS (vec.search's products) is loaded by name at run time (cuda_cublas.c).
# Where the loader does not know it, a copy the image holds elsewhere (the CUDA
# toolkit's lib64, a Python wheel's nvidia/.../lib) is put on its path.
cublas_dir=""
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.1[23] '; then
        lib=$(timeout 30 find /usr/local /opt /usr/lib -name 'libcublas.so.1[23]' 2>/dev/null | sort -r | head -n 1)
        if [[ -n $lib ]]; then
                cublas_dir=$(dirname "$lib")
                export LD_LIBRARY_PATH=$cublas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        fi
fi
total=${KILN_CHECK_SECONDS:-450}
log=$out/run.log
: >"$log"
steps=()       # "name status seconds" lines for the report
result=passed  # passed | failed | skipped

say() { printf '%s\n' "$*" | tee -a "$log"; }

# The seconds a step may take: its own cap, or what is left of the total less a
# margin for the report.
budget() {
        local cap=$1 left=$((total - SECONDS - 20))
        if ((left < cap)); then cap=$left; fi
        echo "$cap"
}

# step NAME CAP COMMAND...: runs COMMAND under timeout, appending to the log;
# sets $rc (124 on timeout, 125 when no time was left).
step() {
        local name=$1 cap
        cap=$(budget "$2")
        shift 2
        local t0=$SECONDS
        if ((cap < 5)); then
                say "== $name: not run, the check's time (${total}s) is used up"
                rc=125
        else
                say "== $name (at most ${cap}s): $*"
                timeout --kill-after=10 "$cap" "$@" >>"$log" 2>&1
                rc=$?
                ((rc == 124 || rc == 137)) && say "   $name stopped after ${cap}s"
        fi
        steps+=("$name $rc $((SECONDS - t0))")
        say "   $name: exit $rc after $((SECONDS - t0))s"
}

say "kiln GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm)"
[[ -n $cublas_dir ]] && say "cuBLAS: not on the loader's path; using $cublas_dir"
gpu_name=""
gpu_cc=""
if command -v nvidia-smi >/dev/null 2>&1; then
        q=$(timeout 30 nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
        if [[ -n $q ]]; then
                say "GPU: $q"
                gpu_name=${q%%,*}
                gpu_cc=$(echo "$q" | cut -d, -f2 | tr -d ' .')
        fi
fi
[[ -z $gpu_name ]] && say "GPU: none found (no nvidia-smi, or it lists no device): the GPU steps will be skipped"
command -v nvcc >/dev/null 2>&1 && say "nvcc: $(nvcc --version | tail -n 1)" || say "nvcc: not installed (no CUDA plugin is built)"

arch=${CUDA_ARCH:-}
if [[ -z $arch ]]; then
        if [[ $gpu_cc =~ ^[0-9]+$ ]]; then arch=$gpu_cc; else arch="80-real;90-real;90-virtual"; fi
fi
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)

step configure 120 cmake -S "$root/tests/gpu" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
        "-DCMAKE_CUDA_ARCHITECTURES=$arch"
configured=$rc
built=1
if ((configured == 0)); then
        step build 240 cmake --build "$build" -j "$(nproc 2>/dev/null || echo 4)"
        built=$rc
fi
cp "$log" "$out/build.log" 2>/dev/null
if ((built != 0)); then
        say "the build failed: see build.log"
        result=failed
fi

parity_rc=-1
if ((built == 0)); then
        step self-test 30 "$build/test_backend_ops" --self-test
        ((rc != 0)) && result=failed
        export KILN_PLUGIN_DIR=$build/gpu/cuda
        step parity 120 "$build/test_backend_ops" --json "$out/parity.json"
        parity_rc=$rc
        case $parity_rc in
        0) ;;
        77) [[ $result == passed ]] && result=skipped ;;
        *) result=failed ;;
        esac
        if [[ $parity_rc == 0 || ($parity_rc == 1 && -n $gpu_name) ]]; then
                # vec.search again with cuBLAS switched off: its own kernel, which
                # runs wherever cuBLAS is missing or fails its check, is held to the
                # CPU too.
                step parity-own 60 env CUBLAS_EMULATE_SINGLE_PRECISION=1 "$build/test_backend_ops" \
                        --kind vec.search --json "$out/parity_own.json"
                ((rc != 0)) && result=failed
                # The kernels are timed even when parity failed: the numbers help to
                # find why. The CPU rows are a small baseline only. vec.search and
                # risk.score go first: theirs are the figures with targets (GPU
                # queries/s and rows/s), and the budget cuts what comes last.
                left=$(budget 200)
                step bench 200 "$build/bench_kernels" --budget $((left > 40 ? left - 30 : 10)) \
                        --first vec.search,risk.score --cpu-max-work 1e6 --json "$out/bench.json"
                ((rc != 0 && rc != 124)) && result=failed
        else
                say "== bench: skipped (no GPU compared)"
                steps+=("bench skipped 0")
        fi
fi

# The report, in words and as JSON (python3 is on both machines; without it only
# the text and the raw JSON files are written).
steps_text=$(printf '%s\n' "${steps[@]}")
if command -v python3 >/dev/null 2>&1; then
        OUT_DIR=$out RESULT=$result GPU_NAME=$gpu_name STEPS=$steps_text TOTAL=$SECONDS python3 - <<'EOF' || result=failed
import json, os
out = os.environ["OUT_DIR"]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
parity, bench, own = load("parity.json"), load("bench.json"), load("parity_own.json")
steps = []
for line in os.environ["STEPS"].splitlines():
    name, status, secs = line.split()
    steps.append({"step": name, "exit": status, "seconds": int(secs)})
device = os.environ["GPU_NAME"]
if not device and parity:
    gpus = [d["model"] for d in parity.get("devices", []) if d["name"] != "cpu"]
    device = gpus[0] if gpus else ""
report = {
    "device": device or None,
    "result": os.environ["RESULT"],
    "seconds": int(os.environ["TOTAL"]),
    "plugin": parity.get("plugin") if parity else None,
    "parity": [{k: p[k] for k in ("kind", "device", "status", "cases", "values", "bad_values",
                                   "max_error_of_tolerance", "max_abs_error", "rtol", "atol", "message")}
               for p in (parity or {}).get("kinds", [])],
    "parity_own_kernel": [{k: p[k] for k in ("kind", "device", "status", "cases", "max_error_of_tolerance",
                                              "message")} for p in (own or {}).get("kinds", [])],
    "parity_products": (parity or {}).get("vec_products"),
    "parity_products_why": (parity or {}).get("vec_products_why"),
    "bench": (bench or {}).get("rows", []),
    "bench_truncated": (bench or {}).get("truncated"),
    "bench_failures": (bench or {}).get("failures", []),
    "vec_products": (bench or {}).get("vec_products"),
    "vec_products_why": (bench or {}).get("vec_products_why"),
    "libcublas": (bench or parity or {}).get("libcublas"),
    "steps": steps,
}
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
lines = [f"kiln GPU check: {report['result'].upper()}", f"device: {report['device'] or 'no GPU'}",
         f"CUDA plugin: {report['plugin']}",
         f"vec.search products: {report['vec_products'] or 'not timed'} in the timings, "
         f"{report['parity_products'] or 'not run'} in parity (libcublas: {report['libcublas'] or 'not loaded'})"]
why = report["vec_products_why"] or report["parity_products_why"]
if why:
    lines.append(f"cuBLAS: {why}")
lines += ["", "parity (each kind against the CPU):"]
for p in report["parity"]:
    if p["status"] == "passed":
        lines.append(f"  {p['kind']:<14} {p['device']:<10} passed   {p['cases']} cases, {p['values']} values, "
                     f"max error {p['max_abs_error'] or 0:.3g} ({p['max_error_of_tolerance'] or 0:.3g} of rtol "
                     f"{p['rtol']:g} / atol {p['atol']:g})")
    else:
        lines.append(f"  {p['kind']:<14} {p['device']:<10} {p['status']:<8} {p['message']}")
if not report["parity"]:
    lines.append("  not run (see the steps)")
for p in report["parity_own_kernel"]:
    lines.append(f"  {p['kind']:<14} {p['device']:<10} {p['status']:<8} own kernel, cuBLAS off: {p['cases']} cases"
                 + (f", {p['max_error_of_tolerance'] or 0:.3g} of the tolerance" if p["status"] == "passed"
                    else f": {p['message']}"))
lines += ["", "kernel timings (one batch through the backend, after a warm-up):"]
for b in report["bench"]:
    lines.append(f"  {b['kind']:<14} {b['device']:<8} {b['case'][:40]:<40} batch {b['batch']:>5} "
                 f"{(b['seconds'] or 0)*1e3:10.3f} ms {b['work_per_s'] or 0:10.3g} {b['work_unit']}/s "
                 f"{b['out_gb_per_s'] or 0:8.2f} GB/s"
                 + (f" {b['flop_per_s'] / 1e12:7.2f} TFLOP/s" if b.get("flop_per_s") else "")
                 + (f" {b['read_gb_per_s']:8.1f} GB/s read" if b.get("read_gb_per_s") else ""))
if not report["bench"]:
    lines.append("  not run" + (" (no GPU)" if report["result"] == "skipped" else ""))
for f in report["bench_failures"]:
    lines.append(f"  {f['kind']:<14} {f['device']:<8} {f['case'][:40]:<40} batch {f['batch']:>5} FAILED: {f['why']}")
if report["bench_truncated"]:
    lines.append("  (stopped at the time budget)")
lines += ["", "steps:"] + [f"  {s['step']:<10} exit {s['exit']:<8} {s['seconds']}s" for s in steps]
with open(os.path.join(out, "report.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
EOF
else
        { echo "kiln GPU check: $result"; echo "device: ${gpu_name:-no GPU}"; echo "$steps_text"; } >"$out/report.txt"
fi

[[ -f $out/report.txt ]] && cat "$out/report.txt"
case $result in
passed) exit 0 ;;
skipped)
        echo "no GPU was compared: every GPU step was skipped (exit 77)"
        exit 77
        ;;
*) exit 1 ;;
esac
