#!/bin/sh
# Regenerates the README's diagnostics examples from the command line:
#   docs/report_example.txt       deep sigmoid chain (vanishing far below float64)
#   docs/report.png               its plot
#   docs/report_relu_example.txt  the same depth with relu and He init (healthy)
#   docs/demo_example.txt         the default invocation
# Run from the repository root with loggrad installed: sh docs/make_examples.sh
set -eu
cd "$(dirname "$0")/.."
run() { echo "\$ loggrad $*"; python -m loggrad "$@"; }
run --plain > docs/demo_example.txt
run report --depth 1000 --width 64 --activation sigmoid --init lecun_normal --rows 6 --plain \
    --plot docs/report.png > docs/report_example.txt
run report --depth 1000 --width 64 --activation relu --init he_normal --rows 6 --plain \
    > docs/report_relu_example.txt
ls -l docs/report.png docs/*.txt
