# Shared by the round*.sh recipe experiments (source it): run NAME [recipe_probe.py args...]
# trains and probes one configuration into $E/NAME with its log in $E/NAME.log.
# Needs R (the run folder: store/ and patch_truth.parquet), E (output folder) and STEPS.
H="$(dirname "${BASH_SOURCE[0]}")/recipe_probe.py"
run() { python "$H" --store "$R/store" --truth "$R/patch_truth.parquet" --out "$E/$1" \
          --steps "$STEPS" --threads 1 --eval-landmarks 40 "${@:2}" > "$E/$1.log" 2>&1; }
# The benchmark's arms as `drasclr bench science` trains them: the paired DrasCLR with its
# neighbour head (tau 0.2, key-encoder momentum 0.95 since round 31; rounds 26-31 ran it at
# 0.99) and plain MoCo (tau 0.5, momentum 0.99), both with the views' translation +-4
# (round 35 ran +-8 for one session; round 36 took it back); a later key=value on the same
# command line overrides one of them. Plain MoCo draws mixed batches since round 44.
BENCH_DRASCLR="batch_size=16 neighbours=1 neighbour_local_weight=1.0 queue_size=4096 neighbour_head=true temperature=0.2 momentum=0.95"
BENCH_MOCO="model=\"moco\" conditioning=\"none\" neighbours=0 queue_size=4096 temperature=0.5 momentum=0.99 batch_mode=\"mixed\""
# plain MoCo as rounds 1-43 trained it, on DrasCLR's one-landmark batches (prereg28.md)
BENCH_MOCO_LANDMARK="model=\"moco\" conditioning=\"none\" neighbours=0 queue_size=4096 temperature=0.5 momentum=0.99"
# both TAG "SEEDS" KEY=VALUE...: the benchmark's two arms with the same overrides, one run each
# per seed, in the background (pairnh_TAG_sS and moco_TAG_sS); the caller waits.
both() {
  local tag=$1 seeds=$2 s; shift 2
  for s in $seeds; do
    run "pairnh_${tag}_s$s" --set probe_every="$STEPS" seed="$s" $BENCH_DRASCLR "$@" &
    run "moco_${tag}_s$s" --set probe_every="$STEPS" seed="$s" $BENCH_MOCO "$@" &
  done
}
