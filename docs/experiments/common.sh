# Shared by the round*.sh recipe experiments (source it): run NAME [recipe_probe.py args...]
# trains and probes one configuration into $E/NAME with its log in $E/NAME.log.
# Needs R (the run folder: store/ and patch_truth.parquet), E (output folder) and STEPS.
H="$(dirname "${BASH_SOURCE[0]}")/recipe_probe.py"
run() { python "$H" --store "$R/store" --truth "$R/patch_truth.parquet" --out "$E/$1" \
          --steps "$STEPS" --threads 1 --eval-landmarks 40 "${@:2}" > "$E/$1.log" 2>&1; }
