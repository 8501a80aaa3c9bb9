#!/usr/bin/env bash
# Distil the shipped G2P ensemble into one fast model (configs/g2p-student.yaml).
#
# 1. The teacher file: the shipped model's greedy pronunciation of every
#    training word (about 4 minutes on 2 cores). Only train-split words go in,
#    so no dev or test word reaches training.
# 2. The student: `seqlab train g2p` on the teacher's pronunciations (about
#    75-100 minutes on one thread; give more with threads=2).
# 3. The comparison with Phonetisaurus: `seqlab bench g2p --member runs/g2p-student/best`
#    (the shipped copy, src/seqlab/pretrained/g2p-fast, is what `--fast` loads).
#
#   scripts/g2p_student.sh [key=value ...]   # overrides go to seqlab train
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEQLAB=${SEQLAB:-.venv/bin/seqlab}
mkdir -p runs
if [ ! -s runs/g2p-teacher.tsv ]; then
  "$PY" -c 'from seqlab.data import load_g2p; print("\n".join(w for w, _ in load_g2p()["train"]))' >runs/g2p-train-words.txt
  "$SEQLAB" predict g2p --beam 1 --input runs/g2p-train-words.txt --output runs/g2p-teacher.tsv.part
  mv runs/g2p-teacher.tsv.part runs/g2p-teacher.tsv
fi
"$SEQLAB" train g2p --config configs/g2p-student.yaml --run-dir runs/g2p-student "$@"
