#!/usr/bin/env bash
# The GPU figures in one go, each part time-boxed: student inference paths and training steps,
# the compiled student path, the teacher's speed switches (dtype, channels-last, torch.compile)
# on SD 1.5's architecture at 512 px, and LSAST's per-pair cost against StyleID's.
#   bash benchmarks/gpu.sh OUT_DIR [student|compile|teacher|lsast ...]   (default: all four)
set -u
out=${1:?usage: benchmarks/gpu.sh OUT_DIR [student|compile|teacher|lsast ...]}
shift
parts=${*:-student compile teacher lsast}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
for part in $parts; do
    case $part in
    student) timeout 150 python3 -m benchmarks.student_speed --device cuda \
        --paths fp32 fp32-cl bf16-cl fp16-cl --repeats 3 --train-steps 20 \
        --out "$out/student_gpu.json" ;;
    compile) timeout 150 python3 -m benchmarks.student_speed --device cuda --sizes 256 512 \
        --paths fp32 bf16-cl bf16-cl-compile --repeats 3 --out "$out/student_compile_gpu.json" ;;
    teacher) timeout 330 python3 -m benchmarks.teacher_switches --model sd15-random \
        --device cuda --resolution 512 --tile 2x2 --repeats 1 \
        --out "$out/teacher_switches_gpu.json" ;;
    lsast) timeout 300 python3 -m benchmarks.lsast_vs_styleid --model sd15-random --device cuda \
        --dtype float16 --resolution 512 --tile 4x2 --out "$out/lsast_vs_styleid_gpu.json" ;;
    esac >"$out/$part.log" 2>&1
    echo "$part: rc $?"
done
