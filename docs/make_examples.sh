#!/bin/sh
# Regenerates the README's diagnostics examples from the command line:
#   docs/report_example.txt             deep sigmoid chain (vanishing far below float64),
#                                       with the simulated float32/bfloat16 pass
#   docs/report.png                     its plot (signals, theory, residuals)
#   docs/report_relu_example.txt        relu and He init, depth 300 (healthy)
#   docs/report_relu_deep_example.txt   the same at depth 1000: finite width (L/n ~ 16) alone makes
#                                       the typical gradient vanish, as the theory column predicts
#   docs/report_relu_gain_example.txt   relu/He at gain 1.25, depth 300 (exploding: float32 overflows)
#   docs/report_chaotic_example.txt     chaotic tanh: the exact gradient is ill-conditioned
#   docs/demo_example.txt               the default invocation
#   docs/demo_init_example.txt          loggrad demo init: four initialisations of one 1000-layer net
# Run from the repository root with loggrad installed: sh docs/make_examples.sh
set -eu
cd "$(dirname "$0")/.."
run() { echo "\$ loggrad $*"; python -m loggrad "$@"; }
run --plain > docs/demo_example.txt
python -m loggrad.demos init > docs/demo_init_example.txt
run report --depth 1000 --width 64 --activation sigmoid --init lecun_normal --rows 12 --plain --low-precision \
    --plot docs/report.png > docs/report_example.txt
run report --depth 300 --width 64 --activation relu --init he_normal --rows 6 --plain \
    > docs/report_relu_example.txt
run report --depth 1000 --width 64 --activation relu --init he_normal --rows 6 --plain \
    > docs/report_relu_deep_example.txt
run report --depth 300 --width 64 --activation relu --init he_normal --gain 1.25 --batch 8 --rows 6 --plain \
    > docs/report_relu_gain_example.txt
run report --depth 200 --width 16 --activation tanh --init normal --rows 6 --plain --conditioning \
    > docs/report_chaotic_example.txt
ls -l docs/report.png docs/*.txt
