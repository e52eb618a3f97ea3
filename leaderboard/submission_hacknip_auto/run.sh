#!/usr/bin/env bash
# The commands that produced this submission (from the repository root).
set -euo pipefail
hacknip-bench run --task matbench_jdft2d --backbone chgnet --head auto
hacknip-bench run --task matbench_phonons --backbone chgnet --head auto
hacknip-bench run --task matbench_dielectric --backbone chgnet --head auto
hacknip-bench run --task matbench_log_gvrh --backbone chgnet --head auto
hacknip-bench run --task matbench_log_kvrh --backbone chgnet --head auto
hacknip-bench run --task matbench_perovskites --backbone chgnet --head auto
hacknip-bench submission --head auto --backbone chgnet
